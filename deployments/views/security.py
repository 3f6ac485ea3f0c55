from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404

from ..models import SecurityAudit
from ..security import BADGES, SEVERITIES, file_findings, settings_findings
from ..security.runs import security_audit_request, stored_findings


@require_perm("deployments.view_deployment")
def deployment_security(request, slug):
    """Saved settings and files are checked now (cheap, asks nobody); the live part is the
    latest stored run's, with its age. Viewing never tries a login against Orthanc."""
    deployment = deployment_or_404(request, slug)
    users = list(deployment.orthanc_users.all())
    findings = settings_findings(deployment, users, list(deployment.modalities.all())) + file_findings(deployment)
    findings = [f.link(deployment.slug) for f in findings]
    audits = deployment.security_audits.select_related("requested_by")
    last = audits.filter(state__in=[SecurityAudit.State.DONE, SecurityAudit.State.FAILED], live=True).first()
    if last is not None and last.state == SecurityAudit.State.DONE:
        findings += [f for f in stored_findings(last.findings) if f.part == "live"]
    findings.sort(key=lambda x: SEVERITIES.index(x.severity))
    counts = [(s, BADGES[s], sum(f.severity == s for f in findings)) for s in SEVERITIES]
    waiting = audits.filter(state__in=[SecurityAudit.State.PENDING, SecurityAudit.State.RUNNING]).first()
    return render(
        request,
        "deployments/security.html",
        {"deployment": deployment, "findings": findings, "counts": counts, "last": last, "waiting": waiting},
    )


@require_POST
@require_perm("deployments.change_deployment")
def security_audit_start(request, slug):
    deployment = deployment_or_404(request, slug)
    security_audit_request(deployment, request.user)
    audit.record(request, AuditEntry.Action.ACTION, deployment, summary="live security audit requested")
    messages.info(request, "Live security audit queued: its result appears here when the worker has run it.")
    return redirect("deployments:security", slug=deployment.slug)
