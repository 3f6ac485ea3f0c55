"""The sites page: one line per clinic site, for an IT provider running many of them.

Everything comes from what the periodic tasks recorded (the Orthanc check, the worklist sync, the
backup runs, the agents' heartbeats), in a fixed number of queries whatever the number of sites:
the page never asks a site anything, so fifty sites cost what five do.
"""

from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from deployments.agents import reachability
from deployments.backups.models import BackupRun
from deployments.models import ConfigRevision
from deployments.status import STALE_AFTER
from worklists.models import WorklistEntry

from .sites import deployments_of

ORTHANC_RANK = {"down": 0, "auth": 1, "unknown": 2, "up": 3}
SORTS = {
    "name": lambda row: row["deployment"].name.lower(),
    # The worst first: unreachable, refusing the portal's account, not checked yet, up.
    "orthanc": lambda row: (ORTHANC_RANK.get(row["orthanc"], 2), row["deployment"].name.lower()),
    "lag": lambda row: -(row["lag"].total_seconds() if row["lag"] is not None else float("inf")),
    "backup": lambda row: row["last_backup"].timestamp() if row["last_backup"] else 0,
    "pending": lambda row: -(row["pending_changes"] + row["pending_entries"]),
    "agent": lambda row: row["agent_seen"].timestamp() if row["agent_seen"] else 0,
}
DEFAULT_SORT = "name"


def _count(queryset):
    """A correlated COUNT per site: joins of several relations would multiply each other's rows."""
    return Coalesce(
        Subquery(queryset.order_by().values("deployment").annotate(n=Count("id")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def site_rows(user, sort=DEFAULT_SORT, now=None):
    now = now or timezone.now()
    site = OuterRef("pk")
    runs = BackupRun.objects.filter(schedule__deployment=site)
    pending_entries = WorklistEntry.objects.filter(WorklistEntry.LISTED, deployment=site).filter(
        Q(in_folder=False) | ~Q(revision=F("synced_revision"))
    )
    deployments = (
        deployments_of(user)
        .select_related("worklist_state")
        .annotate(
            pending_changes=_count(
                ConfigRevision.objects.filter(
                    deployment=site, state__in=[ConfigRevision.State.PENDING, ConfigRevision.State.APPLYING]
                )
            ),
            pending_entries=_count(pending_entries),
            last_backup=Subquery(
                runs.filter(state=BackupRun.State.SUCCEEDED).order_by("-finished_at").values("finished_at")[:1]
            ),
            last_run_state=Subquery(runs.order_by("-started_at", "-id").values("state")[:1]),
        )
    )
    rows = []
    for d in deployments:
        state = getattr(d, "worklist_state", None) if d.worklists_enabled else None
        synced = state.last_sync_at if state is not None else None
        agent, since = reachability(d, now)
        rows.append(
            {
                "deployment": d,
                "orthanc": d.last_state or "unknown",
                "orthanc_stale": d.last_checked_at is None or now - d.last_checked_at > STALE_AFTER,
                "orthanc_checked": d.last_checked_at,
                "lag": (now - synced) if synced else None,
                "synced": synced,
                "worklists": d.worklists_enabled,
                "sync_error": state.last_sync_error if state is not None else "",
                "last_backup": d.last_backup,
                "last_run_state": d.last_run_state or "",
                "pending_changes": d.pending_changes,
                "pending_entries": d.pending_entries,
                "agent": agent,
                "agent_seen": since,
                "agent_host": d.agent_host,
            }
        )
    key = sort.removeprefix("-")
    rows.sort(key=SORTS.get(key, SORTS[DEFAULT_SORT]), reverse=sort.startswith("-"))
    return rows
