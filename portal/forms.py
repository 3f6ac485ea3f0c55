import datetime

from django import forms
from django.contrib.auth.models import Group, User
from django.utils import timezone

from . import tokens
from .models import ApiToken, SiteAccess
from .roles import ROLE_HELP, ROLE_NAMES


class StaffForm(forms.ModelForm):
    role = forms.ChoiceField(
        choices=[(r, r) for r in ROLE_NAMES],
        help_text=" ".join(f"{r}: {h}" for r, h in ROLE_HELP.items()),
    )
    limit_sites = forms.BooleanField(
        required=False,
        label="Only the sites ticked below",
        help_text="Left unticked, the account works for every site. Ticked, it sees nothing of the other sites. "
        "Only an Admin of every site manages staff accounts and adds sites.",
    )
    sites = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The sites this account works for.",
    )

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active"]
        help_texts = {"is_active": "Untick to block the account without deleting its audit trail."}

    def __init__(self, *args, acting_user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.acting_user = acting_user
        self.fields["email"].required = False
        from deployments.models import Deployment

        self.fields["sites"].queryset = Deployment.objects.order_by("name")
        if self.instance.pk:
            group = self.instance.groups.filter(name__in=ROLE_NAMES).first()
            self.initial["role"] = group.name if group else ("Admin" if self.instance.is_superuser else "")
            access = SiteAccess.objects.filter(user=self.instance).first()
            if access is not None:
                self.initial["limit_sites"] = not access.all_sites
                self.initial["sites"] = list(access.deployments.all())

    def clean(self):
        data = super().clean()
        if self.instance.pk and self.instance == self.acting_user:
            if data.get("role") != "Admin" or not data.get("is_active"):
                raise forms.ValidationError("You cannot remove your own Admin role or deactivate yourself.")
            if data.get("limit_sites"):
                self.add_error("limit_sites", "You cannot limit your own account to some sites.")
        if data.get("limit_sites") and not data.get("sites"):
            self.add_error("sites", "Tick at least one site, or untick “Only the sites ticked below”.")
        if self.instance.is_superuser and data.get("limit_sites"):
            self.add_error("limit_sites", "A superuser works for every site; remove its superuser flag first.")
        return data

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES))
            user.groups.add(Group.objects.get(name=self.cleaned_data["role"]))
            access, _ = SiteAccess.objects.get_or_create(user=user)
            access.all_sites = not self.cleaned_data["limit_sites"]
            access.save(update_fields=["all_sites"])
            access.deployments.set([] if access.all_sites else self.cleaned_data["sites"])
        return user


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150)
    object_type = forms.ChoiceField(required=False)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, object_types=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["object_type"].choices = [("", "All")] + [(t, t) for t in object_types]

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data


class ApiTokenForm(forms.Form):
    """A new API token. ``owners``: the accounts the token may act as (an Admin chooses);
    None: the token acts as ``acting_user``."""

    name = forms.CharField(
        max_length=100,
        help_text="What will use it, e.g. “Practice system”. At most 100 characters.",
    )
    user = forms.ModelChoiceField(
        queryset=User.objects.none(),
        label="Acts as",
        help_text="The account whose permissions the token carries: a Scheduler account for a practice system.",
    )
    valid_until = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=f"The token stops working after this day. At most {tokens.MAX_DAYS} days ahead.",
    )

    def __init__(self, *args, acting_user, owners=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.acting_user = acting_user
        today = timezone.localdate()
        self.fields["valid_until"].initial = today + datetime.timedelta(days=tokens.DEFAULT_DAYS)
        if owners is None:
            del self.fields["user"]
        else:
            self.fields["user"].queryset = owners
            self.fields["user"].initial = acting_user.pk if acting_user else None

    def clean_valid_until(self):
        day = self.cleaned_data["valid_until"]
        today = timezone.localdate()
        last = today + datetime.timedelta(days=tokens.MAX_DAYS)
        if day < today:
            raise forms.ValidationError("This day is past: choose today or a later day.")
        if day > last:
            raise forms.ValidationError(f"At most {tokens.MAX_DAYS} days ahead: {last:%Y-%m-%d} or earlier.")
        return day

    def clean(self):
        data = super().clean()
        owner = data.get("user", self.acting_user)
        name = data.get("name")
        in_use = ApiToken.objects.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
        if name and owner and in_use.filter(user=owner, name__iexact=name).exists():
            self.add_error(
                "name", f"{owner} already has a token named “{name}” in use: revoke it or choose another name."
            )
        return data

    @property
    def owner(self):
        return self.cleaned_data.get("user", self.acting_user)
