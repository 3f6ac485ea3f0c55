from django import forms
from django.contrib.auth.models import Group, User

from .roles import ROLE_HELP, ROLE_NAMES


class StaffForm(forms.ModelForm):
    role = forms.ChoiceField(
        choices=[(r, r) for r in ROLE_NAMES],
        help_text=" ".join(f"{r}: {h}" for r, h in ROLE_HELP.items()),
    )

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active"]
        help_texts = {"is_active": "Untick to block the account without deleting its audit trail."}

    def __init__(self, *args, acting_user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.acting_user = acting_user
        self.fields["email"].required = False
        if self.instance.pk:
            group = self.instance.groups.filter(name__in=ROLE_NAMES).first()
            self.initial["role"] = group.name if group else ("Admin" if self.instance.is_superuser else "")

    def clean(self):
        data = super().clean()
        if self.instance.pk and self.instance == self.acting_user:
            if data.get("role") != "Admin" or not data.get("is_active"):
                raise forms.ValidationError("You cannot remove your own Admin role or deactivate yourself.")
        return data

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES))
            user.groups.add(Group.objects.get(name=self.cleaned_data["role"]))
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
