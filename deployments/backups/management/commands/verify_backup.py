from django.core.management.base import BaseCommand, CommandError

from ...drill import backup_verify
from ...models import BackupRun
from ._snapshot_arg import find_run


class Command(BaseCommand):
    help = "Restore drill: verify_backup <run id | snapshot | slug/snapshot> in a throwaway Orthanc."

    def add_arguments(self, parser):
        parser.add_argument("snapshot")

    def handle(self, snapshot, **options):
        run = backup_verify(find_run(snapshot).pk)
        if run.drill_state != BackupRun.Drill.PASSED:
            raise CommandError(f"drill failed for {run.snapshot}: {run.drill_message}")
        self.stdout.write(f"{run.snapshot}: {run.drill_message}")
