"""Close entries from what Orthanc received, and entries whose patient never came.

``worklist_completion`` reads Orthanc's ``GET /changes?since=<last seq>`` (the sequence number
is kept in the database, so each change is read once). A ``NewStudy`` whose AccessionNumber or
StudyInstanceUID matches an entry starts it (IN_PROGRESS) and takes it off the machines' list;
its ``StableStudy`` completes it. The files leave the folder at the sync that runs at the end.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deployments.models import Deployment
from deployments.orthanc import OrthancClient, OrthancError, OrthancHTTPError
from portal import audit
from portal.models import AuditEntry

from .models import WorklistEntry, WorklistState
from .sync import SyncError, worklist_sync

log = logging.getLogger(__name__)
Status = WorklistEntry.Status
PAGE = 500
STUDY_CHANGES = {"NewStudy", "StableStudy"}


def _move(entry, status, why):
    before = audit.snapshot(entry)
    entry.transition(status)
    entry.save()
    audit.record(None, AuditEntry.Action.ACTION, entry, before, audit.snapshot(entry), summary=why)


def study_arrived(deployment, accession, study_uid, stable) -> WorklistEntry | None:
    """Match a received study to an entry and move it forward. None when nothing matches."""
    match = Q()
    if accession:
        match |= Q(accession_number=accession)
    if study_uid:
        match |= Q(study_instance_uid=study_uid)
    if not match:
        return None
    entry = (
        WorklistEntry.objects.filter(deployment=deployment)
        .filter(match)
        .exclude(status__in=[Status.COMPLETED, Status.CANCELLED, Status.DISCONTINUED])
        .select_for_update()
        .first()
    )
    if entry is None:
        return None
    first = entry.study_arrived_at is None
    if first:
        # Saved with the moves below: the entry leaves the machines' list at the next sync, so
        # the next patient is at the top (the portal's worklist server has hidden it already).
        entry.study_arrived_at = timezone.now()
    if entry.status != Status.IN_PROGRESS:
        if entry.status == Status.NO_SHOW:
            _move(entry, Status.ARRIVED, "the study arrived after the entry was marked no-show")
        _move(entry, Status.IN_PROGRESS, "Orthanc received the study")
    elif first:
        entry.save(update_fields=["study_arrived_at"])
    if stable:
        _move(entry, Status.COMPLETED, "the study is complete in Orthanc (stable)")
    return entry


def worklist_completion(deployment_id) -> dict:
    deployment = Deployment.objects.get(pk=deployment_id)
    state = WorklistState.of(deployment)
    client = OrthancClient.for_deployment(deployment)
    seq, matched, read = state.last_change_seq, 0, 0
    try:
        while True:
            page = client.get_json("/changes", params={"since": seq, "limit": PAGE})
            if page.get("Last", seq) < seq:
                seq = 0  # Orthanc's database was replaced: its sequence restarted
                continue
            for change in page.get("Changes", []):
                read += 1
                if change.get("ChangeType") in STUDY_CHANGES and change.get("ResourceType") == "Study":
                    matched += _handle_study(deployment, client, change)
                seq = max(seq, change["Seq"])
            WorklistState.objects.filter(pk=state.pk).update(last_change_seq=seq)
            if page.get("Done", True) or not page.get("Changes"):
                break  # seq is the newest change read: Orthanc's Last of a page is never beyond it
        error = ""
    except OrthancError as exc:
        error = str(exc)
    WorklistState.objects.filter(pk=state.pk).update(
        last_change_seq=seq, last_poll_at=timezone.now(), last_poll_error=error[:300]
    )
    no_shows = mark_no_shows(deployment)
    if matched or no_shows:
        # This runs on the deployment's queue, beside its folder: take the files out now.
        try:
            worklist_sync(deployment.pk)
        except SyncError as exc:
            error = error or str(exc)
    if error:
        raise OrthancError(error)
    return {"changes": read, "matched": matched, "no_show": no_shows, "last_seq": seq}


def _handle_study(deployment, client, change) -> int:
    try:
        study = client.get_json(f"/studies/{change['ID']}")
    except OrthancHTTPError as exc:
        if exc.status == 404:  # deleted since: nothing to close
            return 0
        raise
    tags = study.get("MainDicomTags", {})
    with transaction.atomic():
        entry = study_arrived(
            deployment,
            tags.get("AccessionNumber", ""),
            tags.get("StudyInstanceUID", ""),
            stable=change["ChangeType"] == "StableStudy",
        )
    return 1 if entry else 0


def mark_no_shows(deployment, now=None) -> int:
    """Entries not started by the end of their day plus the grace period become NO_SHOW."""
    now = now or timezone.now()
    grace = timedelta(hours=getattr(settings, "WORKLISTS_NO_SHOW_GRACE_HOURS", 2))
    # Day D is over at D+1 00:00 local time; with the grace period, D is late once
    # now - grace has reached D+1.
    last_day = (timezone.localtime(now) - grace).date() - timedelta(days=1)
    count = 0
    late = WorklistEntry.objects.filter(
        deployment=deployment, status__in=[Status.SCHEDULED, Status.ARRIVED], scheduled_date__lte=last_day
    )
    for entry in late.select_related("patient")[:1000]:
        with transaction.atomic():
            _move(entry, Status.NO_SHOW, "not started by the end of the day and the grace period")
        count += 1
    return count
