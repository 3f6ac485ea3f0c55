from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse

from portal.crypto import EncryptedTextField
from portal.text import single_line

from ..charsets import resolve

aet_validator = RegexValidator(
    r"^(?! *$)[\x20-\x5b\x5d-\x7e]{1,16}$",
    "An AE title is 1 to 16 characters of printable ASCII, without backslash, and not only spaces.",
)
port_validators = [
    MinValueValidator(1, "A port is between 1 and 65535."),
    MaxValueValidator(65535, "A port is between 1 and 65535."),
]
url_path_validator = RegexValidator(
    r"\A/[A-Za-z0-9._/-]*/\Z", "A URL path that starts and ends with '/', e.g. /dicom-web/."
)


def absolute_path(value):
    """A path on the Orthanc host: absolute, no '..', one line of text."""
    single_line(value)
    if value and (not value.startswith("/") or "/../" in f"{value}/"):
        raise ValidationError("An absolute path without '..', e.g. /var/lib/orthanc/db.", code="path")


class Deployment(models.Model):
    """One Orthanc server that the portal manages, with every setting it renders into Orthanc's
    configuration. Help texts say what each setting means for the patients' data."""

    class ServiceKind(models.TextChoices):
        LOCAL = "local", "Local process started by the portal (pid file beside the configuration)"
        SYSTEMD = "systemd", "systemd unit"
        DOCKER = "docker", "Docker container"
        COMMANDS = "commands", "Start and stop commands"
        NONE = "none", "None: the portal cannot start or stop this Orthanc"

    class IndexBackend(models.TextChoices):
        SQLITE = "sqlite", "SQLite (built in)"
        POSTGRESQL = "postgresql", "PostgreSQL (orthanc-postgresql plugin)"

    class StorageAccess(models.TextChoices):
        ALWAYS = "Always", "Always"
        ANSWERS = "Answers", "Answers"
        NEVER = "Never", "Never"

    class WorklistServer(models.TextChoices):
        INDEXED = "indexed", "Portal worklist server (Python plugin): reads each file once"
        CLASSIC = "classic", "Orthanc's worklists plugin: reads every file at every query"

    class CheckState(models.TextChoices):
        UP = "up", "up"
        AUTH = "auth", "authentication failed"
        DOWN = "down", "unreachable"

    class Encoding(models.TextChoices):
        AUTO = "auto", "Automatic: what every worklist station reads (recommended)"
        UTF8 = "Utf8", "UTF-8"
        LATIN1 = "Latin1", "Latin-1 (Orthanc's own default)"
        ASCII = "Ascii", "ASCII"

    # --- identity and how the portal reaches it
    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[single_line],
        help_text="Also Orthanc's own Name, shown in its explorer.",
    )
    slug = models.SlugField(
        max_length=50, unique=True, help_text="Short name for URLs and the task queue (deployment.&lt;slug&gt;)."
    )
    orthanc_url = models.URLField(
        "Orthanc REST URL", help_text="How the portal reaches Orthanc's REST API, e.g. http://127.0.0.1:8042."
    )
    service_username = models.CharField(
        max_length=64,
        default="portal",
        validators=[single_line],
        help_text="The portal's own admin account on this Orthanc.",
    )
    service_password = EncryptedTextField(
        blank=True, validators=[single_line], help_text="Stored encrypted; never shown again."
    )
    config_dir = models.CharField(
        "configuration folder",
        max_length=255,
        validators=[absolute_path],
        help_text="Folder of Orthanc's *.json files, on the Orthanc host.",
    )
    storage_dir = models.CharField("storage folder", max_length=255, blank=True, validators=[absolute_path])
    index_dir = models.CharField(
        "index folder",
        max_length=255,
        blank=True,
        validators=[absolute_path],
        help_text="Where the SQLite index lives. Empty: the storage folder.",
    )

    # --- HTTP
    http_port = models.PositiveIntegerField(
        "HTTP port", default=8042, validators=port_validators, help_text="Orthanc's REST API and web interface."
    )
    remote_access_allowed = models.BooleanField(
        default=False,
        help_text="Off: only this machine can reach the REST API. On exposes every study to the network; "
        "the portal only allows it together with authentication, and HTTPS should be on too.",
    )
    authentication_enabled = models.BooleanField(
        default=True,
        help_text="Every HTTP request must carry a registered user's password. Off means anyone who reaches "
        "the port can read, change and delete patients.",
    )
    ssl_enabled = models.BooleanField(
        "HTTPS",
        default=False,
        help_text="Encrypts the REST API. Without it, passwords and images cross the network in clear text.",
    )
    ssl_certificate = models.CharField(
        "HTTPS certificate",
        max_length=255,
        blank=True,
        validators=[absolute_path],
        help_text="PEM file holding the certificate and its private key, on the Orthanc host.",
    )
    https_verify_peers = models.BooleanField(
        "verify HTTPS peers",
        default=True,
        help_text="Orthanc checks the certificates of servers it calls. Off allows a man in the middle.",
    )
    orthanc_explorer_enabled = models.BooleanField(
        default=True, help_text="Orthanc's built-in web interface. Turn it off on a server reachable from the network."
    )
    webdav_enabled = models.BooleanField(
        "WebDAV",
        default=False,
        help_text="Mounts the archive as a network drive: another door to every image. Keep off.",
    )
    execute_lua_enabled = models.BooleanField(
        "allow Lua over REST",
        default=False,
        help_text="Lets /tools/execute-script run any Lua code sent over HTTP: full control of the server. Keep off.",
    )
    rest_api_write_to_file_system_enabled = models.BooleanField(
        "REST API may write files",
        default=False,
        help_text="Lets the REST API write files anywhere Orthanc may write. Keep off.",
    )

    # --- DICOM
    dicom_server_enabled = models.BooleanField(
        "DICOM server", default=True, help_text="The ultrasound machines talk to Orthanc through DICOM."
    )
    dicom_aet = models.CharField(
        "DICOM AE title",
        max_length=16,
        default="ORTHANC",
        validators=[aet_validator],
        help_text="The name the machines call Orthanc by.",
    )
    dicom_port = models.PositiveIntegerField("DICOM port", default=4242, validators=port_validators)
    dicom_check_called_aet = models.BooleanField(
        "check the called AE title",
        default=True,
        help_text="Refuse associations addressed to another AE title: catches misconfigured machines.",
    )
    dicom_check_modality_host = models.BooleanField(
        "check modality addresses",
        default=True,
        help_text="A known AE title is accepted only from its registered IP address, so another device "
        "cannot borrow a machine's name. Modality hosts must then be IP addresses.",
    )
    dicom_always_allow_echo = models.BooleanField(
        "any device may C-ECHO", default=False, help_text="Off: only registered modalities with Echo allowed."
    )
    dicom_always_allow_store = models.BooleanField(
        "any device may C-STORE",
        default=False,
        help_text="On: any device on the network can push images into the archive. Orthanc's own default is on.",
    )
    dicom_always_allow_find = models.BooleanField(
        "any device may C-FIND", default=False, help_text="On: any device can search the patients of the archive."
    )
    dicom_always_allow_find_worklist = models.BooleanField(
        "any device may query the worklist",
        default=False,
        help_text="On: any device can read the day's scheduled patients.",
    )
    dicom_always_allow_get = models.BooleanField(
        "any device may C-GET", default=False, help_text="On: any device can download any study."
    )
    dicom_always_allow_move = models.BooleanField(
        "any device may C-MOVE", default=False, help_text="On: any device can have studies sent to a known modality."
    )
    limit_find_results = models.PositiveIntegerField(
        default=100,
        validators=[MaxValueValidator(100000)],
        help_text="Most answers to one C-FIND or /tools/find. 0 means no limit: one broad query can then "
        "stall the server and lists the whole archive.",
    )
    limit_find_instances = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(100000)], help_text="The same limit for instance-level queries."
    )
    overwrite_instances = models.BooleanField(
        default=False, help_text="On: a device re-sending an image replaces the stored one, silently."
    )
    storage_compression = models.BooleanField(default=False, help_text="Compress stored files (saves disk, costs CPU).")
    concurrent_jobs = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(32)], help_text="Jobs Orthanc runs at once; 0 means one per CPU core."
    )
    deidentify_logs = models.BooleanField(
        default=True, help_text="Keeps patient names and IDs out of Orthanc's log files."
    )
    deidentify_logs_dicom_version = models.CharField(
        max_length=8,
        default="2021b",
        # Every edition some supported Orthanc accepts; the form offers those of the deployment's version.
        choices=[("2008", "2008"), ("2017c", "2017c"), ("2021b", "2021b"), ("2023b", "2023b")],
        help_text="Which edition of the DICOM de-identification rules the logs follow.",
    )
    default_encoding = models.CharField(
        "worklist character set",
        max_length=16,
        choices=Encoding.choices,
        default=Encoding.AUTO,
        help_text="Orthanc's DefaultEncoding: every worklist answer leaves in it, whatever the machine asks. "
        "Automatic sends UTF-8 while every worklist station reads UTF-8 and Latin-1 as soon as one shows only "
        "Latin-1; a name a station cannot receive intact is refused when it is scheduled.",
    )
    tcp_no_delay = models.BooleanField(
        "TCP no delay", default=True, help_text="Sends small DICOM packets at once: faster queries."
    )
    keep_alive = models.BooleanField(default=True, help_text="Reuses HTTP connections.")
    storage_access_on_find = models.CharField(
        max_length=8,
        choices=StorageAccess.choices,
        default=StorageAccess.ANSWERS,
        help_text="Whether a C-FIND may read files from disk; Answers reads only for the matches.",
    )
    save_jobs = models.BooleanField(default=True, help_text="Keep the jobs list across restarts.")

    # --- plugins
    dicomweb_enabled = models.BooleanField(
        "DICOMweb plugin", default=False, help_text="Adds the DICOMweb API (needed by some web viewers)."
    )
    dicomweb_root = models.CharField(
        "DICOMweb root", max_length=64, default="/dicom-web/", validators=[url_path_validator]
    )
    worklists_enabled = models.BooleanField(
        "worklist plugin", default=True, help_text="Serves the scheduled patients to the ultrasound machines."
    )
    worklist_server = models.CharField(
        "worklist server",
        max_length=16,
        choices=WorklistServer.choices,
        default=WorklistServer.INDEXED,
        help_text="Both serve the same .wl files and Orthanc's own matcher picks the answers. The portal's "
        "server keeps the files in memory, so a full folder still answers quickly; it needs Orthanc's Python "
        "plugin (Debian package orthanc-python).",
    )
    worklists_dir = models.CharField(
        "worklist folder",
        max_length=255,
        blank=True,
        validators=[absolute_path],
        help_text="Folder of the .wl files. Empty: beside the storage.",
    )

    # --- index database
    index_backend = models.CharField(max_length=16, choices=IndexBackend.choices, default=IndexBackend.SQLITE)
    pg_host = models.CharField("PostgreSQL host", max_length=255, blank=True, validators=[single_line])
    pg_port = models.PositiveIntegerField("PostgreSQL port", default=5432, validators=port_validators)
    pg_database = models.CharField("PostgreSQL database", max_length=63, blank=True, validators=[single_line])
    pg_user = models.CharField("PostgreSQL user", max_length=63, blank=True, validators=[single_line])
    pg_password = EncryptedTextField("PostgreSQL password", blank=True, validators=[single_line])
    pg_tls = models.BooleanField(
        "PostgreSQL over TLS", default=True, help_text="Encrypts the index connection when the database is remote."
    )

    # --- service control
    service_kind = models.CharField(max_length=16, choices=ServiceKind.choices, default=ServiceKind.NONE)
    service_name = models.CharField(
        max_length=100,
        blank=True,
        validators=[single_line],
        help_text="The systemd unit or Docker container (for those kinds).",
    )
    start_command = models.CharField(
        max_length=500,
        blank=True,
        validators=[single_line],
        help_text="For start/stop commands: split like a shell would, run without one.",
    )
    stop_command = models.CharField(max_length=500, blank=True, validators=[single_line])

    # Keys of an imported configuration that the portal does not model, written back unchanged.
    extra_config = models.JSONField(default=dict, blank=True)

    # What the last status check saw (deployments.status, run by the periodic task; pages show these).
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_version = models.CharField(max_length=32, blank=True)
    last_state = models.CharField(max_length=8, choices=CheckState.choices, blank=True)  # blank: never checked
    last_statistics = models.JSONField(default=dict, blank=True)  # Orthanc's /statistics when last up
    # The site's worker answered a heartbeat (deployments/agents.py): the site is reachable.
    agent_seen_at = models.DateTimeField(null=True, blank=True)
    agent_host = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("deployments:detail", args=[self.slug])

    @property
    def queue(self):
        from portal.celery import deployment_queue

        return deployment_queue(self.slug)

    def worklist_encoding(self, stations=None) -> str:
        """The DefaultEncoding Orthanc is given (the setting, or the automatic choice)."""
        if stations is None:
            stations = self.modalities.all() if self.pk else []
        return resolve(self.default_encoding, [s.charset for s in stations if s.allow_find_worklist])

    @property
    def worklist_folder(self):
        base = self.storage_dir.rstrip("/") or self.config_dir.rstrip("/") + "/.."
        return self.worklists_dir or f"{base}/../worklists"
