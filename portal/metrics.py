"""Prometheus metrics at ``/metrics``, read with a bearer token.

Per backup schedule: the last success's time, duration and bytes, and the snapshots kept; per
deployment: Orthanc up (as the periodic status check last saw it) and the worklist sync lag. An
outside Prometheus alerts from these when the portal's own alerts cannot (e.g. its mail is down).

The token is made like the API tokens (portal.tokens): 256 random bits, only the SHA-256 digest
kept, shown once. It is its own kind: it can read these numbers and nothing else, because it sits
in clear in Prometheus's configuration.
"""

import secrets

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from deployments.backups.models import BackupRun, BackupSchedule
from deployments.backups.periodic import period
from deployments.backups.status import grace
from deployments.models import Deployment
from worklists.models import WorklistState

from . import audit
from .models import AuditEntry, MetricsToken
from .tokens import LAST_USED_PRECISION, digest_of

# The public start of every metrics token: not a secret.
TOKEN_START = "ocm_"  # noqa: S105  # nosec B105
PREFIX = "orthanc_portal_"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def metrics_token_create(*, by=None):
    """A new token; every older one stops working. Returns the row and the token, kept nowhere."""
    public = TOKEN_START + secrets.token_hex(4)
    token = f"{public}_{secrets.token_urlsafe(32)}"
    old = list(MetricsToken.objects.all())
    MetricsToken.objects.all().delete()
    row = MetricsToken.objects.create(prefix=public, digest=digest_of(token), created_by=audit.actor_of(by))
    replaced = ", ".join(t.prefix for t in old)
    audit.record(
        by, AuditEntry.Action.CREATE, row, None, {"prefix": public, "replaces": replaced or "none"}, source=None
    )
    return row, token


def token_valid(header: str) -> bool:
    """``header`` is the request's Authorization header: ``Bearer <token>``."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_START) or len(token) > 200:
        return False
    row = MetricsToken.objects.filter(digest=digest_of(token)).first()
    if row is None:
        return False
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        MetricsToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return True


def _ts(moment):
    return moment.timestamp() if moment else None


class PortalCollector:
    """Reads the database at each scrape: the numbers are what the portal has recorded."""

    def __init__(self, now=None):
        self.now = now or timezone.now()

    def collect(self):
        yield from self._backups()
        yield from self._deployments()

    def _backups(self):
        labels = ["deployment", "schedule"]
        families = {
            name: GaugeMetricFamily(PREFIX + name, text, labels=labels)
            for name, text in (
                ("backup_last_success_timestamp_seconds", "When the last successful backup finished (Unix time)."),
                ("backup_last_success_duration_seconds", "How long the last successful backup took."),
                ("backup_last_success_transferred_bytes", "Bytes the last successful backup sent to the target."),
                ("backup_last_success_snapshot_bytes", "Size of the last successful snapshot."),
                ("backup_snapshots", "Snapshots kept on the target (succeeded, not pruned)."),
                ("backup_last_run_failed", "1 when the schedule's last finished run failed."),
                ("backup_period_seconds", "Time between two scheduled runs."),
                ("backup_grace_seconds", "How late a run may be before the schedule counts as late."),
                ("backup_enabled", "1 when the schedule is enabled."),
            )
        }
        schedules = BackupSchedule.objects.select_related("deployment").annotate(
            kept=Count(
                "runs",
                filter=Q(runs__state=BackupRun.State.SUCCEEDED, runs__pruned_at__isnull=True) & ~Q(runs__snapshot=""),
            )
        )
        for schedule in schedules:
            values = [schedule.deployment.slug, schedule.name]
            finished = schedule.runs.filter(state__in=[BackupRun.State.SUCCEEDED, BackupRun.State.FAILED])
            last = finished.order_by("-finished_at", "-id").first()
            success = finished.filter(state=BackupRun.State.SUCCEEDED).order_by("-finished_at", "-id").first()
            per = period(schedule.cron, self.now)
            families["backup_snapshots"].add_metric(values, schedule.kept)
            families["backup_last_run_failed"].add_metric(
                values, 1 if last and last.state == BackupRun.State.FAILED else 0
            )
            families["backup_period_seconds"].add_metric(values, per.total_seconds())
            families["backup_grace_seconds"].add_metric(values, grace(per).total_seconds())
            families["backup_enabled"].add_metric(values, 1 if schedule.enabled else 0)
            if success:  # no success yet: the series is absent, which absent() in a rule catches
                families["backup_last_success_timestamp_seconds"].add_metric(values, _ts(success.finished_at))
                families["backup_last_success_duration_seconds"].add_metric(values, success.duration or 0)
                families["backup_last_success_transferred_bytes"].add_metric(values, success.bytes_transferred or 0)
                families["backup_last_success_snapshot_bytes"].add_metric(values, success.snapshot_size or 0)
        yield from families.values()

    def _deployments(self):
        up = GaugeMetricFamily(
            PREFIX + "orthanc_up", "1 when the last status check found Orthanc answering.", labels=["deployment"]
        )
        checked = GaugeMetricFamily(
            PREFIX + "orthanc_last_check_timestamp_seconds",
            "When the status check last ran (Unix time).",
            labels=["deployment"],
        )
        lag = GaugeMetricFamily(
            PREFIX + "worklist_sync_lag_seconds",
            "Seconds since the worklist folder was last reconciled with the database.",
            labels=["deployment"],
        )
        states = {s.deployment_id: s for s in WorklistState.objects.all()}
        for deployment in Deployment.objects.all():
            up.add_metric([deployment.slug], 1 if deployment.last_state == Deployment.CheckState.UP else 0)
            if deployment.last_checked_at:
                checked.add_metric([deployment.slug], _ts(deployment.last_checked_at))
            state = states.get(deployment.pk)
            if state and state.last_sync_at:
                lag.add_metric([deployment.slug], max((self.now - state.last_sync_at).total_seconds(), 0))
        yield from (up, checked, lag)


def exposition(now=None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector(now))
    return generate_latest(registry)
