"""manage.py push_config <slug>: render, push and verify a deployment's configuration now."""

from django.core.management.base import BaseCommand, CommandError

from deployments.models import Deployment

from ._first_push import add_login_arguments, push_now, read_login


class Command(BaseCommand):
    help = "Push a deployment's configuration into its Orthanc (in this process) and report the outcome."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the deployment's short name")
        add_login_arguments(parser)

    def handle(self, *args, slug, **options):
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment with slug {slug!r}")
        login = read_login(options)
        self.stdout.write(push_now(deployment, "push_config command", login))
