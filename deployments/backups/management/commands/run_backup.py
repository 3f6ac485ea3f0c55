from django.core.management.base import BaseCommand, CommandError

from ...models import BackupRun, BackupSchedule
from ...run import backup_run, backup_start


class Command(BaseCommand):
    help = "Run one backup of a schedule now, in this process: run_backup <schedule id or name>."

    def add_arguments(self, parser):
        parser.add_argument("schedule")

    def handle(self, schedule, **options):
        found = (
            BackupSchedule.objects.filter(pk=int(schedule))
            if schedule.isdigit()
            else BackupSchedule.objects.filter(name=schedule)
        )
        matches = list(found[:2])
        if len(matches) != 1:
            raise CommandError(f"no single backup schedule {schedule!r} ({len(matches)} found): give its id")
        run = backup_start(matches[0].pk, BackupRun.Trigger.COMMAND)
        if run is None:
            raise CommandError(f"a backup of {matches[0]} is already queued or running")
        run = backup_run(run.pk)
        if run.state != BackupRun.State.SUCCEEDED:
            raise CommandError(f"backup failed: {run.error}")
        downtime = f", Orthanc stopped {run.downtime:.2f} s" if run.downtime is not None else ""
        self.stdout.write(
            f"snapshot {run.snapshot_path}: {run.files} files, {run.snapshot_size} bytes, "
            f"{run.bytes_transferred} bytes transferred in {run.duration:.1f} s{downtime}"
        )
