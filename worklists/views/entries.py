"""The front desk: the day's list by station, the schedule form, status buttons, type-ahead."""

import datetime
from itertools import groupby
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from deployments import charsets
from portal import jobs
from portal.roles import require_perm
from portal.sites import deployment_or_404, scoped
from portal.text import SEARCH_MAX_LENGTH, search_problem

from ..forms import EntryForm, ListFilterForm, PatientForm, check_station, entry_data
from ..models import InvalidTransition, Patient, WorklistEntry, WorklistState
from ..scheduling import change_status, save_entry, worklist_stations
from .common import parse_day, pick_deployment

Status = WorklistEntry.Status
SEARCH_LIMIT = 200
DAY_LIMIT = 500  # a day's page stays quick even when an import put thousands on one day
# The buttons of a row: the status they set and their label.
ACTIONS = [(Status.ARRIVED, "Arrived"), (Status.NO_SHOW, "No-show"), (Status.CANCELLED, "Cancel")]


def _index_url(deployment, day=None):
    query = {"d": deployment.slug}
    if day:
        query["date"] = day.isoformat()
    return f"{reverse('worklists:index')}?{urlencode(query)}"


@require_perm("worklists.view_worklistentry")
def index(request):
    deployment, deployments = pick_deployment(request)
    if deployment is None:
        return render(request, "worklists/index.html", {"deployments": []})
    today = timezone.localdate()
    form = ListFilterForm(request.GET or None)
    day = parse_day(request.GET.get("date"), today)
    query = (request.GET.get("q") or "").strip()
    search_error = search_problem(query)
    if search_error:
        query = ""
    entries = WorklistEntry.objects.filter(deployment=deployment).select_related("patient")
    if query:
        # A search looks at every day: the patient may be booked next week.
        words = Q(patient__family_name__icontains=query) | Q(patient__given_name__icontains=query)
        words |= Q(patient__patient_id__iexact=query) | Q(accession_number__iexact=query)
        entries = entries.filter(words).order_by("-scheduled_date", "scheduled_time")[: SEARCH_LIMIT + 1]
    else:
        entries = entries.filter(scheduled_date=day).order_by("station_aet", "scheduled_time", "id")[: DAY_LIMIT + 1]
    entries = list(entries)
    truncated = len(entries) > (SEARCH_LIMIT if query else DAY_LIMIT)
    entries = entries[: SEARCH_LIMIT if query else DAY_LIMIT]
    groups = [(aet, list(rows)) for aet, rows in groupby(entries, key=lambda e: e.station_aet)] if not query else []
    state = WorklistState.objects.filter(deployment=deployment).first()
    stations = list(worklist_stations(deployment))
    return render(
        request,
        "worklists/index.html",
        {
            "deployment": deployment,
            "deployments": deployments,
            "form": form,
            "day": day,
            "today": today,
            "previous_day": day - datetime.timedelta(days=1),
            "next_day": day + datetime.timedelta(days=1),
            "query": query,
            "search_error": search_error,
            "search_max": SEARCH_MAX_LENGTH,
            "entries": entries,
            "truncated": truncated,
            "groups": groups,
            "actions": ACTIONS,
            "state": state,
            "stations": stations,
            "worklist_garbled": [s for s in charsets.services(deployment.default_encoding, stations) if s.garbled],
        },
    )


def _schedule(request, deployment, entry=None):
    patient = entry.patient if entry else None
    if request.method == "POST":
        patient_form = PatientForm(request.POST)
        entry_form = EntryForm(request.POST, instance=entry, deployment=deployment)
        if check_station(patient_form, entry_form):
            try:
                with transaction.atomic():
                    saved = save_entry(request, deployment, patient_form.cleaned_data, entry_data(entry_form), entry)
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    target = patient_form if name in patient_form.fields else entry_form
                    target.add_error(name if name in target.fields else None, errors)
            else:
                verb = "Saved" if entry else "Scheduled"
                messages.success(
                    request,
                    f"{verb} {saved.patient.display_name} at {saved.scheduled_time:%H:%M} "
                    f"on {saved.station_aet} ({saved.accession_number}).",
                )
                return redirect(_index_url(deployment, saved.scheduled_date))
    else:
        initial_day = parse_day(request.GET.get("date"), timezone.localdate())
        patient_form = PatientForm(instance=patient)
        entry_form = EntryForm(
            instance=entry,
            deployment=deployment,
            initial={} if entry else {"scheduled_date": initial_day, "scheduled_time": _next_slot()},
        )
    # Type-ahead: htmx asks for matching patients as the family name is typed.
    lookup = f"{reverse('worklists:patient_lookup')}?{urlencode({'d': deployment.slug})}"
    patient_form.fields["family_name"].widget.attrs.update(
        {"hx-get": lookup, "hx-trigger": "input changed delay:200ms", "hx-target": "#patient-matches"}
    )
    return render(
        request,
        "worklists/form.html",
        {"deployment": deployment, "patient_form": patient_form, "entry_form": entry_form, "entry": entry},
    )


def _next_slot():
    now = timezone.localtime()
    minute = (now.minute // 15 + 1) * 15
    return (now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(minutes=minute)).time()


@require_perm("worklists.add_worklistentry")
def entry_create(request):
    deployment, _ = pick_deployment(request)
    if deployment is None:
        messages.error(request, "Add a deployment with the worklist plugin first.")
        return redirect("worklists:index")
    return _schedule(request, deployment)


@require_perm("worklists.change_worklistentry")
def entry_edit(request, pk):
    entry = get_object_or_404(
        scoped(WorklistEntry.objects.select_related("patient", "deployment"), request.user), pk=pk
    )
    if entry.status not in (Status.SCHEDULED, Status.ARRIVED):
        messages.error(request, f"This entry is {entry.get_status_display().lower()}: it can no longer be edited.")
        return redirect(_index_url(entry.deployment, entry.scheduled_date))
    return _schedule(request, entry.deployment, entry)


@require_POST
@require_perm("worklists.change_worklistentry")
def entry_status(request, pk):
    entry = get_object_or_404(
        scoped(WorklistEntry.objects.select_related("patient", "deployment"), request.user), pk=pk
    )
    try:
        change_status(request, entry, request.POST.get("status", ""))
    except InvalidTransition as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"{entry.patient.display_name}: {entry.get_status_display().lower()}.")
    return redirect(_index_url(entry.deployment, entry.scheduled_date))


@require_perm("worklists.view_patient")
def patient_lookup(request):
    """Type-ahead: patients whose family name or ID starts with what was typed (htmx partial)."""
    deployment, _ = pick_deployment(request)
    typed = (request.GET.get("family_name") or request.GET.get("q") or "").strip()
    patients = []
    search_error = search_problem(typed)
    if search_error:
        typed = ""
    if deployment is not None and len(typed) >= 2:
        patients = Patient.objects.filter(deployment=deployment).filter(
            Q(family_name__istartswith=typed) | Q(patient_id__istartswith=typed)
        )[:10]
    return render(
        request, "worklists/_patient_matches.html", {"patients": patients, "typed": typed, "search_error": search_error}
    )


@require_POST
@require_perm("worklists.change_worklistentry")
def sync_now(request, slug):
    """A full reconcile of the folder now, as a recorded job on the deployment's queue."""
    deployment = deployment_or_404(request, slug)
    jobs.enqueue("worklists.sync_job", deployment.pk, queue=deployment.queue, user=request.user)
    messages.info(request, "Folder sync queued: the worker on the Orthanc host runs it in a moment.")
    return redirect(_index_url(deployment))
