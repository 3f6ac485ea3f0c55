from django.core.management.base import BaseCommand, CommandError

from deployments.models import Deployment
from worklists.sync import SyncError, worklist_sync


class Command(BaseCommand):
    help = "Reconcile the worklist folder of one deployment (by slug) or of all with the worklist plugin."

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?", help="Deployment slug; all deployments when omitted.")

    def handle(self, *args, slug=None, **options):
        deployments = Deployment.objects.filter(worklists_enabled=True)
        if slug:
            deployments = Deployment.objects.filter(slug=slug)
            if not deployments:
                raise CommandError(f"No deployment with the slug {slug!r}.")
        failed = 0
        for deployment in deployments:
            try:
                result = worklist_sync(deployment.pk, full=True)
            except SyncError as exc:
                self.stderr.write(f"{deployment.slug}: {exc}")
                failed += 1
                continue
            self.stdout.write(f"{deployment.slug}: {result.summary()}")
        if failed:
            raise CommandError(f"{failed} deployment(s) could not be synced.")
