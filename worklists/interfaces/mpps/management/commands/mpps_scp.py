"""``manage.py mpps_scp``: the MPPS SCP in the foreground (make run and compose start it)."""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deployments.models import Deployment
from worklists.interfaces.mpps.scp import MppsServer


class Command(BaseCommand):
    help = "Receive MPPS (N-CREATE / N-SET) from the registered ultrasound machines."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.MPPS_PORT)
        parser.add_argument("--bind", default=settings.MPPS_BIND)
        parser.add_argument(
            "--deployment",
            action="append",
            dest="slugs",
            metavar="SLUG",
            help="Serve only this deployment (repeatable), e.g. on a site agent beside its folder.",
        )

    def handle(self, *args, port, bind, slugs, **options):
        if not 1 <= port <= 65535:
            raise CommandError(f"--port must be 1-65535, not {port}")
        if slugs:
            unknown = set(slugs) - set(Deployment.objects.filter(slug__in=slugs).values_list("slug", flat=True))
            if unknown:
                raise CommandError(f"no deployment {', '.join(sorted(unknown))}")
        # pynetdicom logs every PDU at INFO: the portal's own lines say what matters.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        server = MppsServer(ae_title=settings.MPPS_AE_TITLE or "PORTAL_MPPS", slugs=slugs)
        self.stdout.write(f"MPPS SCP on {bind}:{port}", ending="\n")
        self.stdout.flush()
        try:
            server.serve(bind, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc}") from exc
        except KeyboardInterrupt:
            pass
