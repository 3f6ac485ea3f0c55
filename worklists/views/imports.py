from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse

from portal.roles import require_perm

from .. import csv_import
from ..forms import CsvUploadForm
from .common import pick_deployment


@transaction.non_atomic_requests  # reading and checking a big file takes seconds: no transaction meanwhile
@require_perm("worklists.add_worklistentry")
def csv_upload(request):
    """Upload → preview with every error by line and column → confirm (the same text, checked again,
    then written in one short transaction by import_rows)."""
    deployment, deployments = pick_deployment(request)
    if deployment is None:
        messages.error(request, "Add a deployment with the worklist plugin first.")
        return redirect("worklists:index")
    form = CsvUploadForm(request.POST or None, request.FILES or None)
    parsed = None
    if request.method == "POST" and form.is_valid():
        parsed = csv_import.parse(deployment, form.cleaned_data["text"])
        if parsed.ok and request.POST.get("confirm"):
            try:
                count = csv_import.import_rows(request, deployment, parsed)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(request, f"Imported {count} entries.")
                day = parsed.rows[0].entry["scheduled_date"]
                return redirect(f"{reverse('worklists:index')}?d={deployment.slug}&date={day.isoformat()}")
        form = CsvUploadForm(initial={"text": form.cleaned_data["text"]})
    return render(
        request,
        "worklists/import.html",
        {
            "deployment": deployment,
            "deployments": deployments,
            "form": form,
            "parsed": parsed,
            "columns": csv_import.COLUMNS,
            "required": csv_import.REQUIRED,
        },
    )
