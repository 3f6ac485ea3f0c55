import hashlib

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django_celery_beat import validators as cron_validators

from .models import BackupSchedule
from .periodic import expand

CRON_FIELDS = {
    "minute": cron_validators.minute_validator,
    "hour": cron_validators.hour_validator,
    "day_of_week": cron_validators.day_of_week_validator,
    "day_of_month": cron_validators.day_of_month_validator,
    "month_of_year": cron_validators.month_of_year_validator,
}


class BackupScheduleForm(forms.ModelForm):
    class Meta:
        model = BackupSchedule
        fields = [
            "deployment", "name", "kind", "host", "port", "user", "remote_folder", "mount_point", "preset",
            "minute", "hour", "day_of_week", "day_of_month", "month_of_year",
            "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
            "include_index", "include_storage", "include_config", "enabled", "bandwidth_limit", "drill_weekly",
            "alert_emails", "ping_url",
        ]  # fmt: skip
        help_texts = {"preset": "A preset fills the crontab fields; choose Custom to write your own."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Moving a schedule to another deployment would mix two archives in one folder.
            self.fields["deployment"].disabled = True
            # Its snapshots are of one kind: a new kind of target is a new schedule.
            self.fields["kind"].disabled = True
        self.fields["kind"].required = False
        # A local disk has no host nor user: they are required below for the SSH kinds only.
        self.fields["host"].required = self.fields["user"].required = False
        for name in CRON_FIELDS:
            self.fields[name].required = False

    def clean(self):
        data = super().clean()
        data["kind"] = data.get("kind") or BackupSchedule.Kind.RSYNC
        if data["kind"] != BackupSchedule.Kind.LOCAL:
            for name, what in (("host", "the target host"), ("user", "the SSH user")):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, f"Enter {what}: an SSH target needs it.")
        preset = data.get("preset")
        if preset and preset != BackupSchedule.Preset.CUSTOM:
            cron = BackupSchedule.PRESET_CRON[preset]
            for name, value in zip(CRON_FIELDS, cron, strict=True):
                data[name] = value
                self.errors.pop(name, None)
        elif preset == BackupSchedule.Preset.CUSTOM:
            self._clean_cron(data)
        if not (data.get("include_index") or data.get("include_storage") or data.get("include_config")):
            raise ValidationError("Include at least one of index, storage and configuration.")
        if not any(data.get(k) for k in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")):
            self.add_error("keep_daily", "Keep at least one last, hourly, daily, weekly or monthly snapshot.")
        self._check_folder_unique(data)
        self._check_someone_told(data)
        return data

    def _check_someone_told(self, data):
        # A failed or missing backup nobody hears of is the failure this guards against.
        if "alert_emails" in self.errors or "ping_url" in self.errors:
            return
        if not (data.get("alert_emails") or data.get("ping_url") or getattr(settings, "ADMINS_EMAILS", [])):
            self.add_error(
                "alert_emails",
                "Nobody would be told when a backup fails or stops running: enter at least one alert e-mail "
                "or a ping URL (ALERT_EMAILS, the portal-wide list, is empty).",
            )

    def _clean_cron(self, data):
        for name, validator in CRON_FIELDS.items():
            value = (data.get(name) or "").strip()
            if not value:
                self.add_error(name, "Required for a custom schedule ('*' means every).")
                continue
            try:
                validator(value)
            except ValidationError as exc:
                self.add_error(name, exc)
                continue
            data[name] = value
        if not any(name in self.errors for name in CRON_FIELDS):
            try:
                expand(tuple(data[name] for name in CRON_FIELDS))
            except (ValueError, KeyError) as exc:
                self.add_error("minute", f"Not a valid crontab: {exc}")

    def _check_folder_unique(self, data):
        deployment = data.get("deployment") or getattr(self.instance, "deployment", None)
        if not (deployment and data.get("host") and data.get("remote_folder")):
            return
        clash = BackupSchedule.objects.filter(
            deployment=deployment,
            host=data["host"],
            port=data.get("port"),
            remote_folder__in=[data["remote_folder"].rstrip("/"), data["remote_folder"].rstrip("/") + "/"],
        ).exclude(pk=self.instance.pk)
        if clash.exists():
            self.add_error(
                "remote_folder",
                "Another schedule of this deployment already writes there: their retention would delete each "
                "other's snapshots. Use another folder.",
            )


LOSSES_SHOWN = 20  # damaged files named on the restore page; the rest are counted


def shown_losses(losses) -> tuple[list[str], int]:
    """The damaged files the restore page names, and how many more there are."""
    return list(losses[:LOSSES_SHOWN]), max(len(losses) - LOSSES_SHOWN, 0)


def losses_digest(snapshot, losses) -> str:
    # Ties a ticked box to the list it was shown with: a list that changed since is not accepted.
    return hashlib.sha256("\n".join([snapshot, *losses]).encode()).hexdigest()[:32]


class RestoreForm(forms.Form):
    confirm = forms.CharField(
        label="Type the deployment's slug to confirm",
        help_text="Orthanc is stopped, its current data moved aside (not deleted), the snapshot restored, "
        "and Orthanc started again.",
    )
    snapshot = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, expected, snapshot, losses=(), **kwargs):
        """``losses``: the storage files the restore's pre-check found damaged or missing in this snapshot."""
        super().__init__(*args, **kwargs)
        self.expected, self.snapshot, self.losses = expected, snapshot, list(losses)
        self.fields["snapshot"].initial = snapshot
        if self.losses:
            shown, more = shown_losses(self.losses)
            self.fields["accept_losses"] = forms.BooleanField(
                label=f"I accept losing these {len(self.losses)} files: {', '.join(shown)}"
                + (f" and {more} more" if more else ""),
                error_messages={
                    "required": "Not restored: this snapshot has damaged files. Tick the box to accept losing them, "
                    "or restore another snapshot. Nothing was changed."
                },
            )
            self.fields["losses"] = forms.CharField(
                widget=forms.HiddenInput, required=False, initial=losses_digest(snapshot, self.losses)
            )

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value != self.expected:
            raise ValidationError(f"Type exactly '{self.expected}' to restore.")
        return value

    def clean(self):
        # The hidden fields' errors as the form's own: includes/form.html shows no hidden field's errors.
        data = super().clean()
        posted = data.get("snapshot") or ""
        if posted != self.snapshot:
            raise ValidationError(
                f"This form was for snapshot {posted[:40] or '(none)'}, not {self.snapshot}: open the restore page "
                "again. Nothing was changed."
            )
        if self.losses and data.get("losses") != losses_digest(self.snapshot, self.losses):
            raise ValidationError(
                "The list of damaged files changed since this page was shown: read it again before accepting. "
                "Nothing was changed."
            )
        return data
