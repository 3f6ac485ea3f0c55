"""``make run``: the whole portal on one machine, in the foreground.

Creates the demo deployment and the first Admin (password printed once), starts Redis if none
answers, the demo Orthanc, one Celery worker, exactly one beat, the web server, the MPPS SCP and the
HL7 listener. Ctrl-C stops every child it started, Orthanc included.
"""

import os
import secrets
import shutil
import signal

# Fixed argument lists, never a shell.
import subprocess  # nosec B404
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from deployments.demo import demo_first_backup, ensure_demo_backup, ensure_demo_deployment
from deployments.models import Deployment
from deployments.service import LocalService, ServiceError
from portal.roles import ADMIN
from portal.schedules import ensure_periodic_tasks


def redis_answers(url):
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


class Command(BaseCommand):
    help = "Run the portal, its demo Orthanc, Redis (if none answers), a Celery worker and beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, port, host, **options):
        if not 1 <= port <= 65535:
            raise CommandError(f"--port must be 1-65535, not {port}")
        # The banner (address, first password) must show at once, also when the output is a
        # pipe or a log file, not when a buffer fills.
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        self.children = []
        self.orthanc = None
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            self.start(host, port)
            while True:
                for name, proc in self.children:
                    if proc.poll() is not None:
                        raise CommandError(f"{name} stopped (exit status {proc.returncode}); stopping the rest")
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            self.stop_all()

    def start(self, host, port):
        var = Path(settings.VAR_DIR)
        ensure_periodic_tasks()
        broker = settings.CELERY_BROKER_URL
        if not redis_answers(broker):
            self.start_redis(broker, var / "redis")
        deployment = ensure_demo_deployment()
        password = self.ensure_first_admin()

        self.orthanc = LocalService.for_deployment(deployment)
        try:
            self.orthanc.start()
        except ServiceError as exc:
            raise CommandError(f"The demo Orthanc did not start: {exc}") from exc

        celery = [sys.executable, "-m", "celery", "-A", "portal"]
        queues = ",".join(["portal"] + [d.queue for d in Deployment.objects.all()])
        self.spawn("celery worker", celery + ["worker", "-Q", queues, "--concurrency", "2", "-l", "info"])
        beat_schedule = var / "celerybeat"
        self.spawn("celery beat", celery + ["beat", "-l", "info", "-s", str(beat_schedule)])
        self.spawn("web server", [sys.executable, "manage.py", "runserver", "--noreload", f"{host}:{port}"])
        self.spawn("MPPS SCP", [sys.executable, "manage.py", "mpps_scp"])
        self.spawn("HL7 listener", [sys.executable, "manage.py", "hl7_listener"])

        self.stdout.write(self.style.SUCCESS(f"\nThe portal runs at http://{host}:{port}/"))
        self.stdout.write(
            f"Demo Orthanc: {deployment.orthanc_url} (DICOM {deployment.dicom_aet} on port {deployment.dicom_port})"
        )
        self.stdout.write(f"MPPS SCP: {deployment.dicom_aet} on {settings.MPPS_BIND}:{settings.MPPS_PORT}")
        self.stdout.write(f"HL7 listener (MLLP): {settings.HL7_BIND}:{settings.HL7_PORT}")
        if password:
            self.stdout.write(self.style.WARNING(f"First Admin: user 'admin', password '{password}' (shown once)"))
        schedule = ensure_demo_backup(deployment)
        first_backup = not schedule.runs.exists()
        if first_backup:
            self.stdout.write(f"A first backup of the demo to {schedule.target_folder} and its restore drill run now.")
        self.stdout.write("Press Ctrl-C to stop everything.\n")
        self.stdout.flush()
        if first_backup:
            # In this process, beside the worker: the first backup need not wait for the hour. Started
            # after the banner is out: on a busy machine its thread kept this one from printing.
            threading.Thread(target=demo_first_backup, args=(schedule.pk,), daemon=True).start()

    def ensure_first_admin(self):
        admins = Group.objects.get(name=ADMIN)
        if User.objects.filter(groups=admins).exists() or User.objects.filter(is_superuser=True).exists():
            return None
        password = secrets.token_urlsafe(15)
        user = User.objects.create_user("admin", password=password)
        user.groups.add(admins)
        return password

    def start_redis(self, url, folder):
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CommandError(f"Redis at {url} does not answer, and it is not on this machine to be started here")
        binary = shutil.which("redis-server")
        if not binary:
            raise CommandError("redis-server is missing: run 'make run' (it installs the Debian package redis-server)")
        folder.mkdir(parents=True, exist_ok=True)
        self.spawn(
            "redis",
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(parts.port or 6379),
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
        )
        for _ in range(50):
            if redis_answers(url):
                return
            time.sleep(0.1)
        raise CommandError("Redis did not start: see its output above")

    def spawn(self, name, argv):
        # Fixed argv.
        proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, start_new_session=True)  # nosec B603
        self.children.append((name, proc))
        return proc

    def stop_all(self):
        # Each child leads its own process group: signal the group, so that a Celery worker's pool
        # processes go too (killing only their parent would leave them running a task).
        for _name, proc in reversed(self.children):
            signal_group(proc, signal.SIGTERM)
        for _name, proc in reversed(self.children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            signal_group(proc, signal.SIGKILL)  # whatever of the group is left
            proc.wait()
        if self.orthanc is None:
            return
        # A backup run cut short above leaves its guardian, which starts Orthanc if the run had
        # stopped it: let the guardians finish before Orthanc is stopped for good.
        deadline = time.monotonic() + GUARDIAN_GRACE
        self.orthanc.stop()
        while guardians_running() and time.monotonic() < deadline:
            time.sleep(0.2)
            self.orthanc.stop()
        self.orthanc.stop()


# A guardian acts at once when its run's pipe closes; its cleanup takes seconds.
GUARDIAN_GRACE = 60.0


def signal_group(proc, signum):
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def guardians_running():
    """Backup guardians started from this tree (any deployment's): see deployments/backups/guardian.py."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"deployments.backups.guardian" in cmdline and cwd == str(settings.BASE_DIR):
            return True
    return False
