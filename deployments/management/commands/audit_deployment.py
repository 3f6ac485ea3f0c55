"""Print a deployment's security findings; exit status 1 on any critical one (for cron).

The audit runs here, in this process, and its result is stored like a task's: the security page
then shows it."""

import json

from django.core.management.base import BaseCommand, CommandError

from deployments.models import Deployment
from deployments.security import has_critical
from deployments.security.runs import security_audit_inline


class Command(BaseCommand):
    help = "Check a deployment's settings, secret files and live Orthanc against the security guide."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--no-live", action="store_true", help="skip the checks over HTTP")
        parser.add_argument("--json", action="store_true", help="one JSON list of findings")

    def handle(self, slug, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment {slug!r}", returncode=2)
        findings = security_audit_inline(deployment, live=not options["no_live"])
        if options["json"]:
            self.stdout.write(_json(findings))
        else:
            for finding in findings:
                self.stdout.write(str(finding))
            counts = {s: sum(f.severity == s for f in findings) for s in ("critical", "high", "medium", "low")}
            self.stdout.write(f"{deployment.slug}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if has_critical(findings):
            raise SystemExit(1)


def _json(findings):
    return json.dumps([vars(f) for f in findings], indent=2)
