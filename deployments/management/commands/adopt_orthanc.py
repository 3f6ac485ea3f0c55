"""manage.py adopt_orthanc <slug> <folder>: take over a running Orthanc in one guided run.

Import its files (comments, several *.json, its Lua filter) → print the review → the first push,
with an admin account of that Orthanc or through the service control → verified, or the old files
back and Orthanc answering, with what to do next."""

import sys

from django.core.management.base import BaseCommand, CommandError

from deployments.importer import ConfigImportError, import_path
from deployments.models import Deployment

from ._first_push import add_login_arguments, push_now, read_login


class Command(BaseCommand):
    help = (
        "Adopt a running Orthanc: import its configuration folder into an existing deployment, show what was "
        "read (users and the roles their old request filter gave them), then push and verify."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the deployment (create it first in the portal, with the Orthanc's URL)")
        parser.add_argument("path", help="the folder Orthanc reads (e.g. /etc/orthanc), or its orthanc.json")
        parser.add_argument("--orthanc-version", help="the Orthanc release the files are for (e.g. 1.12.7)")
        add_login_arguments(parser)
        parser.add_argument("--yes", action="store_true", help="push after the review without asking")
        parser.add_argument("--review-only", action="store_true", help="import and review; push later")

    def handle(self, slug, path, orthanc_version=None, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment {slug!r}: create it in the portal first, then adopt into it")
        try:
            result = import_path(deployment, path, who=None, source="command", version=orthanc_version)
        except ConfigImportError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        deployment = result.deployment  # as the import left it
        self.stdout.write("1. Imported:")
        for line in result.lines:
            self.stdout.write(f"   {line}")
        self._review(deployment, result)
        if options["review_only"] or not self._confirmed(options):
            self.stdout.write(
                f"Nothing pushed. After your review: manage.py push_config {slug} --admin-user NAME "
                "(an admin account of the running Orthanc), or set the service control and push_config."
            )
            return
        login = read_login(options)
        self.stdout.write("3. First push…")
        self.stdout.write(f"4. {push_now(deployment, 'first push of the adoption (adopt_orthanc)', login)}")

    def _review(self, deployment, result):
        self.stdout.write("2. Review:")
        for user in deployment.orthanc_users.all():
            access = "" if user.is_effective() else ", no access"
            self.stdout.write(f"   Orthanc user {user.username}: {user.role}{access}")
        for line in result.to_decide:
            self.stdout.write(f"   TO DECIDE: {line.text}")
        self.stdout.write(f"   {len(result.critical)} critical finding(s), {len(result.to_decide)} user(s) to decide.")

    def _confirmed(self, options):
        if options["yes"]:
            return True
        if options["admin_password_stdin"] or not sys.stdin.isatty():
            self.stdout.write("   (add --yes to push without being asked)")
            return False
        return input("Push now? [y/N] ").strip().lower() in ("y", "yes")
