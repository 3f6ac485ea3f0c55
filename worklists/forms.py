from django import forms
from django.core.validators import MaxLengthValidator

from portal.text import SEARCH_MAX_LENGTH

from .models import Patient, WorklistEntry
from .scheduling import patient_problems, shown_values, station_letters, station_problems, worklist_stations


class DateInput(forms.DateInput):
    input_type = "date"


class TimeInput(forms.TimeInput):
    input_type = "time"


class VRMixin:
    """Form fields check with the model's DICOM validators, whose messages name the value
    representation and its limit, instead of Django's generic length message."""

    def use_vr_validators(self):
        for name, field in self.fields.items():
            model_field = next((f for f in self._meta.model._meta.fields if f.name == name), None)
            if model_field is None:  # a form-only field
                continue
            if isinstance(field, forms.CharField) and model_field.validators:
                kept = [v for v in field.validators if not isinstance(v, MaxLengthValidator)]
                field.validators = kept + [v for v in model_field.validators if not isinstance(v, MaxLengthValidator)]


class PatientForm(VRMixin, forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["patient_id", "family_name", "given_name", "middle_name", "prefix", "suffix", "birth_date", "sex"]
        widgets = {"birth_date": DateInput(format="%Y-%m-%d")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_vr_validators()
        self.fields["patient_id"].widget.attrs.update({"autocomplete": "off"})
        # Type-ahead: typing in the family name asks the server for matching patients.
        self.fields["family_name"].widget.attrs.update({"autocomplete": "off", "data-patient-lookup": "1"})

    def validate_unique(self):
        # The same patient ID means the same patient: the scheduler updates it, not a duplicate.
        pass


def station_label(modality):
    charset = "" if modality.charset == modality.Charset.UTF8 else f" ({modality.get_charset_display().split(' (')[0]})"
    name = f" · {modality.station_name}" if modality.station_name else ""
    return f"{modality.aet}{name}{charset}"


class EntryForm(VRMixin, forms.ModelForm):
    station = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="The machine that will do the exam.")
    accession_number = forms.CharField(required=False, help_text="Empty: the next number is generated.")

    class Meta:
        model = WorklistEntry
        fields = [
            "station",
            "scheduled_date",
            "scheduled_time",
            "requested_procedure_description",
            "referring_physician",
            "performing_physician",
            "accession_number",
            "requested_procedure_id",
            "modality",
            "notes",
        ]
        widgets = {
            "scheduled_date": DateInput(format="%Y-%m-%d"),
            "scheduled_time": TimeInput(format="%H:%M"),
            "notes": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_vr_validators()
        self.deployment = deployment
        self.fields["station"].queryset = worklist_stations(deployment)
        self.fields["station"].label_from_instance = station_label
        self.fields["accession_number"].validators = [
            v
            for v in WorklistEntry._meta.get_field("accession_number").validators
            if not isinstance(v, MaxLengthValidator)
        ]
        if self.instance.pk:
            self.fields["accession_number"].disabled = True  # the machine and the study carry it

    def clean_accession_number(self):
        value = self.cleaned_data.get("accession_number") or ""
        if value and WorklistEntry.objects.filter(accession_number=value).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This accession number is already used by another entry.")
        return value


def check_station(patient_form, entry_form, letters=None) -> bool:
    """Add an error beside each value the chosen station, or the station of another active entry
    of the same patient, would not receive intact. True when all is fine. ``letters``: from
    ``station_letters``, when many rows are checked."""
    if not (patient_form.is_valid() and entry_form.is_valid()):
        return False
    deployment = entry_form.deployment
    letters = letters if letters is not None else station_letters(deployment)
    values = shown_values(patient_form.cleaned_data, entry_form.cleaned_data)
    problems = station_problems(entry_form.cleaned_data["station"], values, letters)
    others = patient_problems(deployment, patient_form.cleaned_data, entry_form.instance.pk, letters)
    for name, message in others.items():
        problems.setdefault(name, message)
    for name, message in problems.items():
        form = patient_form if name in patient_form.fields else entry_form
        form.add_error(name, message)
    return not problems


def entry_data(entry_form) -> dict:
    return {k: v for k, v in entry_form.cleaned_data.items()}


class ListFilterForm(forms.Form):
    date = forms.DateField(required=False, widget=DateInput())
    q = forms.CharField(required=False, max_length=SEARCH_MAX_LENGTH, label="Search")


MAX_CSV_BYTES = 5_000_000


class CsvUploadForm(forms.Form):
    file = forms.FileField(required=False, help_text="UTF-8 CSV with a header line; see the columns below.")
    text = forms.CharField(required=False, max_length=MAX_CSV_BYTES, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload:
            raw = upload.read(MAX_CSV_BYTES + 1)
            if len(raw) > MAX_CSV_BYTES:
                raise forms.ValidationError("The file is larger than 5 MB.")
            try:
                data["text"] = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError(
                    f"The file is not UTF-8 (byte {exc.start + 1}); save it as 'CSV UTF-8'."
                ) from exc
        if not data.get("text"):
            raise forms.ValidationError("Choose a CSV file.")
        return data
