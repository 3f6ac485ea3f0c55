"""Fault battery (issue 13, part 1): N rounds of each fault against real parts.

A throwaway PostgreSQL cluster (the portal's database), a real Redis, real Celery worker
processes (killed with SIGKILL), a real Orthanc (Debian package) whose worklist folder is a small
tmpfs, a real sshd as the backup target, and an asyncio TCP proxy that delays Orthanc's answers.
After every round the system is given time to recover (the reconciler runs, as beat would run it,
and a supervisor restarts what died, as systemd would), then every intent recorded during the
round is classified: applied, failed with a reason, lost (still pending, or failed silently) or
duplicated (done twice). Files are checked too: no temporary or partial file left, the ``.wl``
files are exactly the active entries, the configuration folder holds exactly the newest applied
revision, and Orthanc and the portal's pages answer.

    FAULT_ROUNDS=100 .venv/bin/python bench/faults.py    # make faults
    FAULT_ONLY=sshd-down,disk-full ...                    # some faults only

Exits non-zero when any intent is lost or duplicated, or a file or a service check fails.
Must run as root (tmpfs mount; PostgreSQL runs as the postgres user).
"""

import asyncio
import getpass
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.ports import free_port  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402

ROUNDS = int(os.environ.get("FAULT_ROUNDS", 100))
ONLY = [n for n in os.environ.get("FAULT_ONLY", "").split(",") if n]
# How long a recovery may take before an intent still pending counts as lost.
RECOVER_TIMEOUT = float(os.environ.get("FAULT_RECOVER_TIMEOUT", 90))
# The reconciler's thresholds, shortened so that a round takes seconds (production: 60 s and the
# task time limit + 60 s). A job revived while its worker still runs it is claimed once anyway.
RESEND_AFTER = timedelta(seconds=2)
LOST_AFTER = timedelta(seconds=4)
random.seed(int(os.environ.get("FAULT_SEED", 13)))
WL_DISK_MB = 32  # the worklist folder's tmpfs


def wait(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- the real parts


class Redis:
    def __init__(self, base: Path):
        self.base, self.port, self.proc = base, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import redis

        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.base),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

        def ping():
            try:
                return redis.Redis.from_url(self.url, socket_connect_timeout=0.3).ping()
            except redis.RedisError:
                return False

        wait(ping, 20, 0.05, "redis-server")

    def kill(self):
        # kill -9: no save, every queued message is gone (no persistence, as the worst case).
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Worker:
    """`celery worker` on the site's queue and the portal's, in its own process group so that a
    kill -9 takes its pool and its ssh/rsync children at once (the backup guardian has its own)."""

    def __init__(self, ctx):
        self.ctx, self.proc, self.n = ctx, None, 0

    def start(self):
        self.n += 1
        log = self.ctx.work / f"worker-{self.n}.log"
        env = {
            **os.environ,
            "DATABASE_URL": self.ctx.pg.url("portal"),
            "CELERY_BROKER_URL": self.ctx.redis.url,
            # Holds the sync between writing the files and recording them: the kill lands there.
            "WORKLISTS_SYNC_PAUSE_AFTER_WRITE": "0.3",
        }
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "-n", f"fault-{self.n}@localhost",
                 "-Q", f"{self.ctx.deployment.queue},portal", "--concurrency", "1", "-l", "info",
                 "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait(lambda: b"ready." in log.read_bytes() or self.proc.poll() is not None, 60, 0.1, "the worker")
        if self.proc.poll() is not None:
            raise SystemExit(f"the worker exited:\n{log.read_text()[-3000:]}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class DelayProxy:
    """A TCP proxy on loopback that holds each chunk from Orthanc for ``delay`` seconds."""

    def __init__(self, target_port):
        self.target_port, self.port, self.delay = target_port, free_port(), 0.0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer, delayed):
        try:
            while data := await reader.read(65536):
                if delayed and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, client_reader, client_writer):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, writer, False), self._pipe(reader, client_writer, True))

    def stop(self):
        def close():
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(close)
        self.thread.join(10)


# ---------------------------------------------------------------- the battery's context


@dataclass
class Tally:
    rounds: int = 0
    intents: int = 0
    applied: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    bad_files: int = 0
    longest: float = 0.0
    problems: list = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)  # the reasons given by failed intents


class Context:
    def __init__(self, work: Path):
        self.work = work
        # fsync off: a throwaway cluster whose restarts are the fault, not a power cut.
        self.pg = Cluster("portal", prefix="fault-pg-", options=["-c", "fsync=off"])
        self.redis = Redis(work)
        self.worker = Worker(self)
        self.mounted = None
        self.sshd = self.orthanc = self.proxy = None
        self.done = {}  # (kind, id) -> the fingerprint of its finished state: changing later = done twice
        self.seq = 0


def db_retry(fn, attempts=60):
    """The bench's own ORM calls across a PostgreSQL restart: a broken connection is dropped and
    the call tried again (what Django does between two requests)."""
    from django.db import InterfaceError, OperationalError, connection

    for n in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connection.close()
            if n == attempts - 1:
                raise
            time.sleep(0.25)


def setup(ctx):
    ctx.pg.start()
    ctx.pg.create_db("portal")
    ctx.redis.start()
    os.environ.update(
        DEBUG="1",
        PORTAL_VAR_DIR=str(ctx.work / "var"),
        DATABASE_URL=ctx.pg.url("portal"),
        CELERY_BROKER_URL=ctx.redis.url,
        DJANGO_SETTINGS_MODULE="portal.settings",
        EMAIL_URL="consolemail://",
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "CRITICAL"),
        PUSH_VERIFY_TIMEOUT="10",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",  # the pages are asked with Django's test client
    )
    (ctx.work / "var").mkdir()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command

    settings.JOB_RESEND_AFTER, settings.JOB_LOST_AFTER = RESEND_AFTER, LOST_AFTER
    call_command("migrate", verbosity=0)
    from deployments.backups.keys import ensure_identity, fingerprint
    from deployments.backups.models import BackupSchedule
    from deployments.backups.ssh import keyscan
    from deployments.push import deployment_push, revision_create
    from tests.backups.conftest import SshServer
    from tests.conftest import OrthancInstance

    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    ctx.orthanc = OrthancInstance(ctx.work / "orthanc", slug="faults")
    wl = Path(ctx.orthanc.deployment.worklist_folder)
    wl.mkdir(parents=True)
    # The worklist folder on its own small filesystem: the disk-full fault fills it. Room for
    # about 8,000 entries' files (a 4 KiB block each): the entries of 100 rounds stay listed, and
    # 2 MiB (512 files) filled up by itself in the fifth fault of a 100-round run.
    size = f"size={WL_DISK_MB}m,mode=0755"
    subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(wl)], check=True)
    ctx.mounted = wl
    ctx.orthanc.write_config()
    ctx.orthanc.start()
    ctx.deployment = d = ctx.orthanc.save_deployment()
    revision_create(d, reason="fault battery: first")
    deployment_push(d.pk)
    ctx.sshd = SshServer(ctx.work / "sshd")
    ctx.sshd.start()
    ensure_identity(d)
    key = keyscan("127.0.0.1", ctx.sshd.port)[0]
    # A slow link keeps the stop window (final delta and index) open for seconds: the kill lands in it.
    ctx.schedule = BackupSchedule.objects.create(
        deployment=d, name="fault battery", host="127.0.0.1", port=ctx.sshd.port, user=getpass.getuser(),
        remote_folder=str(ctx.sshd.root / "backups"), host_key=key, host_key_fingerprint=fingerprint(key),
        bandwidth_limit=64,
    )  # fmt: skip
    # The key confined as the portal's page says (rrsync in the schedule's folder, which must exist).
    Path(ctx.schedule.target_folder).mkdir(parents=True, exist_ok=True)
    ctx.sshd.authorize(ctx.schedule.authorized_keys_line())
    ctx.proxy = DelayProxy(d.http_port)
    ctx.proxy.start()
    ctx.admin = User.objects.create_superuser("fault_admin", password="fault-Pa55word!")
    ctx.worker.start()


def teardown(ctx):
    for step in (
        ctx.worker.kill,
        lambda: ctx.proxy and ctx.proxy.stop(),
        lambda: ctx.orthanc and ctx.orthanc.stop(),
        lambda: ctx.sshd and ctx.sshd.stop(),
        ctx.redis.kill,
        ctx.pg.remove,
        lambda: ctx.mounted and subprocess.run(["umount", "-l", str(ctx.mounted)], check=False),
    ):
        try:
            step()
        except Exception as exc:  # every part is stopped, whatever the others did
            print(f"teardown: {exc}", file=sys.stderr)
    # Backup guardians are detached on purpose; the ones of this battery end with their runs.
    shutil.rmtree(ctx.work, ignore_errors=True)


# ---------------------------------------------------------------- intents the faults record


def save_config(ctx, note):
    """A staff member's settings change: the model and its revision in one transaction."""
    from django.db import transaction

    from deployments.models import Deployment
    from deployments.push import revision_create

    def go():
        with transaction.atomic():
            d = Deployment.objects.select_for_update().get(pk=ctx.deployment.pk)
            ctx.seq += 1
            d.limit_find_results = 100 + ctx.seq % 900
            d.save()
            return revision_create(d, reason=f"fault battery: {note}")

    return db_retry(go)


def save_entries(ctx, new=3, cancel=1):
    """New worklist entries (and a cancelled one), then the sync asked for, as the views do."""
    from django.db import transaction
    from django.utils import timezone

    from worklists.models import Patient, WorklistEntry
    from worklists.tasks import request_sync

    def go():
        with transaction.atomic():
            ids = []
            for _ in range(new):
                ctx.seq += 1
                n = ctx.seq
                patient = Patient.objects.create(deployment=ctx.deployment, patient_id=f"F{n}", family_name="Fault")
                entry = WorklistEntry.objects.create(
                    deployment=ctx.deployment, patient=patient, accession_number=f"F{n:09d}",
                    study_instance_uid=f"1.2.826.0.1.3680043.8.498.13{n}", scheduled_date=timezone.localdate(),
                    scheduled_time="09:30", station_aet="US1",
                )  # fmt: skip
                ids.append(entry.pk)
            listed = WorklistEntry.objects.filter(WorklistEntry.LISTED, deployment=ctx.deployment)
            for entry in listed.exclude(pk__in=ids).order_by("id")[:cancel]:
                entry.status = WorklistEntry.Status.CANCELLED
                entry.save()
                ids.append(entry.pk)
            request_sync(ctx.deployment.pk)
            return ids

    return db_retry(go)


def save_check(ctx):
    from portal import jobs

    return db_retry(lambda: jobs.enqueue("deployments.deployment_check", ctx.deployment.pk, queue=ctx.deployment.queue))


def save_backup(ctx):
    from deployments.backups.models import BackupRun
    from deployments.backups.run import backup_start
    from portal import jobs

    def go():
        from django.db import transaction

        with transaction.atomic():
            run = backup_start(ctx.schedule.pk, BackupRun.Trigger.MANUAL)
            if run is not None:
                jobs.enqueue("backups.backup_run", run.pk, queue=ctx.deployment.queue)
            return run

    return db_retry(go)


def new_instance(ctx):
    """One more DICOM instance: a backup stops Orthanc only when something changed."""
    from tests.backups.conftest import upload_studies

    upload_studies(ctx.orthanc.client(), studies=1, per_study=1, size=16, patient=f"FB{ctx.seq}")


# ---------------------------------------------------------------- recovery and the checks


def pending_counts():
    from deployments.backups.models import BackupRun
    from deployments.models import ConfigRevision
    from portal.models import Job
    from worklists.models import WorklistEntry

    return (
        Job.objects.filter(state__in=["pending", "running"]).count()
        + ConfigRevision.objects.filter(state__in=["pending", "applying"]).count()
        + WorklistEntry.objects.filter(needs_sync=True, sync_state__in=["pending"]).count()
        + BackupRun.objects.filter(state__in=["pending", "running"]).count()
    )


def orthanc_answers(ctx):
    from deployments.orthanc import OrthancError

    try:
        ctx.orthanc.client().system()
        return True
    except OrthancError:
        return False


def synced_since(ctx, moment):
    from worklists.models import WorklistState

    return WorklistState.objects.filter(deployment=ctx.deployment, last_sync_at__gt=moment).exists()


def recover(ctx, started):
    """Bring back what a supervisor would (the worker, Orthanc) and run the reconciler, as beat
    does every minute, until nothing is pending. Returns the seconds it took."""
    from django.utils import timezone

    from portal import jobs
    from worklists.tasks import send_sync

    deadline = started + RECOVER_TIMEOUT
    fault_ended = timezone.now()
    down_since, next_sync = None, 0
    while time.monotonic() < deadline:
        if not ctx.worker.alive():
            ctx.worker.start()  # systemd's Restart=always
        db_retry(jobs.jobs_reconcile)
        if time.monotonic() >= next_sync:  # the minute's full sync, every 2 s here
            db_retry(lambda: send_sync(ctx.deployment.pk, ctx.deployment.queue, full=True))
            next_sync = time.monotonic() + 2
        # Entries that failed (the disk was full) are tried by every full sync: one must have run
        # since the fault ended before the round is judged.
        busy = db_retry(pending_counts) + (not db_retry(lambda: synced_since(ctx, fault_ended)))
        up = orthanc_answers(ctx)
        if not up and not busy:
            # Down with no push under way to start it: the supervisor starts it (after a second
            # look, so that a reset in progress is not taken for a crash).
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > 2 and not ctx.orthanc.service.is_running():
                try:
                    ctx.orthanc.service.start(wait=20)
                except Exception as exc:  # it keeps trying until the deadline; the check reports it
                    print(f"    supervisor: Orthanc did not start: {str(exc)[:200]}", flush=True)
                down_since = None
        else:
            down_since = None
        if up and not busy:
            return time.monotonic() - started
        time.sleep(0.5)
    return time.monotonic() - started


def classify(ctx, tally, marks, entry_ids):
    """Every intent recorded since ``marks``: applied, failed with a reason, or lost."""
    from deployments.backups.models import BackupRun
    from deployments.models import ConfigRevision
    from portal.models import Job
    from worklists.models import WorklistEntry

    job_mark, rev_mark, run_mark = marks
    rows = []
    for j in Job.objects.filter(pk__gt=job_mark):
        done = j.state == "succeeded"
        rows.append(("job", j.pk, done, j.state == "failed" and bool(j.message), (j.state, j.finished_at)))
        reason = j.message if j.state == "failed" else ""
        tally.reasons[f"job: {reason[:90]}"] += bool(reason)
    for r in ConfigRevision.objects.filter(pk__gt=rev_mark):
        done = r.state in ("applied", "superseded")  # superseded: a newer save carried it
        rows.append(("revision", r.pk, done, r.state == "failed" and bool(r.error), (r.state, r.finished_at)))
        tally.reasons[f"revision: {r.error[:90]}"] += r.state == "failed" and bool(r.error)
    for b in BackupRun.objects.filter(pk__gt=run_mark):
        done = b.state == "succeeded"
        rows.append(("backup", b.pk, done, b.state == "failed" and bool(b.error), (b.state, b.finished_at)))
        tally.reasons[f"backup run: {b.error[:90]}"] += b.state == "failed" and bool(b.error)
    for e in WorklistEntry.objects.filter(pk__in=entry_ids):
        # Not dirty: its file is written, removed, or was never due (cancelled before any sync).
        done = not e.needs_sync
        rows.append(("entry", e.pk, done, e.sync_state == "error" and bool(e.sync_error), (e.synced_revision,)))
    for kind, pk, done, failed, state in rows:
        tally.intents += 1
        if done:
            tally.applied += 1
        elif failed:
            tally.failed += 1
        else:
            tally.lost += 1
            tally.problems.append(f"{kind} {pk} lost: {state}")
        if done or failed:
            ctx.done[(kind, pk)] = state


def check_done_twice(ctx, tally):
    """An intent finished in an earlier round whose outcome changed since: it was done again."""
    from deployments.backups.models import BackupRun
    from deployments.models import ConfigRevision
    from portal.models import Job
    from worklists.models import WorklistEntry

    now = {}
    now.update((("job", j.pk), (j.state, j.finished_at)) for j in Job.objects.all())
    now.update((("revision", r.pk), (r.state, r.finished_at)) for r in ConfigRevision.objects.all())
    now.update((("backup", b.pk), (b.state, b.finished_at)) for b in BackupRun.objects.all())
    for e in WorklistEntry.objects.all():
        # A sync that records the same revision again is no second application.
        now[("entry", e.pk)] = (e.synced_revision,)
    for key, state in list(ctx.done.items()):
        if key[0] == "entry":
            continue  # an entry is saved again by later rounds (cancelled): its revision moves on
        if now.get(key) != state:
            tally.duplicated += 1
            tally.problems.append(f"{key[0]} {key[1]} done again: {state} -> {now.get(key)}")
            ctx.done[key] = now.get(key)


def check_files(ctx, tally):
    from deployments.backups.models import BackupRun
    from deployments.models import ConfigRevision
    from deployments.render import OWNED_FILES
    from worklists.models import WorklistEntry
    from worklists.sync import LOCK_NAME, active_filter

    bad = []
    wl = Path(ctx.deployment.worklist_folder)
    names = set(os.listdir(wl)) - {LOCK_NAME, "lost+found"}
    expected = {
        f"portal-{u}.wl"
        for u in WorklistEntry.objects.filter(active_filter(), deployment=ctx.deployment).values_list("uuid", flat=True)
    }
    if names != expected:
        missing = sorted(expected - names)[:3]
        # With the entries' own reasons: a missing file is a finding either way, but "No space left"
        # on the battery's own small disk is not the portal's.
        why = WorklistEntry.objects.filter(uuid__in=[n[7:-3] for n in missing]).values_list("sync_error", flat=True)
        bad.append(f"worklist folder: extra {sorted(names - expected)[:3]}, missing {missing} {sorted(set(why))}")
    config = Path(ctx.deployment.config_dir)
    newest = ConfigRevision.objects.filter(deployment=ctx.deployment, state="applied").order_by("-number").first()
    for path in config.iterdir():
        if path.is_file() and path.name not in OWNED_FILES and not path.name.startswith(".portal-"):
            bad.append(f"config folder: stray file {path.name}")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_bytes())
            except ValueError:
                bad.append(f"config folder: {path.name} is not valid JSON")
    on_disk = {n: (config / n).read_bytes() for n in OWNED_FILES if (config / n).exists()}
    if newest is not None and on_disk != newest.files:
        bad.append(f"config folder differs from the newest applied revision {newest.number}")
    target = Path(ctx.schedule.target_folder)
    snapshots = sorted(p.name for p in target.iterdir()) if target.exists() else []
    runs = set(BackupRun.objects.filter(schedule=ctx.schedule, state="succeeded").values_list("snapshot", flat=True))
    for name in snapshots:
        if name.startswith("."):
            continue  # the portal's own marker and probe names
        if name.endswith(".partial") or not (target / name / "manifest.json").is_file():
            # A snapshot is finished when its manifest.json is there (written last).
            bad.append(f"backup target: unfinished snapshot {name} left")
        elif name not in runs:
            bad.append(f"backup target: snapshot {name} of no succeeded run")
    names = list(BackupRun.objects.filter(schedule=ctx.schedule, state="succeeded").values_list("snapshot", flat=True))
    if len(names) != len(set(names)):
        tally.duplicated += 1
        tally.problems.append("two runs recorded the same snapshot")
    tally.bad_files += len(bad)
    tally.problems += bad


def check_services(ctx, tally):
    from django.test import Client
    from django.urls import reverse

    if not orthanc_answers(ctx):
        tally.problems.append("Orthanc does not answer")
        tally.bad_files += 1
    client = Client(raise_request_exception=False)
    client.force_login(ctx.admin)
    slug = ctx.deployment.slug
    for url in (
        reverse("dashboard"),
        reverse("sites"),
        reverse("deployments:list"),
        reverse("deployments:detail", args=[slug]),
        reverse("worklists:index"),
        reverse("backups:dashboard"),
    ):
        status = client.get(url).status_code
        if status != 200:
            tally.problems.append(f"page {url} answered {status}")
            tally.bad_files += 1


# ---------------------------------------------------------------- the faults


def kill_worker_in_push(ctx):
    from deployments.models import ConfigRevision

    revision = save_config(ctx, "worker killed during the push")
    wait(lambda: ConfigRevision.objects.get(pk=revision.pk).state != "pending", 30, 0.02, "the push to start")
    time.sleep(random.uniform(0, 1.5))  # anywhere in write → reset → verify
    ctx.worker.kill()
    return []


def kill_worker_in_sync(ctx):
    from worklists.models import WorklistEntry

    ids = save_entries(ctx, new=5, cancel=2)
    uuids = {str(u) for u in WorklistEntry.objects.filter(pk__in=ids).values_list("uuid", flat=True)}
    folder = ctx.deployment.worklist_folder
    # The pause after writing (0.3 s) holds the sync between its files and its record.
    wait(lambda: any(name[7:43] in uuids for name in os.listdir(folder)), 20, 0.01, "the sync to write")
    time.sleep(random.uniform(0, 0.35))
    ctx.worker.kill()
    return ids


def kill_worker_in_backup_window(ctx):
    new_instance(ctx)
    save_backup(ctx)
    service = ctx.orthanc.service
    wait(lambda: not service.is_running(), 60, 0.02, "Orthanc stopped by the backup")
    time.sleep(random.uniform(0, 0.5))
    ctx.worker.kill()
    return []


def redis_killed_during_saves(ctx):
    ids = []
    kill_at, back_at = random.randint(1, 3), random.randint(4, 5)
    for n in range(7):
        if n == kill_at:
            ctx.redis.kill()
        if n == back_at:
            ctx.redis.start()
        [save_config, lambda c, _: ids.extend(save_entries(c, 2, 1)), lambda c, _: save_check(c)][n % 3](ctx, "redis")
        time.sleep(0.1)
    return ids


def redis_down_at_commit(ctx):
    from portal.models import Job

    ctx.redis.kill()
    save_config(ctx, "redis down at commit")
    ids = save_entries(ctx, 2, 1)
    job = save_check(ctx)
    if not Job.objects.get(pk=job.pk).send_error:
        raise AssertionError("a job queued while Redis is down does not say so")
    time.sleep(random.uniform(0, 1))
    ctx.redis.start()
    return ids


def orthanc_killed(ctx):
    service = ctx.orthanc.service
    if random.random() < 0.5:
        os.kill(service.pid(), signal.SIGKILL)  # down before the change is saved
        save_config(ctx, "Orthanc killed before")
    else:
        save_config(ctx, "Orthanc killed during")
        time.sleep(random.uniform(0, 1.5))
        pid = service.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
    save_check(ctx)
    return []


def orthanc_refuses(ctx):
    from deployments.models import ConfigRevision, Deployment

    # Another program holds the DICOM port the new configuration asks for: Orthanc exits on reset.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    good = Deployment.objects.get(pk=ctx.deployment.pk).dicom_port
    try:
        Deployment.objects.filter(pk=ctx.deployment.pk).update(dicom_port=blocker.getsockname()[1])
        bad = save_config(ctx, "refused: DICOM port taken")
        wait(lambda: ConfigRevision.objects.get(pk=bad.pk).state in ("applied", "failed", "superseded"), 60, 0.1,
             "the refused push to end")  # fmt: skip
    finally:
        blocker.close()
        Deployment.objects.filter(pk=ctx.deployment.pk).update(dicom_port=good)
    save_config(ctx, "the good port again")
    return []


def orthanc_slow(ctx):
    from deployments.models import Deployment

    # The worker reaches Orthanc through the proxy for this round; the delay is per chunk.
    Deployment.objects.filter(pk=ctx.deployment.pk).update(orthanc_url=f"http://127.0.0.1:{ctx.proxy.port}")
    ctx.proxy.delay = random.uniform(0.3, 2.5)
    try:
        save_config(ctx, "Orthanc slow")
        save_check(ctx)
        # Slow for the push and the check, or 15 s at most; then it answers at full speed again.
        wait(lambda: pending_counts() == 0, 15, 0.2, "the slow round's work")
    except TimeoutError:
        pass  # recovery decides
    finally:
        ctx.proxy.delay = 0
        Deployment.objects.filter(pk=ctx.deployment.pk).update(orthanc_url=ctx.orthanc.url)
    return []


def sshd_down(ctx):
    from deployments.backups.models import BackupRun

    ctx.sshd.stop()
    try:
        run = save_backup(ctx)
        wait(lambda: BackupRun.objects.get(pk=run.pk).state in ("succeeded", "failed"), 60, 0.1, "the run to end")
    finally:
        ctx.sshd.start()
    return []


def disk_full(ctx):
    from worklists.models import WorklistEntry

    filler = Path(ctx.deployment.worklist_folder) / "filler.bin"
    try:
        with open(filler, "wb") as f:
            for _ in range(WL_DISK_MB * 16 + 16):  # bounded: the tmpfs holds WL_DISK_MB * 16 chunks
                try:
                    f.write(b"\0" * 65536)
                    f.flush()
                except OSError:
                    break
            try:
                for _ in range(64):  # the last partial blocks
                    f.write(b"\0" * 512)
                    f.flush()
            except OSError:
                pass
    except OSError:
        pass
    try:
        ids = save_entries(ctx, new=3, cancel=0)

        def seen():  # every new entry written (unlikely) or showing why not: visibly failed
            rows = WorklistEntry.objects.filter(pk__in=ids)
            return all(e.in_folder or e.sync_error for e in rows)

        wait(seen, 20, 0.1, "the disk-full sync to report")
    finally:
        filler.unlink(missing_ok=True)
    return ids


def pg_restart(ctx):
    from deployments.models import ConfigRevision

    revision = save_config(ctx, "PostgreSQL restart")
    ids = save_entries(ctx, 2, 1)
    db_retry(lambda: wait(lambda: ConfigRevision.objects.get(pk=revision.pk).state != "pending", 30, 0.02, "push"))
    time.sleep(random.uniform(0, 1))
    ctx.pg.stop()
    ctx.pg.start()
    # The web process's next page, at once: its connection from before the restart is gone.
    from django.test import Client

    client = Client(raise_request_exception=False)
    db_retry(lambda: client.force_login(ctx.admin))
    status = client.get("/").status_code
    if status != 200:
        raise AssertionError(f"the dashboard answered {status} right after the restart")
    # Saves go on as soon as it answers again.
    ids += save_entries(ctx, 1, 0)
    save_check(ctx)
    return ids


FAULTS = {
    "worker-kill-push": kill_worker_in_push,
    "worker-kill-sync": kill_worker_in_sync,
    "worker-kill-backup": kill_worker_in_backup_window,
    "redis-kill-saves": redis_killed_during_saves,
    "redis-down-commit": redis_down_at_commit,
    "orthanc-killed": orthanc_killed,
    "orthanc-refuses": orthanc_refuses,
    "orthanc-slow": orthanc_slow,
    "sshd-down": sshd_down,
    "disk-full": disk_full,
    "pg-restart": pg_restart,
}


def marks():
    from deployments.backups.models import BackupRun
    from deployments.models import ConfigRevision
    from portal.models import Job

    last = lambda model: model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0  # noqa: E731
    return last(Job), last(ConfigRevision), last(BackupRun)


def run_round(ctx, name, tally):
    from worklists.models import WorklistEntry

    before = db_retry(marks)
    entries_before = set(WorklistEntry.objects.values_list("pk", flat=True))
    started = time.monotonic()
    try:
        ids = FAULTS[name](ctx)
    except AssertionError as exc:  # a check inside the fault (a page, a reason) failed: a finding
        tally.problems.append(f"{name}: {exc}")
        tally.bad_files += 1
        ids = []
    except Exception as exc:  # the fault's own steps failed (a wait timed out): printed, the round recovers
        tally.problems.append(f"{name}: {type(exc).__name__}: {exc}")
        ids = []
    recovered = recover(ctx, started)
    tally.longest = max(tally.longest, recovered)
    touched = set(ids) | (
        set(db_retry(lambda: list(WorklistEntry.objects.values_list("pk", flat=True)))) - entries_before
    )
    db_retry(lambda: classify(ctx, tally, before, touched))
    db_retry(lambda: check_done_twice(ctx, tally))
    db_retry(lambda: check_files(ctx, tally))
    check_services(ctx, tally)  # not retried: a page that fails after recovery is a finding
    tally.rounds += 1


def table(results):
    head = ("fault", "rounds", "intents", "applied", "failed+reason", "lost", "duplicated", "bad files", "max recovery")
    lines = ["{:<20} {:>6} {:>7} {:>7} {:>13} {:>5} {:>10} {:>9} {:>12}".format(*head)]
    for name, t in results.items():
        lines.append(
            f"{name:<20} {t.rounds:>6} {t.intents:>7} {t.applied:>7} {t.failed:>13} {t.lost:>5} {t.duplicated:>10} "
            f"{t.bad_files:>9} {t.longest:>10.1f} s"
        )
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        raise SystemExit("the fault battery runs as root (it mounts a tmpfs, runs PostgreSQL as postgres)")
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    os.chmod(work, 0o755)  # noqa: S103 - the postgres user must reach its own folder inside
    ctx = Context(work)
    results = {}
    t0 = time.monotonic()
    try:
        setup(ctx)
        names = [n for n in FAULTS if not ONLY or n in ONLY]
        print(f"Fault battery: {ROUNDS} rounds of {len(names)} faults (set up in {time.monotonic() - t0:.0f} s)")
        for name in names:
            tally = results[name] = Tally()
            began = time.monotonic()
            for _ in range(ROUNDS):
                run_round(ctx, name, tally)
            print(
                f"  {name}: {tally.rounds} rounds in {time.monotonic() - began:.0f} s, "
                f"longest recovery {tally.longest:.1f} s",
                flush=True,
            )
    finally:
        teardown(ctx)
    print(table(results))
    print(f"total {time.monotonic() - t0:.0f} s")
    print("Reasons given by the failed intents (the most frequent of each fault):")
    for name, t in results.items():
        for reason, count in [(r, c) for r, c in t.reasons.most_common() if c][:3]:
            print(f"  {name}: {count} x {' '.join(reason.split())}")
    problems = [f"{n}: {p}" for n, t in results.items() for p in t.problems]
    for line in problems[:50]:
        print("  " + line)
    if any(t.lost or t.duplicated or t.bad_files for t in results.values()):
        sys.exit("FAILED: lost or duplicated intents, or bad files / services down (listed above)")


if __name__ == "__main__":
    main()
