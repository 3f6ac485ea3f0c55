"""Verification across history: the rotating drill reaches every snapshot within a month of
simulated days, and the daily sample re-reads stored files on a real sshd target against Orthanc's
MD5, with the result per snapshot on the dashboard."""

import math
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from deployments.backups.models import BackupRun, BackupSchedule
from deployments.backups.rotation import DRILL_CYCLE_DAYS, backup_verify_history, drills_due, sample_check
from deployments.models import Deployment
from tests.backups.conftest import upload_studies


@pytest.mark.django_db
def test_the_rotating_drill_picks_every_snapshot_within_a_month_of_simulated_days():
    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip
    schedule = BackupSchedule.objects.create(deployment=deployment, name="N", host="nas", user="b", remote_folder="/s")
    start = timezone.now() - timedelta(days=200)

    def snapshot(day):
        at = start + timedelta(days=day)
        return BackupRun.objects.create(
            schedule=schedule, state=BackupRun.State.SUCCEEDED, snapshot=f"{at:%Y%m%dT%H%M%SZ}", created_at=at
        )

    for day in range(-40, 0):  # 40 snapshots kept when the rotation starts
        snapshot(day)
    drilled = {}  # run id → the days it was drilled
    for day in range(90):  # each simulated day: a new snapshot, the oldest pruned, then the day's drills
        snapshot(day)
        oldest = BackupRun.objects.filter(schedule=schedule, pruned_at__isnull=True).order_by("created_at").first()
        BackupRun.objects.filter(pk=oldest.pk).update(pruned_at=start + timedelta(days=day))
        due = drills_due(schedule)
        assert len(due) == math.ceil(40 / (DRILL_CYCLE_DAYS - 1))
        for run in due:
            drilled.setdefault(run.pk, []).append(day)
            BackupRun.objects.filter(pk=run.pk).update(
                drill_state=BackupRun.Drill.PASSED, drill_at=start + timedelta(days=day, hours=5)
            )

    for run in BackupRun.objects.filter(schedule=schedule):
        born = (run.created_at - start).days
        gone = (run.pruned_at - start).days if run.pruned_at else 89
        # From its first day (or the rotation's) to its last, never 28 days without a drill.
        checkpoints = [max(born, 0), *drilled.get(run.pk, []), gone]
        gaps = [b - a for a, b in zip(checkpoints, checkpoints[1:], strict=False)]
        assert max(gaps) <= DRILL_CYCLE_DAYS, (run.snapshot, born, gone, drilled.get(run.pk))


@pytest.mark.orthanc
def test_the_daily_verification_samples_every_snapshot_drills_the_least_recent_and_names_damage_on_the_dashboard(
    backup_setup, admin_client, settings
):
    settings.BACKUP_SAMPLE_FILES = 1000  # the whole of these small snapshots
    setup = backup_setup()
    upload_studies(setup.orthanc.client(), studies=1, per_study=3)
    first = setup.run()
    upload_studies(setup.orthanc.client(), studies=1, per_study=2, patient="Q")
    second = setup.run()
    assert first.state == second.state == BackupRun.State.SUCCEEDED, (first.error, second.error)

    summary = backup_verify_history(setup.schedule)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.sample_state == second.sample_state == BackupRun.Drill.PASSED
    assert first.sample_message == "3 sampled files match their MD5"
    assert second.sample_message == "5 sampled files match their MD5"
    # One drill a day reaches both within the cycle; the least recently verified first.
    assert first.drill_state == BackupRun.Drill.PASSED and second.drill_state == BackupRun.Drill.NONE
    assert summary.endswith(f"drilled {first.snapshot}")
    assert drills_due(setup.schedule) == [second]

    # A stored file of the older snapshot damaged on the target, its size kept.
    damaged_rel = sorted(p for p in (setup.target / first.snapshot / "storage").rglob("*") if p.is_file())[0]
    data = bytearray(damaged_rel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged_rel.write_bytes(bytes(data))
    name = str(damaged_rel.relative_to(setup.target / first.snapshot / "storage"))

    found = sample_check(setup.schedule)

    first.refresh_from_db()
    assert found[first.pk] == [name]
    assert first.sample_state == BackupRun.Drill.FAILED and name in first.sample_message
    assert "DAMAGED" in mail.outbox[-1].subject and name in mail.outbox[-1].body
    page = admin_client.get(reverse("backups:schedule", args=[setup.schedule.pk])).content.decode()
    assert f"1 of 3 sampled files DAMAGED: {name}" in page
    dashboard = admin_client.get(reverse("backups:dashboard")).content.decode()
    assert "sampled files DAMAGED" in dashboard and "Restorable" in dashboard
