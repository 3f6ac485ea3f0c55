from . import G, P

MATRIX = {
    "backups:dashboard": G(viewer=200),
    "backups:schedule_create": G(),
    "backups:schedule": G(viewer=200, kwargs={"pk": "backup_schedule.pk"}),
    "backups:schedule_edit": G(kwargs={"pk": "backup_schedule.pk"}),
    "backups:schedule_delete": P(kwargs={"pk": "backup_schedule.pk"}),
    "backups:schedule_run": P(kwargs={"pk": "backup_schedule.pk"}),
    # Renders the outcome (here: nothing listens on port 9) on a page of its own.
    "backups:test_connection": P(admin=200, kwargs={"pk": "backup_schedule.pk"}),
    "backups:pin_host_key": P(kwargs={"pk": "backup_schedule.pk"}),
    "backups:ssh_key": G(viewer=200, kwargs={"slug": "deployment.slug"}),
    "backups:ssh_key_generate": P(kwargs={"slug": "deployment.slug"}),
    "backups:run": G(viewer=200, kwargs={"pk": "backup_run.pk"}),
    "backups:run_verify": P(kwargs={"pk": "backup_run.pk"}),
    "backups:run_restore": G(kwargs={"pk": "backup_run.pk"}),
}


def make_backup_objects(world):
    from django.utils import timezone

    from deployments.backups.models import BackupRun, BackupSchedule

    world.backup_schedule = BackupSchedule.objects.create(
        deployment=world.deployment, name="Matrix NAS", host="127.0.0.1", port=9, user="backup", remote_folder="/srv/b"
    )
    now = timezone.now()
    world.backup_run = BackupRun.objects.create(
        schedule=world.backup_schedule, state=BackupRun.State.SUCCEEDED, snapshot="20261122T010000Z",
        started_at=now, finished_at=now, snapshot_size=1, bytes_transferred=1, duration=1.0, files=1,
        # A restore pre-check found a damaged file: the restore form carries the box to accept its loss.
        restore_damaged=["ab/cd/abcd0000-damaged"],
    )  # fmt: skip


WORLD_HOOKS = [make_backup_objects]
