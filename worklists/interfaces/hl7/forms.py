from django import forms

from .models import Hl7Mapping


class MappingForm(forms.ModelForm):
    class Meta:
        model = Hl7Mapping
        fields = [
            "sending_application",
            "sending_facility",
            "enabled",
            "accession_field",
            "procedure_field",
            "modality_field",
            "default_modality",
            "station_field",
            "station_codes",
            "default_station",
            "status_host",
            "status_port",
            "status_message_type",
        ]
        widgets = {"station_codes": forms.Textarea(attrs={"rows": 4, "placeholder": "ROOM-A = US1"})}

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.deployment = deployment
        self.fields["default_station"].queryset = deployment.modalities.filter(allow_find_worklist=True).order_by("aet")
        self.fields["default_station"].label_from_instance = lambda m: m.aet
