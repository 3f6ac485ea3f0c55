from django.contrib import messages
from django.shortcuts import get_object_or_404, render

from portal.roles import require_perm

from ..forms_import import ConfigImportForm
from ..importer import ConfigImportError, import_texts
from ..models import Deployment


@require_perm("deployments.change_deployment")
def deployment_import(request, slug):
    deployment = get_object_or_404(Deployment, slug=slug)
    form = ConfigImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        texts = form.cleaned_data["files"]
        try:
            result = import_texts(deployment, texts, who=request, label="upload of " + ", ".join(sorted(texts)))
        except ConfigImportError as exc:
            form.add_error("files", f"Nothing was imported: {exc}")
        else:
            messages.success(request, f"Imported {', '.join(sorted(texts))} into {result.deployment}.")
            return render(
                request,
                "deployments/import_report.html",
                {"deployment": result.deployment, "lines": result.lines, "critical": result.critical},
            )
    return render(request, "deployments/import.html", {"deployment": deployment, "form": form})
