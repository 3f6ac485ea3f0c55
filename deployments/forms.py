from django import forms

from .models import Deployment


class DeploymentForm(forms.ModelForm):
    orthanc_url = forms.URLField(
        label="Orthanc REST URL",
        max_length=200,
        assume_scheme="http",
        help_text=Deployment._meta.get_field("orthanc_url").help_text,
    )
    service_password = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="The password of the portal's account on this Orthanc. Leave empty to keep the stored one.",
    )

    class Meta:
        model = Deployment
        fields = [
            "name",
            "slug",
            "orthanc_url",
            "service_username",
            "service_password",
            "config_dir",
            "storage_dir",
            "dicom_aet",
            "dicom_port",
            "service_kind",
        ]

    def clean_service_password(self):
        value = self.cleaned_data["service_password"]
        if not value:
            if not self.instance.pk:
                raise forms.ValidationError("Give the password of the portal's account on this Orthanc.")
            return self.instance.service_password
        return value

    def clean_config_dir(self):
        value = self.cleaned_data["config_dir"]
        if not value.startswith("/"):
            raise forms.ValidationError("Give an absolute path, e.g. /etc/orthanc.")
        return value.rstrip("/") or "/"
