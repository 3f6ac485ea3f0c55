"""Import an existing Orthanc configuration (a file, or a folder of *.json) into a deployment."""

from django.core.management.base import BaseCommand, CommandError

from deployments.importer import ConfigImportError, import_path
from deployments.models import Deployment


class Command(BaseCommand):
    help = (
        "Read an Orthanc configuration file, or every *.json of a folder, into an existing deployment's "
        "settings, Orthanc users and modalities. Nothing is pushed to Orthanc."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the deployment (create it first in the portal)")
        parser.add_argument("path", help="orthanc.json, or the folder Orthanc reads (e.g. /etc/orthanc)")
        parser.add_argument(
            "--orthanc-version",
            help="the Orthanc release the files are for, as 'Orthanc --version' prints it (e.g. 1.12.7); "
            "by default the version the portal last saw on the deployment",
        )

    def handle(self, slug, path, orthanc_version=None, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment {slug!r}: create it in the portal first, then import into it")
        try:
            result = import_path(deployment, path, who=None, source="command", version=orthanc_version)
        except ConfigImportError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        for line in result.lines:
            self.stdout.write(str(line))
        self.stdout.write(f"Imported into {deployment.slug}: {len(result.critical)} critical finding(s).")
