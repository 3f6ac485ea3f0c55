"""The Interfaces page of a deployment (Admin only: the messages hold patient data): the HL7
listener and the MPPS SCP as their last messages show them, the messages in and out with their
ACKs, the errors with the raw message, and the dead letters with Resend (audited)."""

from datetime import timedelta

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404

from . import heartbeat
from .hl7.models import Hl7Mapping, Hl7Message, Hl7Outbound, InterfaceHeartbeat
from .hl7.status import resend
from .mpps.models import MppsMessage

LAST = 25


def _text(raw) -> str:
    """A message's bytes for reading: segments on their own lines; bytes that are not UTF-8 as Latin-1."""
    raw = bytes(raw or b"")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


@require_perm("hl7.view_hl7message", "hl7.view_hl7outbound")
def interfaces_page(request, slug):
    deployment = deployment_or_404(request, slug)
    inbound = Hl7Message.objects.filter(deployment=deployment)
    outbound = Hl7Outbound.objects.filter(deployment=deployment).select_related("mapping")
    mpps = MppsMessage.objects.filter(step__deployment=deployment).select_related("step")
    last_in = inbound.only("received_at").first()
    last_mpps = mpps.order_by("-received_at").first()
    errors = [(m, _text(m.raw), _text(m.ack)) for m in inbound.exclude(ack_code=Hl7Message.Ack.AA)[:LAST]]
    dead = [(o, _text(o.raw), _text(o.ack)) for o in outbound.filter(state=Hl7Outbound.State.DEAD).order_by("id")]
    fresh_after = timezone.now() - timedelta(seconds=heartbeat.FRESH)
    beats = [(b, b.seen_at >= fresh_after) for b in InterfaceHeartbeat.objects.all()]
    context = {
        "deployment": deployment,
        "beats": beats,
        "mappings": Hl7Mapping.objects.filter(deployment=deployment),
        "last_in": last_in,
        "last_mpps": last_mpps,
        "inbound": [(m, _text(m.ack)) for m in inbound[:LAST]],
        "outbound": [(o, _text(o.ack)) for o in outbound[:LAST]],
        "waiting": outbound.filter(state=Hl7Outbound.State.PENDING).count(),
        "errors": errors,
        "dead": dead,
        "mpps": mpps.order_by("-received_at")[:LAST],
    }
    return render(request, "interfaces/page.html", context)


@require_POST
@require_perm("hl7.change_hl7outbound")
def resend_dead_letter(request, slug, pk):
    deployment = deployment_or_404(request, slug)
    with transaction.atomic():
        out = get_object_or_404(
            Hl7Outbound.objects.select_for_update(), pk=pk, deployment=deployment, state=Hl7Outbound.State.DEAD
        )
        before = {"state": out.state, "attempts": out.attempts, "error": out.error}
        resend(out)
        audit.record(
            request,
            AuditEntry.Action.ACTION,
            out,
            before,
            {"state": Hl7Outbound.State.PENDING, "attempts": 0, "error": out.error},
            summary=f"HL7 status message {out.control_id} resent (ORC-5 {out.order_status}, was: {out.error})"[:200],
        )
    messages.success(request, f"Message {out.control_id} is back in line for {out.mapping}.")
    return redirect("interfaces:page", slug=deployment.slug)
