"""manage.py site_agent_setup <slug>: the Redis user, PostgreSQL role and environment file of a
site's agent (deployments/agent_setup.py). Run it centrally; copy the .env file to the site."""

import os
from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deployments.agent_setup import (
    AgentSetup,
    agent_role,
    agent_username,
    postgres_sql,
    redis_acl_command,
    redis_acl_rules,
    redis_aclfile_line,
    worker_command,
)
from deployments.models import Deployment


def write_private(path: Path, text: str):
    """Created 0600 from the start: each file holds a password (or its hash)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


class Command(BaseCommand):
    help = "Write the Redis ACL user, PostgreSQL role and env file of a site's agent (files mode 0600)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the deployment's short name")
        parser.add_argument("--out", default=".", help="folder for agent-<slug>.{env,acl,redis,sql}")
        parser.add_argument("--broker-host", required=True, help="the central Redis as the site reaches it")
        parser.add_argument("--broker-port", type=int, default=6379)
        parser.add_argument("--broker-db", type=int, default=0)
        parser.add_argument(
            "--ca-file", default="", help="the CA of the central Redis's certificate, as a path at the site (TLS)"
        )
        parser.add_argument("--db-host", required=True, help="the central PostgreSQL as the site reaches it")
        parser.add_argument("--db-port", type=int, default=5432)
        parser.add_argument("--db-name", default="portal")
        parser.add_argument(
            "--apply-redis", action="store_true", help="also create the user on the central Redis (CELERY_BROKER_URL)"
        )

    def handle(self, *args, slug, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment with slug {slug!r}")
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        setup = AgentSetup.new(slug)
        tls = bool(options["ca_file"])
        broker = setup.broker_url(options["broker_host"], options["broker_port"], options["broker_db"], tls=tls)
        database = setup.database_url(options["db_host"], options["db_port"], options["db_name"])
        env_text = setup.env_file(
            broker_url=broker,
            database_url=database,
            ca_file=options["ca_file"],
            field_encryption_key=settings.FIELD_ENCRYPTION_KEY,
        )
        files = {
            f"agent-{slug}.env": env_text,
            f"agent-{slug}.redis": redis_acl_command(slug, setup.redis_password) + "\n",
            f"agent-{slug}.acl": redis_aclfile_line(slug, setup.redis_password) + "\n",
            f"agent-{slug}.sql": postgres_sql(
                slug, setup.db_password, options["db_name"], deployment.pk, portal_role=_portal_role()
            ),
        }
        for name, text in files.items():
            write_private(out / name, text)
        if options["apply_redis"]:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, **_ssl_options())
            client.execute_command("ACL", "SETUSER", agent_username(slug), *redis_acl_rules(slug, setup.redis_password))
            self.stdout.write(f"Redis user {agent_username(slug)} created on the central Redis.")
        self.stdout.write(
            f"Written to {out}/ (mode 0600):\n"
            f"  agent-{slug}.env    the agent's environment: copy it to the site\n"
            f"  agent-{slug}.redis  ACL SETUSER for the central Redis: redis-cli < agent-{slug}.redis\n"
            f"  agent-{slug}.acl    the same as a line of Redis's aclfile (survives a restart)\n"
            f"  agent-{slug}.sql    the PostgreSQL role {agent_role(slug)}: psql -d {options['db_name']} -f agent-{slug}.sql\n"
            f"The agent runs: {' '.join(worker_command(setup.queue))}"
        )


def _ssl_options():
    ca = getattr(settings, "CELERY_BROKER_SSL_CA", "")
    return {"ssl_ca_certs": ca} if ca else {}


def _portal_role():
    """The role this portal connects to PostgreSQL as, which must keep seeing every site's rows."""
    database = settings.DATABASES["default"]
    return database.get("USER", "") if "postgresql" in database["ENGINE"] else ""
