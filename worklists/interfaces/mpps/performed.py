"""What an MPPS report does to the worklist: N-CREATE IN PROGRESS starts the scheduled entries it
names and takes them off the machines' list at once; N-SET COMPLETED or DISCONTINUED closes them.
Each dataset is kept with its step, each change is in the audit log (source "mpps"), and the
folder is synced before the machine gets its answer, so its next C-FIND no longer shows the entry.

The completion from Orthanc's /changes stays the fallback for machines without MPPS: it skips
entries that are closed already, and an entry MPPS started is simply completed when its study is
stable (and MPPS has not closed it first)."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.models import Deployment, Modality
from portal import audit
from portal.models import AuditEntry
from worklists.models import WorklistEntry
from worklists.sync import worklist_sync
from worklists.tasks import send_sync

from . import datasets
from .datasets import DatasetProblem
from .models import MppsMessage, PerformedStep

log = logging.getLogger(__name__)
Status = WorklistEntry.Status
SOURCE = "mpps"
MAX_REFS = 20  # scheduled steps one performed step may name (a grouped exam names a few)
# The moves from each open status to a started entry (a no-show patient came after all).
TO_STARTED = {
    Status.NO_SHOW: [Status.ARRIVED, Status.IN_PROGRESS],
    Status.SCHEDULED: [Status.IN_PROGRESS],
    Status.ARRIVED: [Status.IN_PROGRESS],
    Status.IN_PROGRESS: [],
}
ENTRY_STATUS = {
    PerformedStep.Status.IN_PROGRESS: Status.IN_PROGRESS,
    PerformedStep.Status.COMPLETED: Status.COMPLETED,
    PerformedStep.Status.DISCONTINUED: Status.DISCONTINUED,
}


@dataclass
class Caller:
    """A registered station of one deployment, as its association was accepted."""

    deployment: Deployment
    station: Modality
    address: str

    @property
    def aet(self):
        return self.station.aet

    def __str__(self):
        return f"{self.station.aet} at {self.address} ({self.deployment.slug})"


def matching_entries(deployment, refs) -> list[WorklistEntry]:
    """The deployment's entries the ScheduledStepAttributesSequence items name: by StudyInstanceUID
    (the machine copies it from the worklist), else by AccessionNumber or ScheduledProcedureStepID
    (both carry the accession number in the portal's .wl files)."""
    entries = WorklistEntry.objects.filter(deployment=deployment)
    found = {}
    for ref in refs[:MAX_REFS]:
        entry = entries.filter(study_instance_uid=ref.study_uid).first() if ref.study_uid else None
        numbers = [n for n in (ref.accession, ref.step_id) if n]
        if entry is None and numbers:
            entry = entries.filter(accession_number__in=numbers).first()
        if entry is not None:
            found[entry.pk] = entry
    # Locked in id order: two stations reporting at once cannot deadlock.
    return list(entries.filter(pk__in=list(found)).order_by("pk").select_for_update())


def _keep(step, command, status, ds, caller):
    data, shortened = datasets.as_json(ds, settings.MPPS_MAX_DATASET_BYTES)
    MppsMessage.objects.create(
        step=step,
        command=command,
        status=status,
        dataset=data,
        shortened=shortened,
        station_aet=caller.aet,
        station_address=caller.address,
    )


def _move(entry, target, why) -> bool:
    """Move ``entry`` to ``target`` through the allowed transitions; False (and a log line) when
    it is closed already, e.g. by the front desk or the fallback completion."""
    if entry.status not in TO_STARTED:
        if entry.status != target:
            log.warning("MPPS: entry %s is %s already, left alone (%s)", entry.accession_number, entry.status, why)
        return False
    before = audit.snapshot(entry)
    for status in TO_STARTED[entry.status] + ([target] if target != Status.IN_PROGRESS else []):
        entry.transition(status)
    fields = ["status"]
    if entry.station_started_at is None:
        entry.station_started_at = timezone.now()
        fields.append("station_started_at")
    entry.save(update_fields=fields)
    audit.record(None, AuditEntry.Action.ACTION, entry, before, audit.snapshot(entry), summary=why, source=SOURCE)
    return True


def sync_now(deployment_id):
    """Take the files out before the machine is answered. This process runs beside the folder
    (make run, the compose service, a site agent); when it does not, the deployment's worker does."""
    try:
        worklist_sync(deployment_id)
    except Exception as exc:  # the status is recorded; the folder follows by the worker or the minute sync
        log.warning("MPPS: sync of deployment %s here failed (%s): sent to its worker", deployment_id, exc)
        send_sync(deployment_id)


def mpps_create(caller: Caller, sop_uid: str, ds) -> PerformedStep:
    """N-CREATE: a new performed step, IN PROGRESS; the entries it names start."""
    report = datasets.read(ds, creating=True)
    duplicate = DatasetProblem(datasets.DUPLICATE_INSTANCE, "this SOP instance exists already")
    if PerformedStep.objects.filter(deployment=caller.deployment, sop_instance_uid=sop_uid).exists():
        raise duplicate
    try:
        with transaction.atomic():
            step = PerformedStep.objects.create(
                deployment=caller.deployment,
                sop_instance_uid=sop_uid,
                station=caller.station,
                station_aet=caller.aet,
                station_address=caller.address,
                status=PerformedStep.Status.IN_PROGRESS,
            )
            _keep(step, MppsMessage.Command.N_CREATE, report.status, ds, caller)
            entries = matching_entries(caller.deployment, report.refs)
            step.entries.set(entries)
            names = ", ".join(e.accession_number for e in entries) or "no scheduled entry (unscheduled exam)"
            audit.record(
                None,
                AuditEntry.Action.CREATE,
                step,
                None,
                audit.snapshot(step),
                summary=f"MPPS IN PROGRESS from {caller}: {names}",
                source=SOURCE,
            )
            why = f"MPPS IN PROGRESS from {caller.aet} ({caller.address})"
            changed = [e for e in entries if _move(e, Status.IN_PROGRESS, why)]
    except IntegrityError as exc:  # the same N-CREATE twice at the same moment
        raise duplicate from exc
    if not entries:
        log.info("MPPS: %s started %s, which matches no scheduled entry", caller, sop_uid)
    if changed:
        sync_now(caller.deployment.pk)
    return step


def mpps_set(caller: Caller, sop_uid: str, ds) -> PerformedStep:
    """N-SET: more attributes, and COMPLETED or DISCONTINUED (with its reason) closes the step."""
    report = datasets.read(ds, creating=False)
    with transaction.atomic():
        step = (
            PerformedStep.objects.select_for_update()
            .filter(deployment=caller.deployment, sop_instance_uid=sop_uid)
            .first()
        )
        if step is None:
            raise DatasetProblem(datasets.NO_SUCH_INSTANCE, "no performed step with this SOP instance UID")
        if step.is_final:
            # PS3.4 F.7.2.2: a completed or discontinued step may no longer be updated.
            raise DatasetProblem(datasets.PROCESSING_FAILURE, f"the step is {step.status}: no more updates")
        before = audit.snapshot(step)
        _keep(step, MppsMessage.Command.N_SET, report.status, ds, caller)
        if report.status:
            step.status = report.status
        if report.status == PerformedStep.Status.DISCONTINUED:
            step.reason_code, step.reason_scheme = report.reason_code, report.reason_scheme
            step.reason_meaning = report.reason_meaning
        step.save()
        summary = f"MPPS {report.status or 'update'} from {caller}"
        if report.status == PerformedStep.Status.DISCONTINUED:
            summary += f": {_reason(step)}"
        audit.record(None, AuditEntry.Action.UPDATE, step, before, audit.snapshot(step), summary=summary, source=SOURCE)
        changed = []
        if step.is_final:
            target = ENTRY_STATUS[step.status]
            why = f"MPPS {step.status} from {caller.aet} ({caller.address})"
            if step.status == PerformedStep.Status.DISCONTINUED:
                why += f": {_reason(step)}"
            entries = step.entries.order_by("pk").select_for_update()
            changed = [e for e in entries if _move(e, target, why)]
    if changed:
        sync_now(caller.deployment.pk)
    return step


def _reason(step) -> str:
    if not (step.reason_code or step.reason_meaning):
        return "no reason given"
    code = f" [{step.reason_scheme}:{step.reason_code}]" if step.reason_code else ""
    return f"{step.reason_meaning or 'reason'}{code}"
