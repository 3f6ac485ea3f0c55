"""The worklist's line on the dashboard card and its panel on the deployment page."""

import os

from django.conf import settings
from django.db.models import Count, F, Q
from django.utils import timezone

from deployments import charsets

from .models import WorklistEntry, WorklistState
from .sync import OUR_FILE

Status = WorklistEntry.Status


def summary(deployment) -> str:
    """One line: e.g. "12 scheduled today, 11 in the machines' list, 1 pending"."""
    today = timezone.localdate()
    active = WorklistEntry.LISTED  # an entry whose images arrived is done with the machine's list
    counts = WorklistEntry.objects.filter(deployment=deployment, scheduled_date=today).aggregate(
        total=Count("id", filter=~Q(status=Status.CANCELLED)),
        in_list=Count("id", filter=active & Q(in_folder=True, revision=F("synced_revision"))),
        pending=Count("id", filter=active & (Q(in_folder=False) | ~Q(revision=F("synced_revision")))),
        errors=Count("id", filter=Q(sync_state=WorklistEntry.SyncState.ERROR)),
    )
    line = f"{counts['total']} scheduled today, {counts['in_list']} in the machines' list, {counts['pending']} pending"
    if counts["errors"]:
        line += f", {counts['errors']} with errors"
    return line


def deployment_panel_context(deployment) -> dict:
    """For templates/worklists/_deployment_panel.html on the deployment page."""
    state = WorklistState.objects.filter(deployment=deployment).first()
    folder = deployment.worklist_folder
    files, foreign, folder_error = 0, [], ""
    try:
        with os.scandir(folder) as it:
            for item in it:
                if item.name.lower().endswith(".wl"):
                    files += 1
                    if not OUR_FILE.match(item.name):
                        foreign.append(item.name)
    except OSError as exc:
        folder_error = f"The worklist folder {folder} cannot be read here: {exc.strerror or exc}"
    limit = getattr(settings, "WORKLISTS_FOLDER_WARN_FILES", 2000)
    return {
        "deployment": deployment,
        "worklist_summary": summary(deployment),
        "worklist_folder": folder,
        "worklist_files": files,
        "worklist_too_many": files > limit,
        "worklist_limit": limit,
        "worklist_classic": deployment.worklist_server == deployment.WorklistServer.CLASSIC,
        "worklist_foreign": sorted(foreign),
        "worklist_folder_error": folder_error,
        **worklist_encoding_context(deployment),
        "worklist_state": state,
        "worklist_plugin_enabled": deployment.worklists_enabled,
    }


def worklist_encoding_context(deployment) -> dict:
    """What Orthanc sends the stations, and the stations that misread it or are limited by it."""
    stations = list(deployment.modalities.all())
    services = charsets.services(deployment.default_encoding, stations)
    return {
        "worklist_encoding": charsets.NAMES[charsets.CHARSET_OF[deployment.worklist_encoding(stations)]],
        "worklist_encoding_reason": charsets.reason(deployment.default_encoding, stations),
        "worklist_garbled": [s for s in services if s.garbled],
        "worklist_limited": [s for s in services if not s.full and not s.garbled],
    }
