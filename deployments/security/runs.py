"""Stored runs of the security audit. The live checks try logins against Orthanc, so they run in
a task (an Admin's button, the schedule) or from ``manage.py audit_deployment``, and the security
page shows the latest stored result; viewing it asks Orthanc nothing."""

from django.utils import timezone

from portal import jobs

from ..models import Deployment, SecurityAudit
from . import Finding, audit_deployment

MASK = "••••••"
# Shorter secrets are weak passwords, which the findings never quote; masking them would also
# mangle words ("orthanc") that legitimately appear in the text.
MIN_MASKED_LENGTH = 8


def security_audit_request(deployment, user=None, source=SecurityAudit.Source.WEB) -> SecurityAudit:
    """Record an audit and queue it on the deployment's worker (which sees its files)."""
    user = user if user is not None and user.is_authenticated else None
    audit = SecurityAudit.objects.create(deployment=deployment, source=source, requested_by=user)
    jobs.enqueue("deployments.security_audit_run", audit.pk, queue=deployment.queue, user=user)
    return audit


def security_audit_request_all() -> int:
    """The schedule's safety net: one audit per deployment."""
    deployments = list(Deployment.objects.all())
    for deployment in deployments:
        security_audit_request(deployment, source=SecurityAudit.Source.SCHEDULE)
    return len(deployments)


def security_audit_run(audit_id) -> str:
    """Run a recorded audit, live checks included, and store its findings (no secret in them).

    Nothing is held open while Orthanc is asked: each state change is its own short write.
    """
    audit = SecurityAudit.objects.select_related("deployment").get(pk=audit_id)
    SecurityAudit.objects.filter(pk=audit_id).update(state=SecurityAudit.State.RUNNING, started_at=timezone.now())
    try:
        findings = audit_deployment(audit.deployment, live=audit.live)
    except Exception as exc:
        SecurityAudit.objects.filter(pk=audit_id).update(
            state=SecurityAudit.State.FAILED,
            finished_at=timezone.now(),
            error=mask(f"{type(exc).__name__}: {exc}", secrets_of(audit.deployment))[:2000],
        )
        raise
    store(audit_id, audit.deployment, findings)
    return summary(audit.deployment, findings)


def security_audit_inline(deployment, live=True, source=SecurityAudit.Source.COMMAND):
    """The command's way: run now in this process, store the result like a task would."""
    audit = SecurityAudit.objects.create(
        deployment=deployment, source=source, live=live, started_at=timezone.now(), state=SecurityAudit.State.RUNNING
    )
    findings = audit_deployment(deployment, live=live)
    store(audit.pk, deployment, findings)
    return findings


def store(audit_id, deployment, findings):
    secrets = secrets_of(deployment)
    SecurityAudit.objects.filter(pk=audit_id).update(
        state=SecurityAudit.State.DONE,
        finished_at=timezone.now(),
        findings=[{k: mask(v, secrets) for k, v in finding_data(f).items()} for f in findings],
    )


def finding_data(finding: Finding) -> dict:
    return {
        "id": finding.id,
        "severity": finding.severity,
        "what": finding.what,
        "why": finding.why,
        "field": finding.field,
        "part": finding.part,
        "url": finding.url,
    }


def stored_findings(data) -> list[Finding]:
    return [Finding(**item) for item in data]


def secrets_of(deployment) -> list[str]:
    values = [deployment.service_password] + [u.password for u in deployment.orthanc_users.all()]
    return sorted({v for v in values if v and len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


def mask(value, secrets):
    """Defence in depth: a password that slipped into a text (an error message, a URL) is masked."""
    if not isinstance(value, str):
        return value
    for secret in secrets:
        value = value.replace(secret, MASK)
    return value


def summary(deployment, findings) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in ("critical", "high", "medium", "low")}
    return f"{deployment.slug}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
