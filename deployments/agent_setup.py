"""What a site agent needs from the centre: a Redis user limited to its own queue, a PostgreSQL
role limited to the tables its tasks use and, by row-level security, to its own site's rows in
them, and the environment file the agent runs with.

A site agent is a Celery worker consuming only ``deployment.<slug>``, next to that site's Orthanc
(DESIGN.md). Pure functions build the rules; ``manage.py site_agent_setup`` writes them (0600).

The Redis rules were found by running a real worker against a Redis 7 whose user could do nothing
and reading ``ACL LOG`` until the worker consumed, acknowledged and restored messages without a
denial (tests/multisite/test_agent_setup.py keeps them honest). A kombu consumer of one queue
touches the queue's list (and its priority lists, ``<queue>\\x06\\x16<n>``), the queue's binding set
``_kombu.binding.<queue>``, and with late acknowledgement the unacked hash, index and mutex, which
``PORTAL_AGENT_QUEUE`` makes the agent's own (portal/settings.py). Remote control, events, gossip
and mingle are off for agents, so it needs no channel at all.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from django.apps import apps
from psycopg import sql

from portal.celery import deployment_queue

# kombu's separator of a queue's priority lists: "<queue>\x06\x16<priority>".
PRIORITY_SEP = "\x06\x16"

# What a consumer of one queue sends (found by experiment, see the module's docstring).
AGENT_COMMANDS = [
    "ping",
    "client|setname",
    "brpop",
    "lpush",
    "rpush",
    "llen",
    "sadd",
    "smembers",
    "hset",
    "hget",
    "hdel",
    "zadd",
    "zrem",
    "zrevrangebyscore",
    "zrange",
    "set",
    "get",
    "del",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    # redis-py's lock (kombu's unacked mutex) releases itself with a Lua script.
    "evalsha",
    "eval",
    "script|load",
]

# Tables a site's tasks read and write: the deployment's own app and the worklists, and the job rows
# they claim and finish. Not the accounts, sessions, API
# tokens or site access lists: an agent has no business reading who may log in.
AGENT_WRITE_APPS = ("deployments", "worklists")
AGENT_WRITE_TABLES = ("portal_job",)
# Written, never read: the audit entries of a sync, a completion or a restore (the id is read back
# by INSERT … RETURNING).
AGENT_APPEND_TABLES = ("portal_auditentry",)
AGENT_READ_TABLES = ("django_content_type", "django_migrations")
# Tables of the backups and HL7 apps that tasks on a site's queue use, with only the rights they
# need (read from the tasks, and checked by a real agent: tests/multisite/test_agent_database.py).
# The rest of those apps (received HL7 messages, the listeners' heartbeats, MPPS) is the interface
# services' own, which do not run as an agent.
AGENT_TABLE_RIGHTS = {
    "backups_sshidentity": ("SELECT",),  # the key an SSH session to the target signs in with
    "backups_backupschedule": ("SELECT", "UPDATE"),  # a Borg repository's passphrase and key, kept on first use
    "backups_backuprun": ("SELECT", "INSERT", "UPDATE"),  # a scheduled run, its outcome, pruning, drills, restores
    "hl7_hl7mapping": ("SELECT",),  # where an order's status messages go
    "hl7_hl7order": ("SELECT",),  # a status change of an ordered entry writes a message (hl7/status.py)
    "hl7_hl7outbound": ("SELECT", "INSERT", "UPDATE"),  # the status outbox: written by a change, then delivered
}
# Tables without a deployment_id whose rows belong to a site through a parent row:
# table → (its column naming the parent, the parent table).
AGENT_PARENT_LINKS = {
    "backups_backuprun": ("schedule_id", "backups_backupschedule"),
    "hl7_hl7order": ("mapping_id", "hl7_hl7mapping"),
}
ALL_RIGHTS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def agent_username(slug):
    return f"agent-{slug}"


def agent_role(slug):
    # A PostgreSQL identifier without quoting: letters, digits and underscores.
    return "agent_" + re.sub(r"[^a-z0-9_]", "_", slug.lower())


def agent_keys(slug):
    """The Redis keys one agent may touch, as ACL key patterns (glob: the priority lists)."""
    queue = deployment_queue(slug)
    return [
        queue,
        glob_escape(queue + PRIORITY_SEP) + "*",
        f"_kombu.binding.{queue}",
        f"_kombu.binding_permanent.{queue}",
        f"unacked.{queue}",
        f"unacked_index.{queue}",
        f"unacked_mutex.{queue}",
        f"worklist-sync-pending.{queue}",  # worklists/tasks.py: the sync waiting in the queue
        f"hl7-status-delivery.{queue}",  # worklists/interfaces/hl7/status.py: one delivery pass at a time
    ]


def glob_escape(text):
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def redis_acl_rules(slug, password):
    """The arguments of ``ACL SETUSER agent-<slug> …``: only the password's SHA-256 appears."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    keys = [f"~{key}" for key in agent_keys(slug)]
    return ["reset", "on", f"#{digest}", "resetchannels", *keys, "-@all", *(f"+{c}" for c in AGENT_COMMANDS)]


def redis_quote(arg):
    """One argument as redis-cli and an ACL file read it (double quotes, \\xHH for control bytes)."""
    out = []
    for ch in arg:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def redis_acl_command(slug, password):
    """One line for ``redis-cli`` on the central Redis."""
    return " ".join(["ACL", "SETUSER", agent_username(slug), *map(redis_quote, redis_acl_rules(slug, password))])


def redis_aclfile_line(slug, password):
    """The same user as a line of Redis's ``aclfile`` (which survives a restart). Redis splits
    those lines on spaces and reads no quotes: the priority lists' separator is written as its
    two raw bytes, as ``ACL SAVE`` writes it."""
    rules = [r for r in redis_acl_rules(slug, password) if r != "reset"]
    return " ".join(["user", agent_username(slug), *rules])


def agent_tables():
    """(writable tables, read-only tables) of the agent's role, from the installed models."""
    writable = set(AGENT_WRITE_TABLES)
    for label in AGENT_WRITE_APPS:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            if not model._meta.proxy and model._meta.managed:
                writable.add(model._meta.db_table)
    return sorted(writable), sorted(AGENT_READ_TABLES)


def table_rights():
    """{table: the role's rights on it} for the tables whose rows belong to one site each."""
    writable, _ = agent_tables()
    rights = {table: ALL_RIGHTS for table in writable}
    rights.update({table: ("INSERT",) for table in AGENT_APPEND_TABLES})
    rights.update(AGENT_TABLE_RIGHTS)
    return rights


def limited_tables():
    """The tables whose rows belong to one site each: every table the role may write, append to or
    read from the site's apps. The read-only lookups (content types, migrations) are Django's own,
    the same for all sites."""
    return sorted(table_rights())


def site_condition(table, deployment_id, queue):
    """The SQL condition a row of ``table`` meets when it is the site's own."""
    if table == "deployments_deployment":
        return sql.SQL("id = {}").format(sql.Literal(deployment_id))
    if table == "portal_job":
        # A job's target is a deployment, a backup run or an audit, by kind; its queue is the site's.
        return sql.SQL("queue = {}").format(sql.Literal(queue))
    if "deployment_id" in _columns(table):
        return sql.SQL("deployment_id = {}").format(sql.Literal(deployment_id))
    if table in AGENT_PARENT_LINKS:
        # The parent's own condition, spelt out: the portal's role (not limited) reads it the same.
        # For the agent the subquery is also limited by the parent's policy.
        column, parent = AGENT_PARENT_LINKS[table]
        if "SELECT" not in table_rights().get(parent, ()):
            # The policy's subquery runs as the agent: without SELECT on the parent it fails.
            raise ValueError(f"{table} belongs to a site through {parent}, which the agent may not read")
        return sql.SQL("{col} IN (SELECT {parent}.id FROM {parent} WHERE {own})").format(
            col=sql.Identifier(column),
            parent=sql.Identifier(parent),
            own=site_condition(parent, deployment_id, queue),
        )
    # Refused rather than left readable: a new table the agent is granted must say whose rows it holds.
    raise ValueError(
        f"{table} has no deployment_id: say how its rows belong to a site (agent_setup.AGENT_PARENT_LINKS)"
    )


def own_references(table):
    """Conditions that each foreign key of ``table`` to another limited table names one of the
    site's own rows. PostgreSQL checks foreign keys without row-level security: without these an
    agent could tie its worklist entry to another site's patient, which the portal would then show
    as its own. (Not to the same table: a policy may not query its own table.)"""
    limited = set(limited_tables()) - {"deployments_deployment", table}
    parent_column = AGENT_PARENT_LINKS.get(table, (None,))[0]  # already checked by site_condition
    checks = []
    for field in _fields(table):
        target = field.target_field if field.is_relation else None
        if target is not None and target.model._meta.db_table in limited and field.column != parent_column:
            checks.append(
                sql.SQL("({col} IS NULL OR EXISTS (SELECT FROM {other} WHERE {other}.{key} = {col}))").format(
                    col=sql.Identifier(table, field.column),
                    other=sql.Identifier(target.model._meta.db_table),
                    key=sql.Identifier(target.column),
                )
            )
    return checks


def _columns(table):
    return {field.column for field in _fields(table)}


def _fields(table):
    models = [m for m in apps.get_models(include_auto_created=True) if m._meta.db_table == table]
    return [field for model in models for field in model._meta.concrete_fields]


def postgres_sql(slug, password, database, deployment_id, portal_role=""):
    """The role of the site's agent: SELECT, INSERT, UPDATE, DELETE on the tables its tasks use,
    and on each of them a row-level security policy that lets it see and write its own site's rows
    only. ``portal_role`` is the role the portal connects as (default: whoever runs the script),
    which must own the tables: an owner is not subject to row-level security (no FORCE here)."""
    role = sql.Identifier(agent_role(slug))
    _, readable = agent_tables()
    statements = [
        sql.SQL("BEGIN"),
        # CREATE ROLE has no IF NOT EXISTS.
        sql.SQL(
            "DO $$ BEGIN\n"
            "  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {role}; END IF;\n"
            "END $$"
        ).format(name=sql.Literal(agent_role(slug)), role=role),
        sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}").format(
            role, sql.Literal(password)
        ),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
        # Only the tables named below: a table added later is out of reach until this runs again.
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role),
    ]
    for table, rights in table_rights().items():
        if table in AGENT_APPEND_TABLES:
            rights = (*rights, "SELECT (id)")
        statements.append(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(", ").join(map(sql.SQL, rights)), sql.Identifier(table), role
            )
        )
    for table in readable:
        statements.append(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(sql.Identifier(table), role))
    # Inserting a row takes the next value of its id's sequence.
    statements.append(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
    statements.append(_owner_check(portal_role))
    for table in limited_tables():
        own = site_condition(table, deployment_id, deployment_queue(slug))
        statements += _row_policy(table, role, own, sql.SQL(" AND ").join([own, *own_references(table)]))
    statements.append(sql.SQL("COMMIT"))
    header = f"-- The PostgreSQL role of the site agent of {slug} (manage.py site_agent_setup).\n"
    return header + "".join(statement.as_string(None) + ";\n" for statement in statements)


def _row_policy(table, role, visible, writable):
    """Row-level security on ``table`` and the agent's one policy there, replaced on each run: the
    rows it sees, updates and deletes (``visible``), and the rows it may write (``writable``).
    A role without a policy on the table (an agent set up before it was limited) sees no row."""
    name = sql.Identifier(table)
    return [
        sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(name),
        sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(role, name),
        sql.SQL("CREATE POLICY {role} ON {table} TO {role} USING ({using}) WITH CHECK ({check})").format(
            role=role, table=name, using=visible, check=writable
        ),
    ]


def _owner_check(portal_role):
    """Refuse to turn row-level security on if the portal's role would then see no rows: only the
    tables' owner (or a member of it), a superuser or a BYPASSRLS role is not subject to it."""
    who = sql.Literal(portal_role) if portal_role else sql.SQL("current_user")
    return sql.SQL(
        "DO $$ BEGIN\n"
        "  IF NOT coalesce((SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = {who}), false)\n"
        "     AND EXISTS (SELECT FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY({tables})\n"
        "                 AND NOT pg_has_role({who}, tableowner, 'USAGE')) THEN\n"
        "    RAISE EXCEPTION 'the portal''s role % does not own the tables: row-level security would hide their rows from it', {who};\n"
        "  END IF;\n"
        "END $$"
    ).format(who=who, tables=sql.Literal(limited_tables()))


@dataclass
class AgentSetup:
    slug: str
    redis_password: str
    db_password: str

    @classmethod
    def new(cls, slug):
        return cls(slug, secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    @property
    def queue(self):
        return deployment_queue(self.slug)

    def broker_url(self, host, port=6379, db=0, tls=False):
        scheme = "rediss" if tls else "redis"
        return f"{scheme}://{quote(agent_username(self.slug))}:{quote(self.redis_password)}@{host}:{port}/{db}"

    def database_url(self, host, port=5432, name="portal"):
        return f"postgres://{agent_role(self.slug)}:{quote(self.db_password)}@{host}:{port}/{name}"

    def env_file(self, *, broker_url, database_url, ca_file="", field_encryption_key="", secret_key=""):
        lines = [
            f"# The site agent of {self.slug}: a Celery worker of {self.queue} only (manage.py site_agent_setup).",
            "# Mode 0600: it holds the agent's Redis and PostgreSQL passwords.",
            "DEBUG=0",
            f"PORTAL_AGENT_QUEUE={self.queue}",
            f"CELERY_BROKER_URL={broker_url}",
        ]
        if ca_file:
            lines.append(f"CELERY_BROKER_SSL_CA={ca_file}")
        lines.append(f"DATABASE_URL={database_url}")
        lines.append(f"SECRET_KEY={secret_key or secrets.token_urlsafe(50)}")
        # The agent decrypts its Orthanc's passwords (deployments' encrypted fields) with this key.
        lines.append(f"FIELD_ENCRYPTION_KEY={field_encryption_key}")
        return "\n".join(lines) + "\n"


def worker_command(queue, concurrency=1):
    """The agent's worker: its queue only, no broadcast it could not read anyway."""
    return [
        "celery",
        "-A",
        "portal",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
    ]
