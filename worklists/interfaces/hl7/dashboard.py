"""The HL7 interface's panel on the deployment page: its senders and how their messages fare
(counts only: the messages themselves hold patient data)."""

import datetime

from django.db.models import Count, Q
from django.utils import timezone

from .models import Hl7Mapping, Hl7Message


def deployment_panel_context(deployment) -> dict:
    since = timezone.now() - datetime.timedelta(hours=24)
    messages = Hl7Message.objects.filter(deployment=deployment)
    counts = messages.filter(received_at__gte=since).aggregate(
        accepted=Count("id", filter=Q(ack_code=Hl7Message.Ack.AA)),
        refused=Count("id", filter=~Q(ack_code=Hl7Message.Ack.AA)),
    )
    return {
        "deployment": deployment,
        "hl7_mappings": Hl7Mapping.objects.filter(deployment=deployment).count(),
        "hl7_last": messages.only("received_at", "ack_code", "message_type").first(),
        "hl7_accepted": counts["accepted"],
        "hl7_refused": counts["refused"],
    }
