from django.shortcuts import get_object_or_404, render

from portal.roles import require_perm

from ..models import Deployment
from ..security import BADGES, SEVERITIES, audit_deployment


@require_perm("deployments.view_deployment")
def deployment_security(request, slug):
    deployment = get_object_or_404(Deployment, slug=slug)
    live = request.GET.get("live") != "0"
    findings = audit_deployment(deployment, live=live)
    counts = [(s, BADGES[s], sum(f.severity == s for f in findings)) for s in SEVERITIES]
    return render(
        request,
        "deployments/security.html",
        {"deployment": deployment, "findings": findings, "counts": counts, "live": live},
    )
