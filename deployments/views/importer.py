"""Adopting a running Orthanc, one page per step: import its files, review what was read, make
the first push (with a way in), and see it verified."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404

from ..adoption import login_forget, login_store
from ..forms_import import ConfigImportForm, FirstPushForm
from ..importer import ConfigImportError, import_texts
from ..push import PushError, revision_create


@require_perm("deployments.change_deployment")
def deployment_import(request, slug):
    deployment = deployment_or_404(request, slug)
    form = ConfigImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        texts = form.cleaned_data["files"]
        try:
            result = import_texts(deployment, texts, who=request, label="upload of " + ", ".join(sorted(texts)))
        except ConfigImportError as exc:
            form.add_error("files", f"Nothing was imported: {exc}")
        else:
            messages.success(request, f"Imported {', '.join(sorted(texts))} into {result.deployment}: review it below.")
            return redirect("deployments:adoption", slug=slug)
    return render(request, "deployments/import.html", {"deployment": deployment, "form": form})


@require_perm("deployments.change_deployment")
def deployment_adoption(request, slug):
    """Review the latest import and make the first push (POST)."""
    deployment = deployment_or_404(request, slug)
    adoption = deployment.adoptions.first()
    form = FirstPushForm(request.POST if request.method == "POST" else None, deployment=deployment)
    if request.method == "POST" and adoption is None:
        form.add_error(None, "Import this Orthanc's configuration first: there is nothing to push yet.")
    elif request.method == "POST" and form.is_valid():
        try:
            revision = _first_push(request, deployment, form.cleaned_data)
        except PushError as exc:
            form.add_error(None, f"Nothing was pushed: {exc}")
        else:
            messages.success(request, f"Revision {revision.number} is being pushed to Orthanc.")
            return redirect("deployments:adoption", slug=slug)
    revision = adoption.first_push() if adoption else None
    lines = adoption.report if adoption else []
    return render(
        request,
        "deployments/adoption.html",
        {
            "deployment": deployment,
            "adoption": adoption,
            "step": adoption.step(revision) if adoption else None,
            "revision": revision,
            "lines": lines,
            "critical": [text for level, text in lines if level == "critical"],
            "to_decide": [text for level, text in lines if level == "decide"],
            "users": deployment.orthanc_users.all(),
            "form": form,
        },
    )


@transaction.atomic
def _first_push(request, deployment, data):
    way = data["way"]
    if way == FirstPushForm.ACCOUNT:
        # Encrypted, for the worker's push only; the audit names the account, never its password.
        login_store(deployment, data["username"], data["password"])
        how = f"with the Orthanc admin account {data['username']}"
    elif way == FirstPushForm.SERVICE:
        how = "by restarting Orthanc through the service control"
    else:
        how = "with the portal's own account"
    if way != FirstPushForm.ACCOUNT:
        login_forget(deployment)  # an account typed for an earlier try is not this push's
    revision = revision_create(deployment, request.user, reason="first push of the adoption")
    audit.record(
        request, AuditEntry.Action.ACTION, deployment, summary=f"first push (revision {revision.number}) {how}"
    )
    return revision
