"""DICOM modalities: the ultrasound machines and peers Orthanc knows."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404, deployments_of

from .. import charsets
from ..forms import ModalityForm
from ..models import Modality
from ..orthanc import OrthancClient, OrthancError
from ..push import revision_create
from ..unapplied import unapplied


@require_perm("deployments.view_deployment")
def modality_index(request):
    deployments = list(deployments_of(request.user).prefetch_related("modalities"))
    for d in deployments:
        # What each worklist station receives: Orthanc sends one encoding to all (deployments/charsets.py).
        stations = list(d.modalities.all())  # the prefetched objects, which the page lists again
        services = charsets.services(d.default_encoding, stations)
        for station, service in zip([m for m in stations if m.allow_find_worklist], services, strict=True):
            station.worklist_service = service
        d.unapplied = unapplied(d)  # what Orthanc does not run yet, beside each row
    return render(request, "deployments/modalities.html", {"deployments": deployments})


@require_perm("deployments.change_deployment")
def modality_edit(request, slug, pk=None):
    deployment = deployment_or_404(request, slug)
    modality = get_object_or_404(Modality, pk=pk, deployment=deployment) if pk else None
    form = ModalityForm(request.POST or None, instance=modality, deployment=deployment)
    if request.method == "POST" and form.is_valid():
        saved = audit.save_form(request, form)
        revision_create(deployment, request.user, reason=f"modality {saved.name} saved")
        messages.success(request, f"Saved {saved.name}; the change is being pushed to Orthanc.")
        return redirect("deployments:modalities")
    marks = unapplied(deployment)
    rows = marks.modalities if marks is not None and modality is not None else {}
    return render(
        request,
        "deployments/modality_form.html",
        {
            "form": form,
            "deployment": deployment,
            "modality": modality,
            "unapplied": rows.get(modality.name) if modality else None,
        },
    )


@require_POST
@require_perm("deployments.change_deployment")
def modality_delete(request, slug, pk):
    deployment = deployment_or_404(request, slug)
    modality = get_object_or_404(Modality, pk=pk, deployment=deployment)
    name = modality.name
    audit.delete(request, modality)
    revision_create(deployment, request.user, reason=f"modality {name} deleted")
    messages.success(request, f"Deleted {name}; the change is being pushed to Orthanc.")
    return redirect("deployments:modalities")


@transaction.non_atomic_requests  # no transaction while Orthanc waits on the device (up to 15 s)
@require_POST
@require_perm("deployments.change_deployment")
def modality_echo(request, slug, pk):
    """C-ECHO from Orthanc to the device, through Orthanc's own REST API."""
    deployment = deployment_or_404(request, slug)
    modality = get_object_or_404(Modality, pk=pk, deployment=deployment)
    try:
        OrthancClient.for_deployment(deployment, timeout=15).post_json(
            f"/modalities/{modality.name}/echo", {"Timeout": 10}
        )
    except OrthancError as exc:
        reason = str(exc)
        if "404" in reason or "Inexistent" in reason or "Unknown" in reason:
            reason += " (is the modality pushed to Orthanc yet?)"
        messages.error(
            request, f"C-ECHO to {modality.name} ({modality.aet}@{modality.host}:{modality.port}) failed: {reason}"
        )
    else:
        messages.success(
            request, f"C-ECHO to {modality.name} ({modality.aet}@{modality.host}:{modality.port}) succeeded."
        )
    audit.record(request, AuditEntry.Action.ACTION, modality, summary="C-ECHO test")
    return redirect("deployments:modalities")
