"""manage.py push_config <slug>: render, push and verify a deployment's configuration now."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from deployments.models import ConfigRevision, Deployment
from deployments.push import PushError, deployment_push, revision_create


class Command(BaseCommand):
    help = "Push a deployment's configuration into its Orthanc (in this process) and report the outcome."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the deployment's short name")

    def handle(self, *args, slug, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment with slug {slug!r}")
        try:
            with transaction.atomic():
                revision = revision_create(deployment, reason="push_config command")
            message = deployment_push(deployment.pk)
        except PushError as exc:
            raise CommandError(f"push failed: {exc}") from exc
        revision.refresh_from_db()
        if revision.state == ConfigRevision.State.SUPERSEDED:
            message += f" (revision {revision.number} was superseded by a newer save)"
        self.stdout.write(message)
