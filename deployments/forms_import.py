"""The upload form of an Orthanc configuration import: one file or several (a folder's *.json)."""

from django import forms

from .importer import ConfigImportError, decode
from .importer.parse import MAX_FILE_BYTES

MAX_FILES = 20


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".json,application/json"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        one = super().clean
        if isinstance(data, (list, tuple)):
            return [one(item, initial) for item in data] or [one(None, initial)]
        return [one(data, initial)]


class ConfigImportForm(forms.Form):
    files = MultipleFileField(
        label="Configuration files",
        help_text="Orthanc's orthanc.json, or every *.json of its configuration folder (e.g. /etc/orthanc) at once. "
        "Comments are allowed, as in Orthanc. A key defined in two files is refused, as Orthanc refuses it.",
    )
    confirm = forms.BooleanField(
        label="Replace this deployment's settings, Orthanc users and modalities with those of the files",
        help_text="Nothing is pushed to Orthanc: you check the preview and push afterwards.",
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
