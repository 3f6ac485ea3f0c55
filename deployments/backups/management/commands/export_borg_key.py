from django.core.management.base import BaseCommand, CommandError

from portal import audit
from portal.models import AuditEntry

from ...borg import BorgError, export_key
from ...models import BackupSchedule


class Command(BaseCommand):
    help = (
        "Print a Borg schedule's repository key and passphrase once, for safekeeping off the portal: "
        "export_borg_key <schedule id>. A second export is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("schedule", type=int)

    def handle(self, schedule, **options):
        found = BackupSchedule.objects.filter(pk=schedule, kind=BackupSchedule.Kind.BORG).first()
        if found is None:
            raise CommandError(f"no Borg backup schedule with id {schedule}")
        try:
            text = export_key(found)
        except BorgError as exc:
            raise CommandError(str(exc)) from exc
        audit.record(None, AuditEntry.Action.ACTION, found, summary="Borg repository key exported", source="command")
        self.stdout.write(text)
