"""The status delivery on the deployment's queue, and the minute sweep on the portal queue."""

from celery import shared_task

from deployments.models import Deployment

from .models import Hl7Outbound
from .status import DELIVER, outbound_deliver, send_deliver


@shared_task(name=DELIVER)
def deliver_task(deployment_id):
    return outbound_deliver(deployment_id)


@shared_task(name="hl7.status_sweep")
def sweep_task():
    """What a lost task or an unreachable broker left waiting is sent again."""
    ids = set(Hl7Outbound.objects.filter(state=Hl7Outbound.State.PENDING).values_list("deployment_id", flat=True))
    for deployment in Deployment.objects.filter(pk__in=ids):
        send_deliver(deployment.pk, deployment.queue)
