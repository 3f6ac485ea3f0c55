import logging

from celery import shared_task

from portal.jobs import job_task

from .adoption import logins_forget_expired
from .models import Deployment
from .push import deployment_push, fingerprint, revision_create
from .render import render_for
from .security.runs import security_audit_request_all, security_audit_run
from .status import deployment_status

log = logging.getLogger(__name__)


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
    """Every minute, from beat: the status the dashboard shows."""
    for deployment in Deployment.objects.all():
        try:
            deployment_status(deployment)
        except Exception:  # one broken deployment must not leave the others' status unchecked
            log.exception("status check of deployment %s failed", deployment.pk)


deployment_push_task = job_task("deployments.deployment_push")(deployment_push)


@shared_task(name="deployments.expire_users")
def expire_users_task():
    """Accounts past their expiry date leave credentials.json: push where the render changed."""
    for deployment in Deployment.objects.filter(orthanc_users__expires_on__isnull=False).distinct():
        applied = deployment.revisions.filter(state="applied").first()
        if applied and applied.fingerprint != fingerprint(render_for(deployment)):
            revision_create(deployment, reason="an Orthanc account expired")


security_audit_run_task = job_task("deployments.security_audit_run")(security_audit_run)


@shared_task(name="deployments.security_audit_all")
def security_audit_all_task():
    """The live audit of every deployment, on schedule: each runs on its own worker."""
    return security_audit_request_all()


@shared_task(name="deployments.forget_push_logins")
def forget_push_logins_task():
    """Admin accounts typed for a first push that no push took in time are deleted."""
    return logins_forget_expired()


@shared_task(name="deployments.agent_heartbeat", ignore_result=True)
def agent_heartbeat_task(deployment_id):
    """Runs on the site's own queue: proof that its worker is there (deployments/agents.py)."""
    from .agents import heartbeat

    heartbeat(deployment_id)


@shared_task(name="deployments.agent_heartbeats", ignore_result=True)
def agent_heartbeats_task():
    from .agents import send_heartbeats

    send_heartbeats()
