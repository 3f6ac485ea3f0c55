from celery import shared_task

from portal.jobs import job_task

from .models import Deployment
from .push import deployment_push, fingerprint, revision_create
from .render import render_for
from .status import deployment_status


def deployment_check(deployment_id):
    status = deployment_status(Deployment.objects.get(pk=deployment_id))
    if status["state"] != "up":
        raise RuntimeError(status["error"])
    stats = status["statistics"]
    return (
        f"Orthanc {status['system'].get('Version')} is up: {stats['CountPatients']} patients, "
        f"{stats['CountStudies']} studies, {stats['CountInstances']} instances"
    )


deployment_check_task = job_task("deployments.deployment_check")(deployment_check)


@shared_task(name="deployments.check_all")
def check_all_task():
    for deployment in Deployment.objects.all():
        deployment_status(deployment)


deployment_push_task = job_task("deployments.deployment_push")(deployment_push)


@shared_task(name="deployments.expire_users")
def expire_users_task():
    """Accounts past their expiry date leave credentials.json: push where the render changed."""
    for deployment in Deployment.objects.filter(orthanc_users__expires_on__isnull=False).distinct():
        applied = deployment.revisions.filter(state="applied").first()
        if applied and applied.fingerprint != fingerprint(render_for(deployment)):
            revision_create(deployment, reason="an Orthanc account expired")
