"""Findings, the password rules shared with the importer, and the checks of the saved settings
(pure) and of the secret files' modes."""

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from django.urls import NoReverseMatch, reverse

from ..render import LUA_FILE, SECRET_FILES, WORKLIST_SCRIPT
from ..versions import OrthancVersion

SEVERITIES = ["critical", "high", "medium", "low", "info"]
BADGES = {
    "critical": "text-bg-danger",
    "high": "text-bg-warning",
    "medium": "text-bg-info",
    "low": "text-bg-secondary",
    "info": "text-bg-light",
}

# Passwords that ship in examples, tutorials and Docker images; matched case-insensitively.
WEAK_PASSWORDS = {
    "orthanc",
    "admin",
    "alice",
    "bob",
    "change-me",
    "changeme",
    "password",
    "passw0rd",
    "secret",
    "123456",
    "12345678",
    "1234",
    "qwerty",
    "letmein",
    "root",
    "guest",
    "user",
    "test",
    "demo",
    "alicepassword",
    "bobpassword",
    "orthancpassword",
    "pacs",
    "dicom",
    "welcome",
}
MIN_PASSWORD_LENGTH = 8
# Pairs tried against the live server: the defaults of the Orthanc Book, Docker images and the
# seed's Ansible role.
DEFAULT_CREDENTIALS = [
    ("orthanc", "orthanc"),
    ("admin", "admin"),
    ("alice", "bob"),
    ("bob", "alice"),
    ("admin", "orthanc"),
    ("orthanc", "password"),
    ("admin", "password"),
    ("admin", "change-me"),
    ("alice", "alicePassword"),
    ("demo", "demo"),
    ("user", "user"),
    ("test", "test"),
]
HARMLESS_SCRIPT = "print('portal security audit: this script does nothing')"
# Orthanc runs these as code: whoever can change one runs code inside Orthanc.
CODE_FILES = (LUA_FILE, WORKLIST_SCRIPT)


def is_weak_password(username: str, password: str) -> bool:
    low = password.lower()
    return (
        low in WEAK_PASSWORDS or len(password) < MIN_PASSWORD_LENGTH or (len(username) >= 3 and username.lower() in low)
    )


@dataclass
class Finding:
    id: str
    severity: str
    what: str
    why: str
    field: str | None = None  # the deployment form field that fixes it
    part: str = "settings"  # settings, files or live
    url: str = ""
    page: tuple | None = None  # (URL name, args) of the page that fixes it, when it is not a setting

    @property
    def badge(self):
        return BADGES[self.severity]

    def link(self, slug):
        try:
            if self.field:
                self.url = reverse("deployments:edit", args=[slug]) + f"#field-{self.field}"
            elif self.page:
                self.url = reverse(self.page[0], args=self.page[1])
        except NoReverseMatch:  # a page of another feature that is not wired (yet)
            self.url = ""
        return self

    def __str__(self):
        text = f"{self.severity.upper():8} {self.id}: {self.what} — {self.why}"
        return text + (f" Fix: {self.url}" if self.url else "")


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- saved settings (pure)


def settings_findings(d, users=(), modalities=()) -> list[Finding]:
    f = []
    if d.remote_access_allowed and not d.authentication_enabled:
        f.append(
            Finding(
                "remote-without-authentication",
                "critical",
                "Remote access is on and authentication is off.",
                "Anyone who reaches the HTTP port can read, change and delete every study without a password.",
                "authentication_enabled",
            )
        )
    elif not d.authentication_enabled:
        f.append(
            Finding(
                "authentication-off",
                "medium",
                "Authentication is off.",
                "Orthanc then believes whatever username a client sends, so the role filter cannot tell an "
                "administrator from anybody else on this machine.",
                "authentication_enabled",
            )
        )
    if d.remote_access_allowed and not d.ssl_enabled:
        f.append(
            Finding(
                "remote-without-https",
                "high",
                "Remote access is on without HTTPS.",
                "Passwords (HTTP Basic) and images cross the network in clear text, even on the clinic's own LAN.",
                "ssl_enabled",
            )
        )
    if d.remote_access_allowed and d.orthanc_explorer_enabled:
        f.append(
            Finding(
                "explorer-on-remote",
                "medium",
                "Orthanc Explorer is on while remote access is on.",
                "The built-in web interface has no protection against cross-site request forgery; the guide "
                "says to turn it off on a server reachable from the network.",
                "orthanc_explorer_enabled",
            )
        )
    if d.execute_lua_enabled:
        f.append(
            Finding(
                "execute-lua-enabled",
                "critical",
                "/tools/execute-script is enabled (ExecuteLuaEnabled).",
                "Whoever can POST to it runs any Lua code, and from there any system command, as the Orthanc user.",
                "execute_lua_enabled",
            )
        )
    if d.rest_api_write_to_file_system_enabled:
        f.append(
            Finding(
                "rest-writes-files",
                "high",
                "The REST API may write to the file system.",
                "Routes like /instances/…/export can then overwrite files Orthanc can write, a path to "
                "running commands.",
                "rest_api_write_to_file_system_enabled",
            )
        )
    if d.webdav_enabled:
        f.append(
            Finding(
                "webdav-enabled",
                "medium",
                "The WebDAV share is on.",
                "It is another door to every image, outside the role filter's usual routes.",
                "webdav_enabled",
            )
        )
    if not d.https_verify_peers:
        f.append(
            Finding(
                "https-peers-unverified",
                "medium",
                "Orthanc does not verify the certificates of servers it calls.",
                "Outgoing HTTPS (DICOMweb, peers) can then be intercepted by a man in the middle.",
                "https_verify_peers",
            )
        )
    f += _dicom_findings(d, modalities)
    for name, label in (("limit_find_results", "LimitFindResults"), ("limit_find_instances", "LimitFindInstances")):
        if getattr(d, name) == 0:
            f.append(
                Finding(
                    f"{name.replace('_', '-')}-zero",
                    "medium",
                    f"{label} is 0 (no limit).",
                    "One broad query lists the whole archive and many of them can make Orthanc unresponsive; "
                    "about 100 is a good compromise.",
                    name,
                )
            )
    if d.overwrite_instances:
        f.append(
            Finding(
                "overwrite-instances",
                "low",
                "OverwriteInstances is on.",
                "A device that re-sends an image with the same UID silently replaces the stored one.",
                "overwrite_instances",
            )
        )
    for user in users:
        if user.is_effective() and is_weak_password(user.username, user.password):
            # Critical as in the import report and the live check: one fact, one severity, so that
            # an offline audit (--no-live, or Orthanc unreachable) fails a cron job too.
            f.append(
                Finding(
                    f"weak-password-{user.username}",
                    "critical",
                    f"Orthanc user {user.username} has a default or weak password.",
                    "Default passwords are the first ones an attacker tries; rotate it (the portal generates one).",
                    page=("deployments:user_edit", [d.slug, user.pk]) if user.pk else None,
                )
            )
    f += _release_findings(d)
    if d.index_backend == d.IndexBackend.POSTGRESQL and not d.pg_tls and not _is_loopback(d.pg_host):
        f.append(
            Finding(
                "postgresql-without-tls",
                "medium",
                f"The index database on {d.pg_host} is reached without TLS.",
                "The index holds patient names and IDs; they would cross the network in clear text.",
                "pg_tls",
            )
        )
    return f


def _release_findings(d):
    """Saved values that the Orthanc release last seen on the deployment refuses at start."""
    version = OrthancVersion.of(d.last_version)
    refusal = version.refusal("DeidentifyLogsDicomVersion", d.deidentify_logs_dicom_version)
    if not (version.known and refusal):
        return []
    return [
        Finding(
            "deidentify-version-refused",
            "high",
            f"DeidentifyLogsDicomVersion is {d.deidentify_logs_dicom_version}: {refusal}.",
            "The next push would fail and be rolled back; choose an edition this release knows.",
            "deidentify_logs_dicom_version",
        )
    ]


def _is_loopback(host):
    return host in ("", "localhost") or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


def _dicom_findings(d, modalities):
    if not d.dicom_server_enabled:
        return []
    f = []
    unknown = [
        ("store", "high", "push images into the archive, filling the disk or mixing in foreign patients"),
        ("echo", "low", "find out that a DICOM server answers here and under which AE title"),
        ("find", "high", "search the archive's patients"),
        ("find_worklist", "medium", "read the day's scheduled patients"),
        ("get", "high", "download any study"),
        ("move", "high", "have studies sent to any known modality"),
    ]
    for op, severity, risk in unknown:
        name = f"dicom_always_allow_{op}"
        if getattr(d, name):
            verb = "query the worklist" if op == "find_worklist" else f"C-{op.upper()}"
            f.append(
                Finding(
                    f"unknown-modalities-{op.replace('_', '-')}",
                    severity,
                    f"Unknown DICOM devices may {verb} ({''.join(w.title() for w in name.split('_'))}).",
                    f"Any device on the network that knows the AE title can {risk}; list the machines as "
                    "modalities instead.",
                    name,
                )
            )
    if d.dicom_check_modality_host:
        named = [m for m in modalities if not _is_ip(m.host)]
        if named:
            f.append(
                Finding(
                    "modality-hostnames",
                    "medium",
                    "Modalities with a hostname while host checking is on: "
                    + ", ".join(f"{m.name} ({m.host})" for m in named),
                    "Orthanc compares the caller's IP address with the host as written, so these machines are refused; "
                    "give their IP addresses.",
                    "dicom_check_modality_host",
                )
            )
    if not d.dicom_check_called_aet:
        f.append(
            Finding(
                "called-aet-unchecked",
                "low",
                "Orthanc answers associations addressed to any AE title.",
                "Checking the called AE title catches machines configured for another server.",
                "dicom_check_called_aet",
            )
        )
    return f


# ---------------------------------------------------------------- files


def _modes(folder, names):
    """(name, permission bits) of the files that exist."""
    for name in names:
        try:
            yield name, stat.S_IMODE(os.stat(folder / name).st_mode)
        except FileNotFoundError:
            continue


def file_findings(d) -> list[Finding]:
    folder = Path(d.config_dir)
    if not folder.is_dir():
        return [
            Finding(
                "files-not-checked",
                "info",
                f"The configuration folder {folder} is not visible from here.",
                "File permissions can only be checked on the Orthanc host (run the audit from its worker).",
                part="files",
            )
        ]
    f = []
    for name, mode in _modes(folder, sorted(SECRET_FILES)):
        if mode & 0o077:
            f.append(
                Finding(
                    f"{name.split('.')[0]}-file-readable",
                    "critical",
                    f"{folder / name} has mode {mode:04o}: other accounts may read it.",
                    "It holds passwords in plain text; only the account that runs Orthanc may read it (mode 0600). "
                    "The portal writes it 0600 at the next push.",
                    None,
                    part="files",
                )
            )
    for name, mode in _modes(folder, CODE_FILES):
        if mode & 0o022:
            f.append(
                Finding(
                    f"{name.split('.')[0]}-file-writable",
                    "critical",
                    f"{folder / name} has mode {mode:04o}: other accounts may change it.",
                    "Orthanc runs this file as code, with access to every study. Only its owner may write it "
                    "(mode 0644). The portal writes it 0644 at the next push.",
                    None,
                    part="files",
                )
            )
    return f
