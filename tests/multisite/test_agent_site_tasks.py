"""The backups and the HL7 status delivery of a site, run by a real agent (a Celery worker of the
site's queue, with its Redis ACL user) under its row-limited PostgreSQL role: a scheduled backup to a
real SSH target and its restore drill, an order's status change and its delivery to a real MLLP
receiver, with no "permission denied"; and the other site's work, sent to it, finds nothing."""

import getpass
import json

import psycopg

from deployments.agent_setup import agent_username
from tests.backups.conftest import upload_studies
from tests.conftest import free_port, wait_for
from tests.interfaces.test_hl7_status_out import Receiver
from tests.multisite.test_agent_database import _agent_url, _manage, _two_sites_with_agents

DENIALS = ("permission denied", "InsufficientPrivilege", "NOPERM")


def _north_agent(cluster, tmp_path, central_redis_factory, agent_factory, portal_broker):
    """Both sites in the cluster, the portal's Celery on a central Redis, north's agent running."""
    owner_url = _two_sites_with_agents(cluster, tmp_path)
    central = central_redis_factory()
    setup = central.add_agent("north")
    portal_broker(central.url())
    broker = central.url(agent_username("north"), setup.redis_password)
    agent = agent_factory(setup, broker, env={"DATABASE_URL": _agent_url(tmp_path, "north")})
    with psycopg.connect(owner_url) as owner:
        ids = dict(owner.execute("SELECT slug, id FROM deployments_deployment").fetchall())
    return owner_url, broker, agent, ids


def _no_denial(agent):
    output = agent.output()
    assert not any(word in output for word in DENIALS), output[-4000:]


def test_a_real_agent_under_its_role_backs_up_and_drills_its_site_and_not_another(
    postgres_cluster, tmp_path, central_redis_factory, agent_factory, portal_broker, sshd, orthanc_factory
):
    from deployments.backups.tasks import scheduled_run_task

    owner_url, _, agent, ids = _north_agent(
        postgres_cluster, tmp_path, central_redis_factory, agent_factory, portal_broker
    )
    orthanc = orthanc_factory(slug="north")
    upload_studies(orthanc.client(), studies=1, per_study=2)
    d = orthanc.deployment
    fields = {f: getattr(d, f) for f in ("orthanc_url", "http_port", "service_username", "service_password",
                                         "config_dir", "storage_dir", "worklists_dir", "dicom_aet", "dicom_port",
                                         "service_kind")}  # fmt: skip
    # The portal's side: north is that Orthanc, with a schedule to the sshd (its host key pinned).
    made = _manage(
        owner_url,
        "shell",
        code=f"""
        from pathlib import Path
        from deployments.backups.keys import fingerprint
        from deployments.backups.models import BackupSchedule
        from deployments.backups.ssh import keyscan
        from deployments.models import Deployment
        Deployment.objects.filter(slug="north").update(**{json.dumps(fields)})
        key = keyscan("127.0.0.1", {sshd.port})[0]
        schedule = BackupSchedule.objects.create(
            deployment=Deployment.objects.get(slug="north"), name="To the test target", host="127.0.0.1",
            port={sshd.port}, user={getpass.getuser()!r}, remote_folder={str(sshd.root / "backups")!r},
            host_key=key, host_key_fingerprint=fingerprint(key), include_index=False)
        Path(schedule.target_folder).mkdir(parents=True)
        print("SCHEDULE", schedule.pk)
        print("LINE", schedule.authorized_keys_line())
        """,
    ).stdout
    schedule = int(made.split("SCHEDULE ")[1].split()[0])
    sshd.authorize(made.split("LINE ")[1].strip())
    with psycopg.connect(owner_url, autocommit=True) as owner:
        south_schedule = owner.execute(
            "SELECT id FROM backups_backupschedule WHERE deployment_id = %s", [ids["south"]]
        ).fetchone()[0]

        def runs(schedule_id):
            query = "SELECT id, state, error, drill_state, drill_message FROM backups_backuprun WHERE schedule_id = %s"
            return owner.execute(query + " AND trigger = 'schedule'", [schedule_id]).fetchall()

        # As beat sends them: south's schedule on north's queue (a forged message), then north's.
        scheduled_run_task.apply_async(kwargs={"schedule_id": south_schedule}, queue="deployment.north")
        scheduled_run_task.apply_async(kwargs={"schedule_id": schedule}, queue="deployment.north")
        wait_for(
            lambda: runs(schedule) and runs(schedule)[0][1] in ("succeeded", "failed"),
            timeout=120,
            message="north's agent to run its backup",
        )
        (run_id, state, error, _, _), *_ = runs(schedule)
        assert state == "succeeded", (error, agent.output()[-4000:])
        assert runs(south_schedule) == []  # north's agent saw no such schedule
        assert len(list((sshd.root / "backups" / "north").iterdir())) == 1

        # The restore drill, as the run's page asks for it: a job on north's queue.
        _manage(owner_url, "shell", code=f"""
            from portal import jobs
            jobs.enqueue("backups.backup_verify", {run_id}, queue="deployment.north")
            """)  # fmt: skip
        wait_for(lambda: runs(schedule)[0][3] in ("passed", "failed"), timeout=120, message="the drill")
        assert runs(schedule)[0][3] == "passed", (runs(schedule), agent.output()[-4000:])
        job = owner.execute("SELECT state, message FROM portal_job WHERE kind = 'backups.backup_verify'").fetchone()
        assert job[0] == "succeeded", job
    _no_denial(agent)


MOVE = """
from worklists.completion import _move
from worklists.models import WorklistEntry
entry = WorklistEntry.objects.get(deployment__slug={slug!r})
_move(entry, WorklistEntry.Status.ARRIVED, "the patient arrived")
print("MOVED")
"""


def test_a_real_agent_under_its_role_delivers_its_sites_hl7_status_and_not_another(
    postgres_cluster, tmp_path, central_redis_factory, agent_factory, portal_broker
):
    from worklists.interfaces.hl7.tasks import deliver_task

    owner_url, broker, agent, ids = _north_agent(
        postgres_cluster, tmp_path, central_redis_factory, agent_factory, portal_broker
    )
    receiver = Receiver(free_port())
    try:
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute("UPDATE hl7_hl7mapping SET status_host = '127.0.0.1', status_port = %s", [receiver.port])

            def outbox(slug):
                query = (
                    "SELECT state, attempts FROM hl7_hl7outbound WHERE deployment_id = %s AND entry_status = 'ARRIVED'"
                )
                return owner.execute(query, [ids[slug]]).fetchall()

            # South's patient arrives (the portal's front desk): its message waits for south's agent.
            _manage(owner_url, "shell", code=MOVE.format(slug="south"))
            assert outbox("south") == [("PENDING", 0)]
            # South's delivery sent to north's queue (a forged message) finds no such site.
            deliver_task.apply_async((ids["south"],), queue="deployment.north")
            # North's agent moves north's entry, as its completion does: the outbox row is written
            # under its role, and the delivery asked for on its queue with its own Redis user.
            moved = _manage(_agent_url(tmp_path, "north"), "shell", code=MOVE.format(slug="north"),
                            env={"CELERY_BROKER_URL": broker})  # fmt: skip
            assert "MOVED" in moved.stdout, moved.stderr[-3000:]
            wait_for(lambda: outbox("north") == [("DELIVERED", 1)], timeout=30, message="north's status delivered")
            assert receiver.statuses() == [("O-north", "IP", "ARRIVED")]
            assert outbox("south") == [("PENDING", 0)]
    finally:
        receiver.stop()
    assert "Deployment matching query does not exist" in agent.output()  # the forged one
    _no_denial(agent)
