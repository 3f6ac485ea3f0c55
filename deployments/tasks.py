from celery import shared_task

from portal.jobs import job_task

from .models import Deployment
from .push import deployment_push
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
