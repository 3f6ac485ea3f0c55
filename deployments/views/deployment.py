from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal import audit, jobs
from portal.models import Job
from portal.roles import require_perm
from portal.sites import deployment_or_404, deployments_of, require_global

from ..forms import DeploymentForm
from ..models import ConfigRevision
from ..panels import panels_for
from ..push import revision_create
from ..status import recorded_status
from ..unapplied import unapplied


@require_perm("deployments.view_deployment")
def deployment_list(request):
    return render(request, "deployments/list.html", {"deployments": deployments_of(request.user)})


@require_perm("deployments.add_deployment")
@require_global  # a new site is for an account that works for every site
def deployment_create(request):
    form = DeploymentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        deployment = audit.save_form(request, form)
        messages.success(
            request,
            f"Deployment {deployment} created. Nothing was written to Orthanc yet: import its existing "
            "configuration, or preview and push the portal's.",
        )
        return redirect(deployment)
    return render(request, "deployments/form.html", {"form": form})


@require_perm("deployments.view_deployment")
def deployment_detail(request, slug):
    deployment = deployment_or_404(request, slug)
    recent_jobs = Job.objects.filter(kind__startswith="deployments.", target_id=deployment.pk)[:10]
    revisions = deployment.revisions.select_related("created_by")[:5]
    return render(
        request,
        "deployments/detail.html",
        {
            "deployment": deployment,
            "status": recorded_status(deployment),
            "jobs": recent_jobs,
            "revisions": revisions,
            "failed_revision": failed_banner(deployment),
            "panels": panels_for(deployment, request),
        },
    )


def failed_banner(deployment):
    """The newest finished revision, if it failed: the page says so until a push succeeds."""
    last = deployment.revisions.exclude(state__in=["pending", "superseded", "applying"]).first()
    return last if last is not None and last.state == ConfigRevision.State.FAILED else None


@require_perm("deployments.change_deployment")
def deployment_edit(request, slug):
    deployment = deployment_or_404(request, slug)
    form = DeploymentForm(request.POST or None, instance=deployment)
    if request.method == "POST" and form.is_valid():
        audit.save_form(request, form)
        revision = revision_create(deployment, request.user, reason="settings saved")
        messages.success(request, f"Saved. Revision {revision.number} is being pushed to Orthanc.")
        return redirect(deployment)
    marks = unapplied(deployment)
    return render(
        request,
        "deployments/form.html",
        {"form": form, "deployment": deployment, "unapplied": marks, "unapplied_none": marks is None},
    )


@require_POST
@require_perm("deployments.change_deployment")
def deployment_check(request, slug):
    deployment = deployment_or_404(request, slug)
    jobs.enqueue("deployments.deployment_check", deployment.pk, queue=deployment.queue, user=request.user)
    messages.info(request, f"Status check of {deployment} queued: its result appears when the worker has run it.")
    back = request.POST.get("next", "")  # the dashboard's "Check now" comes back to the dashboard
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(back)
    return redirect(deployment)
