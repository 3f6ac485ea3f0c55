"""``manage.py hl7_listener``: the HL7 v2 MLLP listener, in the foreground (make run, compose)."""

import signal
import ssl
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from worklists.interfaces import heartbeat

from ...message import CHARSETS
from ...mllp import Limits, Listener


class Command(BaseCommand):
    help = "Listen for HL7 v2 orders and patient updates over MLLP (TCP)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.HL7_PORT)
        parser.add_argument("--bind", default=settings.HL7_BIND)
        parser.add_argument("--max-bytes", type=int, default=settings.HL7_MAX_BYTES)
        parser.add_argument("--frame-timeout", type=float, default=settings.HL7_FRAME_TIMEOUT)
        parser.add_argument("--idle-timeout", type=float, default=settings.HL7_IDLE_TIMEOUT)
        parser.add_argument("--max-connections", type=int, default=settings.HL7_MAX_CONNECTIONS)
        parser.add_argument("--tls-cert", default=settings.HL7_TLS_CERT, help="PEM certificate (chain): MLLP over TLS")
        parser.add_argument("--tls-key", default=settings.HL7_TLS_KEY, help="its PEM private key")

    def handle(self, *args, port, bind, max_bytes, frame_timeout, idle_timeout, max_connections, **options):
        tls = self.tls_context(options["tls_cert"], options["tls_key"])
        if not 1 <= port <= 65535:
            raise CommandError(f"--port must be 1-65535, not {port}")
        if max_bytes < 1024 or frame_timeout <= 0 or idle_timeout <= 0 or max_connections < 1:
            raise CommandError("--max-bytes ≥ 1024, the timeouts > 0 and --max-connections ≥ 1")
        if settings.HL7_DEFAULT_CHARSET not in CHARSETS:
            raise CommandError(f"HL7_DEFAULT_CHARSET must be one of {', '.join(CHARSETS)}")
        limits = Limits(max_bytes, frame_timeout, idle_timeout, max_connections)
        try:
            server = Listener((bind, port), limits, tls)
        except OSError as exc:
            raise CommandError(f"The HL7 listener cannot listen on {bind}:{port}: {exc.strerror or exc}") from exc

        def stop(*_):
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        self.stdout.write(f"HL7 listener on {bind}:{port} (MLLP{' over TLS' if tls else ''})")
        beating = heartbeat.start("hl7", f"{bind}:{port}")
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            beating.set()
            server.server_close()

    def tls_context(self, cert, key):
        if not cert and not key:
            return None
        if not (cert and key):
            raise CommandError("MLLP over TLS needs both --tls-cert and --tls-key (HL7_TLS_CERT, HL7_TLS_KEY)")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"The HL7 listener's TLS certificate or key cannot be used: {exc}") from exc
        return context
