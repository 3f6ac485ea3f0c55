"""Orthanc's own user accounts (HTTP Basic) with their roles."""

import secrets

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404, deployments_of

from ..forms import OrthancUserForm
from ..models import OrthancUser
from ..push import revision_create
from ..unapplied import unapplied


@require_perm("deployments.view_deployment")
def user_index(request):
    deployments = list(deployments_of(request.user).prefetch_related("orthanc_users"))
    for d in deployments:
        d.unapplied = unapplied(d)  # what Orthanc does not run yet, beside each row
    return render(request, "deployments/users.html", {"deployments": deployments})


@require_perm("deployments.change_deployment")
def user_edit(request, slug, pk=None):
    deployment = deployment_or_404(request, slug)
    user = get_object_or_404(OrthancUser, pk=pk, deployment=deployment) if pk else None
    form = OrthancUserForm(request.POST or None, instance=user, deployment=deployment)
    if request.method == "POST" and form.is_valid():
        if form.instance.pk and form.cleaned_data["password"] != form.initial.get("password"):
            form.instance.password_changed_at = timezone.now()
        saved = audit.save_form(request, form)
        revision_create(deployment, request.user, reason=f"Orthanc user {saved.username} saved")
        if form.generated_password:
            return _show_once(request, deployment, saved, form.generated_password)
        messages.success(request, f"Saved {saved.username}; the change is being pushed to Orthanc.")
        return redirect("deployments:orthanc_users")
    marks = unapplied(deployment)
    rows = marks.users if marks is not None and user is not None else {}
    return render(
        request,
        "deployments/user_form.html",
        {
            "form": form,
            "deployment": deployment,
            "user_obj": user,
            "unapplied": rows.get(user.username) if user else None,
        },
    )


@require_POST
@require_perm("deployments.change_deployment")
def user_rotate(request, slug, pk):
    deployment = deployment_or_404(request, slug)
    user = get_object_or_404(OrthancUser, pk=pk, deployment=deployment)
    before = audit.snapshot(user)
    password = secrets.token_urlsafe(18)
    user.password, user.password_changed_at = password, timezone.now()
    user.save()
    audit.record(request, AuditEntry.Action.UPDATE, user, before, audit.snapshot(user), summary="password rotated")
    revision_create(deployment, request.user, reason=f"password of {user.username} rotated")
    return _show_once(request, deployment, user, password)


@require_POST
@require_perm("deployments.change_deployment")
def user_delete(request, slug, pk):
    deployment = deployment_or_404(request, slug)
    user = get_object_or_404(OrthancUser, pk=pk, deployment=deployment)
    name = user.username
    audit.delete(request, user)
    revision_create(deployment, request.user, reason=f"Orthanc user {name} deleted")
    messages.success(request, f"Deleted {name}; the change is being pushed to Orthanc.")
    return redirect("deployments:orthanc_users")


@require_POST
@require_perm("deployments.change_deployment")
def service_rotate(request, slug):
    """A new password for the portal's own account: it cannot be deleted, only rotated."""
    deployment = deployment_or_404(request, slug)
    before = audit.snapshot(deployment)
    deployment.service_password = secrets.token_urlsafe(24)
    deployment.save(update_fields=["service_password"])
    audit.record(
        request,
        AuditEntry.Action.UPDATE,
        deployment,
        before,
        audit.snapshot(deployment),
        summary="portal service account password rotated",
    )
    revision_create(deployment, request.user, reason="portal service password rotated")
    messages.success(request, "The portal's own Orthanc password was rotated; the change is being pushed.")
    return redirect("deployments:orthanc_users")


def _show_once(request, deployment, user, password):
    return render(
        request,
        "deployments/user_password_once.html",
        {"deployment": deployment, "user_obj": user, "password": password},
    )
