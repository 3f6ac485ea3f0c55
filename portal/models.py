from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """One create, update, delete or action made through the portal, its API or a command."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Updated"
        DELETE = "delete", "Deleted"
        ACTION = "action", "Action"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Kept apart from the foreign key so the trail survives the deletion of a staff account.
    actor_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, default="web")
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=8, choices=Action.choices)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    summary = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    # The site the change belongs to (no foreign key: the trail outlives a deleted site); staff
    # limited to some sites see only their entries. Empty: the portal's own objects (staff, tokens).
    deployment_id = models.IntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        permissions = [
            ("view_dashboard", "Can see the dashboards"),
            ("manage_staff", "Can manage staff accounts"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_type} {self.object_repr}"


class Job(models.Model):
    """A piece of background work, recorded before it is sent to the broker.

    The row is the intent: if Redis is down when it is queued, or a worker dies while running
    it, the reconciler (``portal.jobs.jobs_reconcile``) sends it again. A task claims its row
    before working, so a second delivery of the same message does nothing.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=100)
    target_id = models.BigIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=100)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_error = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.kind}({self.target_id}) {self.state}"

    @property
    def status_text(self):
        if self.state == self.State.PENDING and self.send_error:
            return "Queued for later: the task queue is unreachable, it will be sent when it is back"
        return self.get_state_display()


class ApiToken(models.Model):
    """A named API token of one integration (e.g. "Practice system"), acting as its owner.

    Only the SHA-256 digest of the token is stored: the token itself is shown once, at creation.
    The prefix is the token's first characters, not secret, so people can tell tokens apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        # Tokens in use first, then the revoked ones (the newest revocations first).
        ordering = [models.F("revoked_at").desc(nulls_first=True), "-created_at", "-id"]
        default_permissions = ()
        permissions = [
            ("manage_own_apitokens", "Can create and revoke their own API tokens"),
            ("manage_all_apitokens", "Can create and revoke API tokens of any staff account"),
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…, {self.user})"

    @property
    def is_expired(self):
        return self.expires_at <= timezone.now()

    @property
    def is_active(self):
        return self.revoked_at is None and not self.is_expired


class MetricsToken(models.Model):
    """The bearer token Prometheus scrapes ``/metrics`` with. Read-only and separate from the API
    tokens (it sits in clear in Prometheus's configuration), one at a time: a new one replaces
    the old. Only its SHA-256 digest is stored; the token is shown once."""

    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"metrics token {self.prefix}…"


class SiteAccess(models.Model):
    """The clinic sites (deployments) a staff account works for. An account without this row, or
    with ``all_sites``, works for every site; a superuser always does (portal/sites.py)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="site_access")
    all_sites = models.BooleanField(default=True)
    deployments = models.ManyToManyField("deployments.Deployment", blank=True, related_name="+")

    def __str__(self):
        return f"sites of {self.user}"
