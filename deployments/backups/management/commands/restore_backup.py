from django.core.management.base import BaseCommand, CommandError

from ...restore import backup_restore
from ._snapshot_arg import find_run


class Command(BaseCommand):
    help = (
        "Restore a deployment from a snapshot: restore_backup <run id | snapshot | slug/snapshot>. "
        "Stops Orthanc, moves the current data aside (never deletes it), restores, starts, verifies."
    )

    def add_arguments(self, parser):
        parser.add_argument("snapshot")
        parser.add_argument("--yes", action="store_true", help="Do not ask for the deployment's slug.")
        parser.add_argument(
            "--accept-loss",
            action="append",
            default=[],
            metavar="FILE",
            help="A storage file the restore named as damaged, accepted as lost (repeat for each).",
        )

    def handle(self, snapshot, yes=False, accept_loss=(), **options):
        run = find_run(snapshot)
        slug = run.deployment.slug
        if not yes:
            answer = input(f"Type '{slug}' to restore {run.snapshot} into it (Orthanc stops briefly): ")
            if answer.strip() != slug:
                raise CommandError("not confirmed: nothing changed")
        try:
            self.stdout.write(backup_restore(run.pk, source="command", accept_losses=accept_loss))
        except Exception as exc:
            raise CommandError(f"restore failed: {exc}") from exc
