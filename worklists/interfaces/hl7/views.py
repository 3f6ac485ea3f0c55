"""The HL7 mapping pages of a deployment (Admin): which sender's orders come here, and how."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import audit
from portal.models import AuditEntry
from portal.roles import require_perm
from portal.sites import deployment_or_404

from .forms import MappingForm
from .models import Hl7Mapping, Hl7Message


@require_perm("hl7.view_hl7mapping")
def mapping_index(request, slug):
    deployment = deployment_or_404(request, slug)
    mappings = list(Hl7Mapping.objects.filter(deployment=deployment).select_related("default_station"))
    recent = Hl7Message.objects.filter(deployment=deployment).defer("raw", "ack")[:20]
    return render(
        request,
        "hl7/mappings.html",
        {"deployment": deployment, "mappings": mappings, "recent": recent},
    )


@require_perm("hl7.change_hl7mapping")
def mapping_edit(request, slug, pk=None):
    deployment = deployment_or_404(request, slug)
    mapping = get_object_or_404(Hl7Mapping, pk=pk, deployment=deployment) if pk else None
    form = MappingForm(request.POST or None, instance=mapping, deployment=deployment)
    if request.method == "POST" and form.is_valid():
        saved = audit.save_form(request, form)
        messages.success(request, f"Saved the HL7 mapping of {saved}.")
        return redirect("hl7:mappings", slug=deployment.slug)
    return render(request, "hl7/mapping_form.html", {"form": form, "deployment": deployment, "mapping": mapping})


@require_POST
@require_perm("hl7.delete_hl7mapping")
def mapping_delete(request, slug, pk):
    deployment = deployment_or_404(request, slug)
    mapping = get_object_or_404(Hl7Mapping, pk=pk, deployment=deployment)
    if mapping.orders.exists():
        mapping.enabled = False
        before = audit.snapshot(Hl7Mapping.objects.get(pk=mapping.pk))
        mapping.save(update_fields=["enabled", "updated_at"])
        audit.record(request, AuditEntry.Action.UPDATE, mapping, before, audit.snapshot(mapping))
        messages.warning(request, f"{mapping} placed orders that are kept: the mapping is switched off instead.")
    else:
        audit.delete(request, mapping)
        messages.success(request, f"Deleted the HL7 mapping of {mapping}.")
    return redirect("hl7:mappings", slug=deployment.slug)
