"""What the machine sees: the real C-FIND answer Orthanc gives a station."""

from django.shortcuts import render
from django.utils import timezone

from portal.roles import require_perm

from ..cfind import CFindError, station_worklist
from ..scheduling import worklist_stations
from .common import parse_day, pick_deployment


@require_perm("worklists.view_worklistentry")
def machine_view(request):
    deployment, deployments = pick_deployment(request)
    stations = list(worklist_stations(deployment)) if deployment else []
    station = None
    wanted = request.GET.get("station")
    station = next((s for s in stations if str(s.pk) == wanted), stations[0] if stations else None)
    day = parse_day(request.GET.get("date"), timezone.localdate())
    answers, error = [], ""
    if station is not None:
        try:
            answers = station_worklist(deployment, station, day.strftime("%Y%m%d") if day else "")
        except (CFindError, OSError, RuntimeError) as exc:
            error = str(exc)
    rows = []
    for ds in answers:
        step = ds.ScheduledProcedureStepSequence[0] if ds.get("ScheduledProcedureStepSequence") else None
        rows.append(
            {
                "time": step.get("ScheduledProcedureStepStartTime", "") if step else "",
                "name": str(ds.get("PatientName", "")),
                "patient_id": ds.get("PatientID", ""),
                "birth": ds.get("PatientBirthDate", ""),
                "accession": ds.get("AccessionNumber", ""),
                "description": ds.get("RequestedProcedureDescription", ""),
                "status": step.get("ScheduledProcedureStepStatus", "") if step else "",
                "raw": str(ds),
            }
        )
    rows.sort(key=lambda r: r["time"])
    return render(
        request,
        "worklists/machine.html",
        {
            "deployment": deployment,
            "deployments": deployments,
            "stations": stations,
            "station": station,
            "day": day,
            "rows": rows,
            "error": error,
        },
    )
