import ipaddress
import re
import secrets

from django import forms
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from . import charsets
from .models import Deployment, Modality, OrthancUser
from .security.findings import is_weak_password
from .versions import VALUE_SINCE, OrthancVersion, label

# Grouped as the settings page shows them.
SETTINGS_SECTIONS = [
    ("Identity and access", ["name", "slug", "orthanc_url", "service_username", "service_password"]),
    ("Folders", ["config_dir", "storage_dir", "index_dir"]),
    (
        "HTTP and REST API",
        [
            "http_port",
            "remote_access_allowed",
            "authentication_enabled",
            "ssl_enabled",
            "ssl_certificate",
            "https_verify_peers",
            "orthanc_explorer_enabled",
            "webdav_enabled",
            "execute_lua_enabled",
            "rest_api_write_to_file_system_enabled",
        ],
    ),
    (
        "DICOM",
        [
            "dicom_server_enabled",
            "dicom_aet",
            "dicom_port",
            "dicom_check_called_aet",
            "dicom_check_modality_host",
            "dicom_always_allow_echo",
            "dicom_always_allow_store",
            "dicom_always_allow_find",
            "dicom_always_allow_find_worklist",
            "dicom_always_allow_get",
            "dicom_always_allow_move",
            "limit_find_results",
            "limit_find_instances",
            "confirm_unlimited_find",
        ],
    ),
    (
        "Storage, logs and speed",
        [
            "overwrite_instances",
            "storage_compression",
            "concurrent_jobs",
            "deidentify_logs",
            "deidentify_logs_dicom_version",
            "default_encoding",
            "tcp_no_delay",
            "keep_alive",
            "storage_access_on_find",
            "save_jobs",
        ],
    ),
    ("Plugins", ["worklists_enabled", "worklist_server", "worklists_dir", "dicomweb_enabled", "dicomweb_root"]),
    ("Index database", ["index_backend", "pg_host", "pg_port", "pg_database", "pg_user", "pg_password", "pg_tls"]),
    ("Service control", ["service_kind", "service_name", "start_command", "stop_command"]),
]
SETTINGS_FIELDS = [f for _, names in SETTINGS_SECTIONS for f in names if f != "confirm_unlimited_find"]
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _folder(value):
    # The rule (absolute, no '..') is the model field's validator, shared with the importer.
    return value.rstrip("/") or value


def is_ip(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


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
        help_text="The password of the portal's account on this Orthanc. Leave empty to keep the stored one "
        "(or, for a new deployment, to generate one).",
    )
    pg_password = forms.CharField(
        label="PostgreSQL password",
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Written to postgresql.json (readable by Orthanc only). Leave empty to keep the stored one.",
    )
    confirm_unlimited_find = forms.BooleanField(
        required=False,
        label="I understand that 0 means no limit",
        help_text="Needed to save a find limit of 0: one broad query could then list the whole archive.",
    )

    class Meta:
        model = Deployment
        fields = SETTINGS_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._offer_deidentify_versions()  # before the bound fields below copy the help texts
        self._explain_worklist_encoding()
        self.sections = [(title, [self[name] for name in names]) for title, names in SETTINGS_SECTIONS]

    def _offer_deidentify_versions(self):
        """Only the editions the deployment's Orthanc accepts: any other value stops it from starting."""
        field = self.fields["deidentify_logs_dicom_version"]
        version = OrthancVersion.of(self.instance.last_version)
        offered = version.accepted_values("DeidentifyLogsDicomVersion")
        current = self.instance.deidentify_logs_dicom_version
        if not version.known and current not in offered:
            offered.append(current)  # an imported value stays until the version is known
        field.choices = [(value, value) for value in offered]
        newest = [v for v in VALUE_SINCE["DeidentifyLogsDicomVersion"] if v not in offered]
        if version.known:
            note = f"Offered: the editions Orthanc {version} accepts."
        else:
            note = (
                "Orthanc's version is not known yet (the portal has not reached it): only the editions every "
                "supported release accepts are offered."
            )
        for value in newest:
            note += f" {value} needs Orthanc {label(VALUE_SINCE['DeidentifyLogsDicomVersion'][value])} or later."
        field.help_text = f"{field.help_text} {note}"
        who = f"Orthanc {version}".replace("%", "%%") if version.known else "every supported Orthanc release"
        field.error_messages["invalid_choice"] = (
            f"%(value)s is not accepted by {who}: Orthanc would refuse to start. Choose {', '.join(offered)}."
        )

    def _explain_worklist_encoding(self):
        """Which stations the deployment serves correctly, beside the setting that decides it."""
        if self.instance.pk is None:
            return
        stations = list(self.instance.modalities.all())
        field = self.fields["default_encoding"]
        setting = self.instance.default_encoding
        rows = format_html_join(
            "",
            '<li><span class="{}">{}</span>: {}</li>',
            (
                ("text-success" if s.full else "text-warning-emphasis", s.aet, s.sentence)
                for s in charsets.services(setting, stations)
            ),
        )
        encoding = self.instance.worklist_encoding(stations)
        field.help_text = format_html(
            '{} <span id="worklist-encoding-now">Now: {} ({}).</span><ul class="mb-0" id="worklist-stations">{}</ul>',
            field.help_text,
            charsets.NAMES[charsets.CHARSET_OF[encoding]],
            charsets.reason(setting, stations),
            rows or format_html("<li>{}</li>", "No station may query the worklist yet."),
        )

    def clean_service_password(self):
        value = self.cleaned_data["service_password"]
        if not value:
            return self.instance.service_password or secrets.token_urlsafe(24)
        check_password_strength(value, self.cleaned_data.get("service_username", ""))
        return value

    def clean_pg_password(self):
        return self.cleaned_data["pg_password"] or self.instance.pg_password

    def clean_config_dir(self):
        return _folder(self.cleaned_data["config_dir"])

    def clean_storage_dir(self):
        return _folder(self.cleaned_data["storage_dir"])

    def clean_index_dir(self):
        return _folder(self.cleaned_data["index_dir"])

    def clean_worklists_dir(self):
        return _folder(self.cleaned_data["worklists_dir"])

    def clean(self):
        data = super().clean()
        get = data.get
        if not get("authentication_enabled"):
            # Without it Orthanc hands any claimed username to the Lua filter unchecked: anyone
            # could call themselves "portal" and be admin.
            self.add_error(
                "authentication_enabled",
                "Authentication must stay on: without it anyone who reaches the port could claim any user, "
                "the portal's admin account included."
                + (" Remote access needs it too." if get("remote_access_allowed") else ""),
            )
        options = sorted(((self.instance.extra_config or {}).get("Worklists") or {}).keys())
        if get("worklists_enabled") and get("worklist_server") == Deployment.WorklistServer.INDEXED and options:
            self.add_error(
                "worklist_server",
                f"The imported worklist options {', '.join(options)} only work with Orthanc's classic worklists "
                "plugin: keep it, or import the configuration again without them.",
            )
        if get("ssl_enabled") and not get("ssl_certificate"):
            self.add_error("ssl_certificate", "HTTPS needs a certificate file.")
        if get("http_port") and get("http_port") == get("dicom_port"):
            self.add_error("dicom_port", "The DICOM port must differ from the HTTP port.")
        for name in ("limit_find_results", "limit_find_instances"):
            if get(name) == 0 and not get("confirm_unlimited_find"):
                self.add_error(name, "0 removes the limit. Tick the confirmation below to save it anyway.")
        if get("index_backend") == Deployment.IndexBackend.POSTGRESQL:
            for name in ("pg_host", "pg_database", "pg_user"):
                if not get(name):
                    self.add_error(name, "Required for a PostgreSQL index.")
        kind = get("service_kind")
        if kind in (Deployment.ServiceKind.SYSTEMD, Deployment.ServiceKind.DOCKER):
            if not re.fullmatch(r"[A-Za-z0-9@._:-]{1,100}", get("service_name") or ""):
                self.add_error("service_name", "Give the unit or container name (letters, digits, @ . _ : -).")
        if kind == Deployment.ServiceKind.COMMANDS:
            for name in ("start_command", "stop_command"):
                if not get(name):
                    self.add_error(name, "Required for start/stop commands.")
        setting = get("default_encoding")
        if setting and self.instance.pk and setting != self.instance.default_encoding:
            stations = list(self.instance.modalities.all())
            for problem in new_entry_problems(
                self.instance, (self.instance.default_encoding, stations), (setting, stations)
            ):
                self.add_error("default_encoding", problem)
        if get("dicom_check_modality_host") and self.instance.pk:
            names = [m.name for m in self.instance.modalities.all() if not is_ip(m.host)]
            if names:
                self.add_error(
                    "dicom_check_modality_host",
                    f"These modalities have a host name, not an IP address: {', '.join(names)}. "
                    "Give them IP addresses first.",
                )
        return data


def new_entry_problems(deployment, before, after) -> list[str]:
    """The scheduled entries that the change from ``before`` to ``after`` (setting, stations)
    would leave with letters their station no longer receives intact."""
    known = set(charsets.entry_problems(deployment, *before))
    return [p for p in charsets.entry_problems(deployment, *after) if p not in known]


def check_password_strength(password, username=""):
    if is_weak_password(username, password):
        raise ValidationError("This password is a known default or contains the username itself: choose another.")
    try:
        CommonPasswordValidator().validate(password)
    except ValidationError:
        raise ValidationError("This password is on the list of common passwords: choose another.") from None
    if len(password) < 12:
        raise ValidationError("Use at least 12 characters (leave empty to generate 24).")


class OrthancUserForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to generate a strong one (shown once).",
    )

    class Meta:
        model = OrthancUser
        fields = ["username", "password", "role", "is_active", "expires_on"]
        widgets = {"expires_on": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        self.deployment = deployment
        self.instance.deployment = deployment
        self.generated_password = None
        if self.instance.pk:
            self.fields["password"].help_text = "Leave empty to keep the current one; use Rotate for a new one."

    def clean_username(self):
        username = self.cleaned_data["username"]
        if username == self.deployment.service_username:
            raise ValidationError("This is the portal's own account on this Orthanc; choose another name.")
        taken = OrthancUser.objects.filter(deployment=self.deployment, username=username).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError("An Orthanc user with this name already exists on this deployment.")
        return username

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not password:
            if self.instance.pk:
                return self.instance.password
            self.generated_password = secrets.token_urlsafe(18)  # 24 characters
            return self.generated_password
        check_password_strength(password, self.data.get("username", ""))
        return password


class ModalityForm(forms.ModelForm):
    class Meta:
        model = Modality
        fields = [
            "name",
            "aet",
            "host",
            "port",
            "manufacturer",
            "allow_echo",
            "allow_find",
            "allow_find_worklist",
            "allow_get",
            "allow_move",
            "allow_store",
            "allow_storage_commitment",
            "local_aet",
            "timeout",
            "charset",
            "station_name",
        ]

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        self.deployment = deployment
        self.instance.deployment = deployment

    def clean_host(self):
        host = self.cleaned_data["host"].strip()
        if is_ip(host):
            return host
        if self.deployment.dicom_check_modality_host:
            raise ValidationError(
                "Orthanc checks modality addresses on this deployment: give an IP address, not a host name."
            )
        return host  # a host name's form is the model field's validator, shared with the importer

    def clean(self):
        data = super().clean()
        others = Modality.objects.filter(deployment=self.deployment).exclude(pk=self.instance.pk)
        if data.get("name") and others.filter(name=data["name"]).exists():
            self.add_error("name", "A modality with this name already exists on this deployment.")
        if all(data.get(k) for k in ("aet", "host", "port")):
            if others.filter(aet=data["aet"], host=data["host"], port=data["port"]).exists():
                self.add_error("aet", "A modality with this AE title, host and port already exists.")
        if data.get("charset") and data.get("aet"):
            self._check_scheduled_entries(list(others), data)
        return data

    def _check_scheduled_entries(self, others, data):
        """A station that shows fewer letters, or one that narrows the deployment's one encoding,
        must not leave scheduled entries with names it would garble."""
        changed = Modality(
            aet=data["aet"], charset=data["charset"], allow_find_worklist=data.get("allow_find_worklist", False)
        )
        before = others + ([self.instance] if self.instance.pk else [])
        setting = self.deployment.default_encoding
        for problem in new_entry_problems(self.deployment, (setting, before), (setting, [*others, changed])):
            self.add_error("charset", problem)
