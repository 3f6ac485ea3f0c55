"""The guardian of a backup run: a small detached process that outlives the run.

A run that dies (kill -9 of its worker, the OOM killer) while Orthanc is stopped for the SQLite copy
would leave the clinic without its PACS until the lost-run reaper, half an hour later. So each run
starts a guardian and talks to it over a pipe, one line a message:

    {"run": …, "database": …, …}   the first line: what to clean up, and where the run is recorded
    partial <name>                  the snapshot folder the run writes on the target (unfinished
                                    until its manifest.json is there)
    log <line>                      a line of the run's log: the guardian keeps the last ones
    stop <epoch seconds>            Orthanc is being stopped; it must answer again by that time
    started                         Orthanc answers again: the stop window is closed
    done                            the run ended by itself (success or recorded failure)

The end of the pipe without "done" means the run's process died: the guardian starts Orthanc (if the
window was open), ends the dead run's SSH control connection, removes its temporary folders and its
snapshot folder if still unfinished (no manifest.json: a finished snapshot stays), and records the
run failed (with the log lines it heard) so that the schedule can run again at once, then sends the
schedule's failure ping so that an outside monitor hears of it. A stop
window that outlasts its deadline gets Orthanc started too, even while the run lives on (the run
then finds Orthanc running and fails its copy as inconsistent).

Started as ``python -m deployments.backups.guardian``; the pipe is its standard input.
"""

import json
import logging
import os
import select
import shutil
import signal
import subprocess  # nosec B404: our own interpreter, fixed arguments
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
# After the run's own deadline: the run starts Orthanc itself first, with time for its attempts.
GRACE = 30.0
LOG_LINES = 40  # as many as a run keeps in its log tail
DATABASE_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")


class Guard:
    """The run's end of the pipe. Every message is best effort: a guardian that cannot be told
    must never fail the backup it guards."""

    def __init__(self, run, ssh_dir=None, master_pid=None, temp_dirs=()):
        from django.conf import settings
        from django.db import connection

        read, self.pipe = os.pipe()  # both non-inheritable: ssh and rsync started later do not hold it
        header = {
            "run": run.pk,
            "database": {k: connection.settings_dict.get(k) for k in DATABASE_KEYS},
            "ssh_dir": str(ssh_dir) if ssh_dir else None,
            "master_pid": master_pid,
            "temp_dirs": [str(p) for p in temp_dirs],
        }
        try:
            self.proc = subprocess.Popen(  # nosec B603: our interpreter and module, no user input
                [sys.executable, "-m", "deployments.backups.guardian"],
                cwd=settings.BASE_DIR,
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the worker's process group: a kill of the group spares it
                close_fds=True,
            )
        finally:
            os.close(read)
        self.tell(json.dumps(header))

    def tell(self, line):
        if self.pipe is None:  # closed: its descriptor number may already belong to another file
            return
        try:
            os.write(self.pipe, (line + "\n").encode())
        except OSError as exc:
            log.warning("the backup guardian could not be told %r: %s", line.split()[0], exc)

    def partial(self, path):
        self.tell(f"partial {path}")

    def log(self, line):
        self.tell("log " + " ".join(line.splitlines()))

    def stopping(self, deadline_monotonic):
        self.tell(f"stop {time.time() + (deadline_monotonic - time.monotonic()) + GRACE:.3f}")

    def started(self):
        self.tell("started")

    def close(self):
        self.tell("done")
        os.close(self.pipe)
        self.pipe = None
        # Not waited for: it exits on "done" by itself; reaping it here keeps no zombie behind.
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("the backup guardian %s did not exit after done", self.proc.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------- the guardian process


_django_ready = False


class Watch:
    """What the guardian has heard so far."""

    def __init__(self):
        self.header, self.partial, self.deadline, self.done = None, None, None, False
        self.lines = []  # the run's last log lines
        self.buffer = b""

    def hear(self, line):
        if self.header is None:
            self.header = json.loads(line)
        elif line == "done":
            self.done = True
        elif line == "started":
            self.deadline = None
        elif line.startswith("log "):
            self.lines = [*self.lines[-(LOG_LINES - 1) :], line.removeprefix("log ")]
        elif line.startswith("partial "):
            self.partial = line.removeprefix("partial ")
        elif line.startswith("stop "):
            self.deadline = float(line.removeprefix("stop "))

    def feed(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.hear(line.decode())


def watch(fd=0):
    """Read the pipe until "done", its end, or a stop deadline passes; returns the Watch."""
    w = Watch()
    while not w.done:
        timeout = None if w.deadline is None else max(w.deadline - time.time(), 0)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            start_orthanc(w, "the stop window outlasted its deadline")
            w.deadline = None
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        w.feed(data)
    return w


def setup_django(database):
    global _django_ready
    if _django_ready:
        return
    _django_ready = True
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    # The run's own database (a test database too), before any connection is made.
    settings.DATABASES["default"].update({k: v for k, v in database.items() if v is not None})


def run_of(w):
    setup_django(w.header["database"])
    from .models import BackupRun

    return BackupRun.objects.select_related("schedule__deployment").get(pk=w.header["run"])


def start_orthanc(w, why):
    from .control import ensure_running, service_of

    deployment = run_of(w).schedule.deployment
    log.warning("backup run %s: %s; starting Orthanc of %s", w.header["run"], why, deployment)
    try:
        ensure_running(service_of(deployment))
    except Exception:  # logged; the lost-run reaper tries again later
        log.exception("Orthanc of %s could not be started", deployment)


def end_master(w):
    """End the dead run's SSH control connection (only if the pid is still that ssh) and its folder."""
    pid, folder = w.header.get("master_pid"), w.header.get("ssh_dir")
    if pid and folder:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if folder.encode() in cmdline:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for path in [folder, *w.header.get("temp_dirs", [])]:
        if path:
            shutil.rmtree(path, ignore_errors=True)


def remove_partial(w):
    from .ssh import Session

    if not w.partial:
        return
    try:
        with Session(run_of(w).schedule) as ssh:
            ssh.remove_unfinished([w.partial])
    except Exception:  # the next run removes it
        log.exception("could not remove %s", w.partial)


def record_death(w, orthanc_restarted):
    from django.utils import timezone

    from portal.models import Job

    from . import alerts, pings
    from .models import BackupRun

    run_id, now = w.header["run"], timezone.now()
    error = "the process running this backup died (killed)" + (
        " inside the stop window; the guardian started Orthanc again" if orthanc_restarted else ""
    )
    tail = "\n".join([*w.lines, f"the run's process died; the guardian recorded: {error}"])
    run = run_of(w)
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    if BackupRun.objects.filter(pk=run_id, state__in=BackupRun.ACTIVE).update(
        state=BackupRun.State.FAILED, finished_at=now, error=error, log_tail=tail, duration=duration
    ):
        Job.objects.filter(kind="backups.backup_run", target_id=run_id, state=Job.State.RUNNING).update(
            state=Job.State.FAILED, finished_at=now, message=error
        )
        run.refresh_from_db()
        try:
            alerts.run_failed(run)
        except Exception:
            log.exception("could not send the alert of backup run %s", run_id)
        # The run's own fail ping died with it: without this one the monitor would wait out its grace time.
        pings.run_finished(run)


def main():
    logging.basicConfig(level=logging.INFO, format="backup guardian %(process)d: %(message)s")
    w = watch()
    if w.done or w.header is None:
        return
    window_open = w.deadline is not None
    if window_open:  # Orthanc first: the ultrasound machines wait for it
        start_orthanc(w, "the run died inside the stop window")
    end_master(w)
    remove_partial(w)
    record_death(w, window_open)


if __name__ == "__main__":
    main()
