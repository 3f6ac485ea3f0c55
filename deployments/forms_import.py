"""The upload form of an Orthanc configuration import: one file or several (a folder's *.json)."""

from django import forms

from portal.text import single_line

from .importer import ConfigImportError, decode
from .importer.parse import MAX_FILE_BYTES
from .models.orthanc_user import validate_orthanc_username

MAX_FILES = 20


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".json,.lua,application/json"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        one = super().clean
        if isinstance(data, (list, tuple)):
            return [one(item, initial) for item in data] or [one(None, initial)]
        return [one(data, initial)]


class ConfigImportForm(forms.Form):
    files = MultipleFileField(
        label="Configuration files",
        help_text="Orthanc's orthanc.json, or every *.json of its configuration folder (e.g. /etc/orthanc) at once, "
        "with the Lua scripts its LuaScripts load: each user's role is read from their request filter. "
        "Comments are allowed, as in Orthanc. A key defined in two files is refused, as Orthanc refuses it.",
    )
    confirm = forms.BooleanField(
        label="Replace this deployment's settings, Orthanc users and modalities with those of the files",
        help_text="Nothing is pushed to Orthanc yet: you review what was imported, then make the first push.",
    )

    def clean_files(self):
        uploads = self.cleaned_data["files"]
        if len(uploads) > MAX_FILES:
            raise forms.ValidationError(f"At most {MAX_FILES} files at once.")
        texts = {}
        for upload in uploads:
            if upload.name in texts:
                raise forms.ValidationError(f"{upload.name} is given twice.")
            if upload.size > MAX_FILE_BYTES:  # before reading it into memory
                raise forms.ValidationError(f"{upload.name} is larger than an Orthanc configuration can be.")
            try:
                texts[upload.name] = decode(upload.read(), upload.name)
            except ConfigImportError as exc:
                raise forms.ValidationError(str(exc)) from None
        return texts


class FirstPushForm(forms.Form):
    """How the first push gets into an Orthanc that does not know the portal's account yet.

    The password is never stored in clear: the view hands it to the push as a short-lived
    encrypted PushLogin (deployments.adoption)."""

    ACCOUNT, SERVICE, PORTAL = "account", "service", "portal"
    way = forms.ChoiceField(
        label="How the portal gets in the first time",
        widget=forms.RadioSelect,
        choices=[
            (ACCOUNT, "With an admin account of this Orthanc, typed here for this push only"),
            (SERVICE, "By restarting Orthanc through the deployment's service control"),
            (PORTAL, "This Orthanc already knows the portal's account (or has authentication off)"),
        ],
        initial=ACCOUNT,
    )
    username = forms.CharField(
        label="Orthanc admin username",
        required=False,
        max_length=64,
        validators=[validate_orthanc_username],
        help_text="An account of the running Orthanc that may POST /tools/reset.",
    )
    password = forms.CharField(
        label="Its password",
        required=False,
        max_length=200,
        strip=False,
        validators=[single_line],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="For this one push only: handed to it encrypted, deleted when it starts (worthless after ten "
        "minutes), never logged or shown.",
    )

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        self.deployment = deployment
        if deployment.service_kind == deployment.ServiceKind.NONE:
            self.fields["way"].choices = [c for c in self.fields["way"].choices if c[0] != self.SERVICE]

    def clean(self):
        data = super().clean()
        if data.get("way") == self.ACCOUNT:
            for name in ("username", "password"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, "Needed to push with an admin account of this Orthanc.")
        return data
