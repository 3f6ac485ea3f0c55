"""Orthanc always comes back: a backup run's guardian (a detached process) starts Orthanc again and
cleans up when the run's worker is killed inside the stop window of a SQLite copy."""

import os
import signal
import time
from pathlib import Path

import pytest

from deployments.backups.models import BackupRun
from deployments.backups.run import backup_run, backup_start
from deployments.orthanc import OrthancError
from portal.celery import app
from tests.backups.conftest import upload_studies
from tests.conftest import wait_for

pytestmark = pytest.mark.orthanc


def children(pid):
    """(pid, cmdline) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def answers(orthanc):
    try:
        orthanc.client().system()
        return True
    except OrthancError:
        return False


def kill_inside_the_stop_window(setup, worker):
    """SIGKILL the worker and its pool while the run's rsync of the final delta and index is under
    way; returns the processes the pool had spawned then."""
    service = setup.orthanc.service
    queue = setup.deployment.queue
    app.send_task("backups.scheduled_run", kwargs={"schedule_id": setup.schedule.pk}, queue=queue, task_id="beat-1")
    wait_for(lambda: not service.is_running(), timeout=90, interval=0.02, message="Orthanc stopped by the run")
    pool = [pid for pid, _ in children(worker.proc.pid)]

    def inside_the_window():  # the rsync of the final delta and the index is under way
        spawned = [child for pid in pool for child in children(pid)]
        return any(cmd.startswith("rsync") for _, cmd in spawned) and spawned

    spawned = wait_for(inside_the_window, timeout=10, interval=0.02, message="the copy inside the stop window")
    assert not service.is_running()
    for pid in [worker.proc.pid, *pool]:
        os.kill(pid, signal.SIGKILL)
    worker.proc.wait(10)
    return spawned


def test_a_worker_killed_inside_the_stop_window_leaves_orthanc_answering_within_30_s_and_the_schedule_free(
    backup_setup, celery_worker_factory, transactional_db
):
    # A slow link keeps the stop window (final delta and index over rsync) open for seconds.
    setup = backup_setup(bandwidth_limit=32)
    upload_studies(setup.orthanc.client(), studies=1, per_study=3)
    worker = celery_worker_factory(queues=(setup.deployment.queue,))

    spawned = kill_inside_the_stop_window(setup, worker)
    killed = time.monotonic()
    master = next(pid for pid, cmd in spawned if "ControlMaster=yes" in cmd)
    stage = next(
        word for _, cmd in spawned if cmd.startswith("rsync") for word in cmd.split() if "portal-stage-" in word
    )

    wait_for(lambda: answers(setup.orthanc), timeout=30, interval=0.1, message="Orthanc answering after the kill")
    back_after = time.monotonic() - killed
    assert back_after < 30
    run = wait_for(
        lambda: BackupRun.objects.filter(state=BackupRun.State.FAILED).first(),
        timeout=30,
        message="the dead run failed",
    )
    assert "died" in run.error and "started Orthanc again" in run.error, run.error
    wait_for(lambda: not alive(master), timeout=10, message="the dead run's SSH control connection ended")
    assert not Path(stage.rstrip("/")).exists()
    # The snapshot folder the dead run was writing had no manifest.json yet: the guardian removed it.
    wait_for(lambda: setup.snapshots() == [], timeout=30, message="the unfinished snapshot folder removed")

    next_run = backup_start(setup.schedule.pk)  # at once: the schedule is free again

    assert next_run is not None
    done = backup_run(next_run.pk)
    assert done.state == BackupRun.State.SUCCEEDED, done.error
    assert setup.snapshots() == [done.snapshot]
    print(f"Orthanc answered {back_after:.1f} s after the kill")


def test_a_run_killed_by_sigkill_is_reported_to_the_outside_monitor_by_a_fail_ping_with_its_log_tail(
    backup_setup, celery_worker_factory, transactional_db
):
    from urllib.parse import urlsplit

    from tests.backups.test_heard_when_silent import PingReceiver, kinds

    receiver = PingReceiver()
    try:
        setup = backup_setup(bandwidth_limit=32, ping_url=receiver.url)
        upload_studies(setup.orthanc.client(), studies=1, per_study=3)
        worker = celery_worker_factory(queues=(setup.deployment.queue,))

        kill_inside_the_stop_window(setup, worker)

        base = urlsplit(receiver.url).path
        wait_for(lambda: len(receiver.pings) >= 2, timeout=60, message="the guardian's ping")
        time.sleep(1)  # a second fail ping (or any other) would have come by now
    finally:
        receiver.stop()
    run = BackupRun.objects.get()
    assert run.state == BackupRun.State.FAILED and "died" in run.error, run.error
    assert kinds(receiver.pings, base) == ["/start", "/fail"]
    start, fail = receiver.pings
    assert fail["query"]["rid"] == start["query"]["rid"]  # the monitor closes the run it saw start
    facts = receiver.facts(fail)
    assert facts["run"] == str(run.pk) and "died (killed) inside the stop window" in facts["error"]
    tail = fail["body"].split("--- log tail ---\n", 1)[1]
    # The lines the run logged before it was killed, heard over the guardian's pipe.
    assert "bulk copy:" in tail and "stopping Orthanc for the index copy" in tail
    assert tail.strip() == run.log_tail.strip()


def test_a_run_that_ends_by_itself_leaves_its_guardian_no_work(backup_setup, transactional_db):
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2)

    run = setup.run()

    assert run.state == BackupRun.State.SUCCEEDED, run.error
    assert run.downtime > 0
    time.sleep(1)  # a guardian that wrongly acted would have marked or restarted by now
    run.refresh_from_db()
    assert run.state == BackupRun.State.SUCCEEDED and run.error == ""
    assert answers(setup.orthanc)
