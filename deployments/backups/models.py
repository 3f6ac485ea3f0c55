"""Backups of a deployment over SSH: its key pair, its schedules and the runs (snapshots) they made."""

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment
from deployments.models.deployment import port_validators
from portal.crypto import EncryptedTextField

from .validators import (
    EMAILS_MAX,
    PING_URL_MAX,
    validate_email_list,
    validate_host,
    validate_ping_url,
    validate_remote_folder,
    validate_user,
)

# Upper bounds of the retention rules: a week of hours, a year of days, five years of weeks, ten of months.
RETENTION_LIMITS = {"keep_last": 100, "keep_hourly": 168, "keep_daily": 366, "keep_weekly": 260, "keep_monthly": 120}


class SshIdentity(models.Model):
    """The deployment's ed25519 key pair for its backup targets. The private key never leaves the
    database except into a 0600 temporary file while an SSH connection authenticates."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="backup_identity")
    private_key = EncryptedTextField()
    public_key = models.TextField(help_text="OpenSSH public key line: type, base64, comment.")
    fingerprint = models.CharField(max_length=80)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "SSH identity"

    def __str__(self):
        return f"backup key of {self.deployment}"


class BackupSchedule(models.Model):
    class Kind(models.TextChoices):
        RSYNC = "rsync", "rsync over SSH (plain files, fast local copy)"
        BORG = "borg", "BorgBackup over SSH (encrypted, append-only, off-site)"
        LOCAL = "local", "Local disk (a mounted USB disk or NAS folder; encrypted Borg repository)"

    class Preset(models.TextChoices):
        DAILY_0200 = "daily-0200", "Every day at 02:00"
        DAILY_2200 = "daily-2200", "Every day at 22:00"
        TWICE_DAILY = "twice-daily", "Twice a day (01:00 and 13:00)"
        HOURLY = "hourly", "Every hour"
        WEEKLY = "weekly", "Every Sunday at 03:00"
        CUSTOM = "custom", "Custom (crontab fields below)"

    # preset → (minute, hour, day_of_week, day_of_month, month_of_year)
    PRESET_CRON = {
        Preset.DAILY_0200: ("0", "2", "*", "*", "*"),
        Preset.DAILY_2200: ("0", "22", "*", "*", "*"),
        Preset.TWICE_DAILY: ("0", "1,13", "*", "*", "*"),
        Preset.HOURLY: ("0", "*", "*", "*", "*"),
        Preset.WEEKLY: ("0", "3", "0", "*", "*"),
    }

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="backup_schedules")
    name = models.CharField(max_length=100, help_text="e.g. 'Nightly to the NAS'.")
    host = models.CharField(
        "target host", max_length=253, validators=[validate_host], help_text="Host name or IP address of the target."
    )
    port = models.PositiveIntegerField("SSH port", default=22, validators=port_validators)
    user = models.CharField("SSH user", max_length=32, validators=[validate_user])
    remote_folder = models.CharField(
        max_length=255,
        validators=[validate_remote_folder],
        help_text="Absolute folder on the target; snapshots go to &lt;folder&gt;/&lt;deployment slug&gt;/.",
    )
    kind = models.CharField("target kind", max_length=8, choices=Kind.choices, default=Kind.RSYNC)
    preset = models.CharField(max_length=16, choices=Preset.choices, default=Preset.DAILY_0200)
    minute = models.CharField(max_length=64, default="0")
    hour = models.CharField(max_length=64, default="2")
    day_of_week = models.CharField(max_length=64, default="*", help_text="0 is Sunday.")
    day_of_month = models.CharField(max_length=64, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    # Retention as borgmatic and restic count it; each rule adds to the others.
    keep_last = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(RETENTION_LIMITS["keep_last"], "Keep at most %(limit_value)s last snapshots.")],
        help_text="Keep the N newest snapshots, whenever they were taken.",
    )
    keep_hourly = models.PositiveSmallIntegerField(
        default=24,
        validators=[MaxValueValidator(RETENTION_LIMITS["keep_hourly"], "Keep at most %(limit_value)s hours.")],
        help_text="… and the newest of each of the last N hours that have one.",
    )
    keep_daily = models.PositiveSmallIntegerField(
        default=7,
        validators=[MaxValueValidator(RETENTION_LIMITS["keep_daily"], "Keep at most %(limit_value)s days.")],
        help_text="… of the last N days.",
    )
    keep_weekly = models.PositiveSmallIntegerField(
        default=4,
        validators=[MaxValueValidator(RETENTION_LIMITS["keep_weekly"], "Keep at most %(limit_value)s weeks.")],
        help_text="… of the last N weeks.",
    )
    keep_monthly = models.PositiveSmallIntegerField(
        default=6,
        validators=[MaxValueValidator(RETENTION_LIMITS["keep_monthly"], "Keep at most %(limit_value)s months.")],
        help_text="… of the last N months.",
    )
    include_index = models.BooleanField(
        default=True, help_text="The index database. With SQLite, Orthanc is stopped for a few seconds to copy it."
    )
    include_storage = models.BooleanField(default=True, help_text="The DICOM files.")
    include_config = models.BooleanField("include configuration", default=True)
    enabled = models.BooleanField(default=True)
    bandwidth_limit = models.PositiveIntegerField(
        "bandwidth limit (KiB/s)", null=True, blank=True, help_text="Empty: no limit."
    )
    drill_weekly = models.BooleanField(
        "restore drills",
        default=True,
        help_text="Every day at 05:00, the least recently drilled snapshots are proved restorable in a throwaway "
        "Orthanc (each at least every 28 days), and a sample of stored files is re-read against its MD5.",
    )

    # Who hears of a failure or of silence: mail from the portal, and a ping to an outside monitor
    # (healthchecks.io or compatible), which notices also when the portal itself is down.
    alert_emails = models.CharField(
        "alert e-mails",
        max_length=EMAILS_MAX,
        blank=True,
        validators=[validate_email_list],
        help_text="Comma-separated; told of a failed run, a failed drill or an overdue schedule (besides ALERT_EMAILS).",
    )
    ping_url = models.CharField(
        "ping URL",
        max_length=PING_URL_MAX,
        blank=True,
        validators=[validate_ping_url],
        help_text="A healthchecks.io (or compatible) check: pinged at the start (/start), success and failure "
        "(/fail) of each run, so it raises the alarm when no run comes at all.",
    )

    host_key = models.CharField(max_length=1000, blank=True, help_text="Pinned: '<type> <base64>'.")
    host_key_fingerprint = models.CharField(max_length=100, blank=True)
    host_key_pinned_at = models.DateTimeField(null=True, blank=True)
    offered_host_key = models.CharField(max_length=1000, blank=True)
    offered_fingerprint = models.CharField(max_length=100, blank=True)
    overdue_alerted_at = models.DateTimeField(null=True, blank=True)
    mount_point = models.CharField(
        max_length=255,
        blank=True,
        validators=[validate_remote_folder],
        help_text="Local disk: where the disk is mounted; a run refuses to start when nothing is mounted there.",
    )
    # Borg: the repository's passphrase and its exported key, both encrypted at rest.
    borg_passphrase = EncryptedTextField(blank=True)
    borg_key = EncryptedTextField(blank=True)
    borg_key_exported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["deployment__name", "name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "name"], name="backup_schedule_unique_name")]
        permissions = [("run_backupschedule", "Can run a backup now and test its connection")]

    def __str__(self):
        return f"{self.deployment} · {self.name}"

    def get_absolute_url(self):
        return reverse("backups:schedule", args=[self.pk])

    @property
    def cron(self):
        return (self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year)

    @property
    def target_folder(self):
        return f"{self.remote_folder.rstrip('/')}/{self.deployment.slug}"

    @property
    def target_label(self):
        if self.kind == self.Kind.LOCAL:
            return f"local disk {self.target_folder}"
        return f"{self.user}@{self.host}:{self.port}{self.target_folder}"

    @property
    def is_borg(self):
        return self.kind in (self.Kind.BORG, self.Kind.LOCAL)

    @property
    def is_local(self):
        return self.kind == self.Kind.LOCAL

    def authorized_keys_line(self):
        """The line for the target's authorized_keys. The key never gets a shell: a Borg target
        confines it to an append-only ``borg serve`` of this schedule's repository, an rsync target
        to rrsync in this schedule's folder."""
        from . import borg, ssh

        identity = getattr(self.deployment, "backup_identity", None)
        if identity is None or self.is_local:
            return ""
        kind = borg if self.is_borg else ssh
        return kind.authorized_keys_line(self, identity.public_key)

    @property
    def periodic_task_name(self):
        return f"Backup schedule {self.pk}"

    @property
    def drill_task_name(self):
        return f"Backup drill {self.pk}"


class BackupRun(models.Model):
    """One backup, recorded before it runs; when it succeeded, it names a snapshot on the target."""

    class State(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Run now"
        COMMAND = "command", "Command line"

    class Drill(models.TextChoices):
        NONE = "", "Not drilled"
        RUNNING = "running", "Drill running"
        PASSED = "passed", "Restorable"
        FAILED = "failed", "Drill failed"

    ACTIVE = (State.PENDING, State.RUNNING)

    schedule = models.ForeignKey(BackupSchedule, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    # The broker's id of a scheduled delivery: a redelivered message finds its run already made.
    task_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.CharField(max_length=32, blank=True)
    previous = models.CharField(max_length=32, blank=True, help_text="The snapshot unchanged files link to.")
    bytes_transferred = models.BigIntegerField(null=True, blank=True)
    files = models.PositiveIntegerField(null=True, blank=True)
    snapshot_size = models.BigIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    downtime = models.FloatField(null=True, blank=True, help_text="Seconds Orthanc was stopped.")
    target_free_bytes = models.BigIntegerField(null=True, blank=True)
    patients = models.PositiveIntegerField(null=True, blank=True)
    studies = models.PositiveIntegerField(null=True, blank=True)
    instances = models.PositiveIntegerField(null=True, blank=True)
    orthanc_version = models.CharField(max_length=32, blank=True)
    config_revision = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    pruned = models.JSONField(default=list, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True, help_text="When retention removed this snapshot.")
    drill_state = models.CharField(max_length=10, choices=Drill.choices, default=Drill.NONE, blank=True)
    drill_at = models.DateTimeField(null=True, blank=True)
    drill_message = models.TextField(blank=True)
    # The daily sample of attachments re-read on the target against the manifest's MD5 (rotation.py).
    sample_state = models.CharField(max_length=10, choices=Drill.choices, default=Drill.NONE, blank=True)
    sample_at = models.DateTimeField(null=True, blank=True)
    sample_message = models.TextField(blank=True)
    # A restore checks every storage file against Orthanc's MD5 before anything changes (restore.py):
    # what it found damaged or missing, and what the admin last accepted to lose from the web.
    restore_damaged = models.JSONField(default=list, blank=True)
    restore_accepted = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule"], condition=Q(state__in=["pending", "running"]), name="backup_one_active_run"
            )
        ]
        permissions = [
            ("verify_backuprun", "Can run a restore drill"),
            ("restore_backuprun", "Can restore a deployment from a snapshot"),
        ]

    def __str__(self):
        return f"{self.schedule} · {self.snapshot or f'run {self.pk}'} ({self.state})"

    def get_absolute_url(self):
        return reverse("backups:run", args=[self.pk])

    @property
    def deployment(self):
        return self.schedule.deployment

    @property
    def snapshot_path(self):
        return f"{self.schedule.target_folder}/{self.snapshot}"

    @property
    def restorable(self):
        return self.state == self.State.SUCCEEDED and self.snapshot and self.pruned_at is None
