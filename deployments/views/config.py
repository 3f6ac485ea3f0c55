"""Rendered configuration: preview with a diff, push, history and rollback."""

import difflib
import json

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404

from ..models import ConfigRevision
from ..push import PushError, revision_create
from ..render import masked, render_for
from ..state import restore_model_state


def diff_files(old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """A unified diff of the masked files: passwords never appear, changed ones show as changed."""
    old_text, new_text = masked(old), masked(new)
    old_text, new_text = _mark_changed_secrets(old, new, old_text, new_text)
    out = []
    for name in sorted(old_text.keys() | new_text.keys()):
        out.extend(
            difflib.unified_diff(
                old_text.get(name, "").splitlines(keepends=True),
                new_text.get(name, "").splitlines(keepends=True),
                fromfile=f"applied/{name}",
                tofile=f"new/{name}",
            )
        )
    return "".join(out)


def _mark_changed_secrets(old, new, old_text, new_text):
    """A rotated password must show in the diff even though both sides are masked."""
    if "credentials.json" in old and "credentials.json" in new:
        before = json.loads(old["credentials.json"])["RegisteredUsers"]
        after = json.loads(new["credentials.json"])["RegisteredUsers"]
        changed = sorted(u for u in before.keys() & after.keys() if before[u] != after[u])
        if changed:
            note = f"  // password changed: {', '.join(changed)}\n"
            new_text = {**new_text, "credentials.json": new_text["credentials.json"] + note}
    return old_text, new_text


def last_applied(deployment, before=None):
    revisions = deployment.revisions.filter(state=ConfigRevision.State.APPLIED)
    if before is not None:
        revisions = revisions.filter(number__lt=before)
    return revisions.first()


@require_perm("deployments.change_deployment")
def config_preview(request, slug):
    deployment = deployment_or_404(request, slug)
    files = render_for(deployment)
    applied = last_applied(deployment)
    return render(
        request,
        "deployments/preview.html",
        {
            "deployment": deployment,
            "files": sorted(masked(files).items()),
            "applied": applied,
            "diff": diff_files(applied.files if applied else {}, files),
        },
    )


@require_POST
@require_perm("deployments.change_deployment")
def config_push(request, slug):
    deployment = deployment_or_404(request, slug)
    try:
        revision = revision_create(deployment, request.user, reason="pushed from the preview")
    except PushError as exc:
        messages.error(request, f"Nothing was pushed: {exc}")
        return redirect("deployments:preview", slug=slug)
    audit.record(request, AuditEntry.Action.ACTION, deployment, summary=f"push of revision {revision.number} queued")
    messages.success(request, f"Revision {revision.number} is being pushed to Orthanc.")
    return redirect("deployments:revisions", slug=slug)


@require_perm("deployments.view_deployment")
def revision_list(request, slug):
    deployment = deployment_or_404(request, slug)
    revisions = deployment.revisions.select_related("created_by", "rollback_of")[:200]
    return render(request, "deployments/revisions.html", {"deployment": deployment, "revisions": revisions})


@require_perm("deployments.change_deployment")
def revision_detail(request, slug, number):
    deployment = deployment_or_404(request, slug)
    revision = get_object_or_404(ConfigRevision, deployment=deployment, number=number)
    previous = last_applied(deployment, before=number)
    return render(
        request,
        "deployments/revision_detail.html",
        {
            "deployment": deployment,
            "revision": revision,
            "previous": previous,
            "diff": diff_files(previous.files if previous else {}, revision.files),
        },
    )


@require_POST
@require_perm("deployments.change_deployment")
def revision_rollback(request, slug, number):
    deployment = deployment_or_404(request, slug)
    target = get_object_or_404(ConfigRevision, deployment=deployment, number=number)
    if target.state != ConfigRevision.State.APPLIED:
        messages.error(request, f"Revision {number} was never applied: only applied revisions can be restored.")
        return redirect("deployments:revisions", slug=slug)
    if not target.model_state:
        messages.error(request, f"Revision {number} keeps no copy of the settings it was made from.")
        return redirect("deployments:revisions", slug=slug)
    with transaction.atomic():
        before = audit.snapshot(deployment)
        restore_model_state(deployment, target.model_state)
        audit.record(
            request,
            AuditEntry.Action.UPDATE,
            deployment,
            before,
            audit.snapshot(deployment),
            summary=f"rolled back to revision {number}",
        )
        revision = revision_create(
            deployment, request.user, reason=f"rollback to revision {number}", files=target.files, rollback_of=target
        )
    messages.success(request, f"Rolling back: revision {revision.number} restores revision {number}.")
    return redirect("deployments:revisions", slug=slug)
