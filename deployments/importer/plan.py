"""Mapping: a merged Orthanc configuration → an ImportPlan (pure: nothing is written)."""

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ValidationError

from ..models import Deployment, Modality, OrthancUser
from ..render import PLUGINS
from ..security import is_weak_password
from ..versions import DEFAULT_SINCE, OLDEST_SUPPORTED, VALUE_SINCE, OrthancVersion, label
from .luafilter import read_filter
from .parse import ConfigImportError

# Orthanc key → (model field, JSON type, Orthanc's default when the key is absent). A key of
# versions.DEFAULT_SINCE takes the default of the Orthanc release the import is for instead.
SETTINGS = {
    "HttpPort": ("http_port", int, 8042),
    "RemoteAccessAllowed": ("remote_access_allowed", bool, False),
    "SslEnabled": ("ssl_enabled", bool, False),
    "HttpsVerifyPeers": ("https_verify_peers", bool, True),
    "OrthancExplorerEnabled": ("orthanc_explorer_enabled", bool, True),
    "WebDavEnabled": ("webdav_enabled", bool, True),
    "ExecuteLuaEnabled": ("execute_lua_enabled", bool, False),
    "RestApiWriteToFileSystemEnabled": ("rest_api_write_to_file_system_enabled", bool, False),
    "DicomServerEnabled": ("dicom_server_enabled", bool, True),
    "DicomAet": ("dicom_aet", str, "ORTHANC"),
    "DicomPort": ("dicom_port", int, 4242),
    "DicomCheckCalledAet": ("dicom_check_called_aet", bool, False),
    "DicomCheckModalityHost": ("dicom_check_modality_host", bool, False),
    "DicomAlwaysAllowEcho": ("dicom_always_allow_echo", bool, True),
    "DicomAlwaysAllowStore": ("dicom_always_allow_store", bool, True),
    "DicomAlwaysAllowFind": ("dicom_always_allow_find", bool, False),
    "DicomAlwaysAllowFindWorklist": ("dicom_always_allow_find_worklist", bool, False),
    "DicomAlwaysAllowGet": ("dicom_always_allow_get", bool, False),
    "DicomAlwaysAllowMove": ("dicom_always_allow_move", bool, False),
    "LimitFindResults": ("limit_find_results", int, 0),
    "LimitFindInstances": ("limit_find_instances", int, 0),
    "OverwriteInstances": ("overwrite_instances", bool, False),
    "StorageCompression": ("storage_compression", bool, False),
    "ConcurrentJobs": ("concurrent_jobs", int, 2),
    "DeidentifyLogs": ("deidentify_logs", bool, True),
    "DeidentifyLogsDicomVersion": ("deidentify_logs_dicom_version", str, "2021b"),
    "DefaultEncoding": ("default_encoding", str, "Latin1"),
    "TcpNoDelay": ("tcp_no_delay", bool, True),
    "KeepAlive": ("keep_alive", bool, True),
    "StorageAccessOnFind": ("storage_access_on_find", str, "Always"),
    "SaveJobs": ("save_jobs", bool, True),
}
# Keys without an Orthanc default the portal could use: absent, the deployment keeps its value.
OPTIONAL = {"Name": "name", "StorageDirectory": "storage_dir", "IndexDirectory": "index_dir"}
# Keys the renderer writes from its own state: the imported values are reported, not kept.
PORTAL_OWNED = {"Plugins", "LuaScripts", "RegisteredUsers", "PythonScript", "PythonVerbose"}
SECTIONS = {"Worklists", "DicomWeb", "PostgreSQL", "DicomModalities"}
HANDLED = {"AuthenticationEnabled", "SslCertificate"}
MODALITY_FLAGS = {
    "AllowEcho": "allow_echo",
    "AllowFind": "allow_find",
    "AllowFindWorklist": "allow_find_worklist",
    "AllowGet": "allow_get",
    "AllowMove": "allow_move",
    "AllowStore": "allow_store",
    "AllowStorageCommitment": "allow_storage_commitment",
}
MODALITY_KEYS = {"AET", "Host", "Port", "Manufacturer", "LocalAet", "Timeout", *MODALITY_FLAGS}
PG_KEYS = {"EnableIndex", "EnableStorage", "Host", "Port", "Database", "Username", "Password", "EnableSsl"}


@dataclass
class Line:
    level: str  # imported, default, kept, replaced, decide, warning, critical, note
    text: str

    def __str__(self):
        return f"{self.level}: {self.text}"


@dataclass
class ImportPlan:
    settings: dict = field(default_factory=dict)  # model field → value
    extra: dict = field(default_factory=dict)
    users: dict = field(default_factory=dict)  # username → {password, role, is_active}
    modalities: list = field(default_factory=list)  # dicts of Modality fields
    lines: list = field(default_factory=list)

    def add(self, level, text):
        self.lines.append(Line(level, text))

    @property
    def critical(self):
        return [line for line in self.lines if line.level == "critical"]


def _typed(key, value, kind, secret=False):
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        want = {
            bool: "true or false",
            int: "a whole number",
            str: "a string",
            dict: "an object { ... }",
            list: "a list [ ... ]",
        }[kind]
        found = "another kind of value (not shown: a password)" if secret else json.dumps(value)
        raise ConfigImportError(f"{key}: expected {want}, found {found}")
    return value


def _check_field(model, name, value, key, secret=False):
    """The model field's own checks: the rules the forms apply, from the same validators."""
    try:
        return model._meta.get_field(name).clean(value, None)
    except ValidationError as exc:
        shown = "(not shown: a password)" if secret else _shown(value)
        raise ConfigImportError(f"{key}: {shown}: {' '.join(exc.messages)}") from None


def _shown(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def loaded_plugins(entries) -> tuple[set[str], list[str]]:
    """Plugin library names that a Plugins list loads (a folder loads every library in it)."""
    names, notes = set(), []
    for entry in entries:
        path = Path(_typed("Plugins", entry, str))
        if path.suffix in (".so", ".dll", ".dylib"):
            names.add(path.name)
        elif path.is_dir():
            names |= {p.name for p in path.iterdir() if p.suffix == ".so"}
        else:
            names |= set(PLUGINS.values())  # a folder on another host: assume the usual plugins
            notes.append(f"plugin folder {entry} is not visible here; assumed to hold the usual plugins")
    return names, notes


def plan_import(config: dict, deployment, origin=None, version=None, scripts=None) -> ImportPlan:
    """The pure mapping from a merged configuration to what the deployment will hold.

    ``version`` is the Orthanc release the configuration is for (its text, as in /system);
    by default the one the portal last saw on the deployment. ``scripts`` maps LuaScripts entries
    to their text (missing or None: not readable here), from which the users' roles are read.
    """
    plan = ImportPlan()
    origin = origin or {}
    version = OrthancVersion.of(deployment.last_version if version is None else version)
    _version_note(plan, version)

    def where(key):
        return f" ({origin[key]})" if key in origin else ""

    for key, (name, kind, default) in SETTINGS.items():
        whose = "Orthanc's default"
        if key in DEFAULT_SINCE:
            default = version.default(key)
            whose = f"the default of Orthanc {version if version.known else label(OLDEST_SUPPORTED)}"
        if key in config:
            value = _check_field(Deployment, name, _typed(key, config[key], kind), key)
            plan.add("imported", f"{key} = {json.dumps(value)}{where(key)}")
            _check_release(plan, version, key, value)
        else:
            value = _check_field(Deployment, name, default, key)
            plan.add("default", f"{key} not set: {whose} {json.dumps(default)} imported")
        plan.settings[name] = value
    for key, name in OPTIONAL.items():
        if key in config:
            value = _typed(key, config[key], str)
            if name != "name":
                value = _absolute(plan, key, value, deployment)
            plan.settings[name] = _check_field(Deployment, name, value, key)
            plan.add("imported", f"{key} = {json.dumps(config[key])}{where(key)}")
    if plan.settings["http_port"] == plan.settings["dicom_port"]:
        raise ConfigImportError(
            f"HttpPort and DicomPort are both {plan.settings['http_port']}: Orthanc cannot start so"
        )
    _authentication(config, plan)
    _ssl(config, plan, deployment)
    plugins, notes = loaded_plugins(_typed("Plugins", config.get("Plugins", []), list))
    for note in notes:
        plan.add("warning", note)
    _worklists(config, plan, plugins, deployment)
    _dicomweb(config, plan, plugins)
    _postgresql(config, plan, plugins)
    _users(config, plan, deployment, _request_filter(config, plan, scripts))
    _modalities(config, plan)
    _portal_owned(config, plan, plugins)
    rest = sorted(config.keys() - SETTINGS.keys() - OPTIONAL.keys() - PORTAL_OWNED - SECTIONS - HANDLED)
    by_file = {}
    for key in rest:
        plan.extra[key] = config[key]
        by_file.setdefault(origin.get(key, ""), []).append(key)
    for name, keys in sorted(by_file.items()):
        source = f" of {name}" if name else ""
        plan.add(
            "kept", f"{len(keys)} key(s){source} not modelled by the portal, written back unchanged: {', '.join(keys)}"
        )
    return plan


def _version_note(plan, version):
    if version.known:
        plan.add("note", f"read as a configuration of Orthanc {version}: its defaults fill the keys that are absent")
    else:
        plan.add(
            "note",
            f"Orthanc's version is not known (the portal has not reached it yet): the defaults of Orthanc "
            f"{label(OLDEST_SUPPORTED)}, the oldest supported release, fill the keys that are absent",
        )


def _check_release(plan, version, key, value):
    """A value the release refuses stops Orthanc at start: refused here when the release is known."""
    since = VALUE_SINCE.get(key, {}).get(value)
    if since is None or version.at_least(since):
        return
    if version.known:
        raise ConfigImportError(f"{key}: {json.dumps(value)}: {version.refusal(key, value)}")
    plan.add("warning", f"{key} = {json.dumps(value)} needs Orthanc {label(since)} or later")


def _authentication(config, plan):
    if "AuthenticationEnabled" in config:
        value = _typed("AuthenticationEnabled", config["AuthenticationEnabled"], bool)
        plan.add("imported", f"AuthenticationEnabled = {json.dumps(value)}")
    else:
        # Since Orthanc 1.5.8 an absent AuthenticationEnabled follows RemoteAccessAllowed.
        value = plan.settings["remote_access_allowed"]
        plan.add(
            "default", f"AuthenticationEnabled not set: follows RemoteAccessAllowed, imported as {json.dumps(value)}"
        )
    plan.settings["authentication_enabled"] = value
    if not value:
        plan.add(
            "warning",
            "authentication is off: Orthanc then believes any username a client sends, so the role filter "
            "cannot keep anyone out; turn it on before the first push",
        )
    if plan.settings["remote_access_allowed"] and not value:
        plan.add("critical", "remote access is on without authentication: anyone on the network can read and delete")


def _ssl(config, plan, deployment):
    if "SslCertificate" not in config:
        return
    cert = _typed("SslCertificate", config["SslCertificate"], str)
    path = _absolute(plan, "SslCertificate", cert, deployment)
    plan.settings["ssl_certificate"] = _check_field(Deployment, "ssl_certificate", path, "SslCertificate")
    if plan.settings["ssl_enabled"]:
        plan.add("imported", f"SslCertificate = {json.dumps(cert)}")
    else:
        # The renderer writes SslCertificate only with HTTPS on; keep it so the file round-trips.
        plan.extra["SslCertificate"] = cert
        plan.add(
            "kept", f"SslCertificate = {json.dumps(cert)} (HTTPS is off; also copied to the HTTPS certificate field)"
        )


def _absolute(plan, key, value, deployment):
    """Orthanc reads a relative path from its configuration folder; the portal stores absolute ones."""
    if not value or value.startswith("/"):
        return value
    resolved = os.path.normpath(os.path.join(deployment.config_dir, value))
    plan.add("imported", f"{key}: relative path {json.dumps(value)} read as {resolved}")
    return resolved


def _section(config, key):
    return _typed(key, config[key], dict) if key in config else None


def _worklists(config, plan, plugins, deployment):
    section = _section(config, "Worklists")
    enabled = bool(section and _typed("Worklists.Enable", section.get("Enable", False), bool))
    active = enabled and PLUGINS["worklists"] in plugins
    plan.settings["worklists_enabled"] = active
    if not active:
        if section is not None:
            plan.extra["Worklists"] = section
            plan.add("kept", "Worklists: the worklist plugin is not active; the section is kept unchanged")
        else:
            plan.add("default", "Worklists not set: the worklist plugin stays off")
        return
    folder = _absolute(
        plan, "Worklists.Database", _typed("Worklists.Database", section.get("Database", ""), str), deployment
    )
    plan.settings["worklists_dir"] = _check_field(Deployment, "worklists_dir", folder, "Worklists.Database")
    plan.add("imported", f"Worklists: plugin on, folder {json.dumps(folder)}")
    _kept_subkeys(plan, "Worklists", section, {"Enable", "Database"})
    if "Worklists" in plan.extra:
        # Options such as FilterIssuerAet belong to the classic plugin; the portal's server has none.
        plan.settings["worklist_server"] = Deployment.WorklistServer.CLASSIC
        options = ", ".join(sorted(plan.extra["Worklists"]))
        plan.add("imported", f"Worklists: {options} need Orthanc's classic worklists plugin, which stays in use")
    else:
        plan.settings["worklist_server"] = Deployment.WorklistServer.INDEXED
        plan.add("imported", "Worklists: served by the portal's worklist server (Orthanc's Python plugin)")


def _dicomweb(config, plan, plugins):
    section = _section(config, "DicomWeb")
    loaded = PLUGINS["dicomweb"] in plugins
    enabled = loaded and (section is None or _typed("DicomWeb.Enable", section.get("Enable", True), bool))
    plan.settings["dicomweb_enabled"] = enabled
    if not enabled:
        if section is not None:
            plan.extra["DicomWeb"] = section
            plan.add("kept", "DicomWeb: the DICOMweb plugin is not active; the section is kept unchanged")
        return
    root = _typed("DicomWeb.Root", (section or {}).get("Root", "/dicom-web/"), str)
    plan.settings["dicomweb_root"] = _check_field(Deployment, "dicomweb_root", root, "DicomWeb.Root")
    plan.add("imported", f"DicomWeb: plugin on, root {json.dumps(root)}")
    _kept_subkeys(plan, "DicomWeb", section or {}, {"Enable", "Root"})


def _kept_subkeys(plan, key, section, modelled):
    rest = {k: v for k, v in section.items() if k not in modelled}
    if rest:
        plan.extra[key] = rest
        plan.add("kept", f"{key}: {', '.join(sorted(rest))} not modelled, kept for the renderer to merge back")


def _postgresql(config, plan, plugins):
    section = _section(config, "PostgreSQL")
    index = bool(section and _typed("PostgreSQL.EnableIndex", section.get("EnableIndex", False), bool))
    if not (index and PLUGINS["postgresql"] in plugins):
        plan.settings["index_backend"] = Deployment.IndexBackend.SQLITE
        if section is not None:
            plan.extra["PostgreSQL"] = section
            plan.add("kept", "PostgreSQL: the index is not in PostgreSQL; the section is kept unchanged")
        return
    if section.get("EnableStorage"):
        raise ConfigImportError(
            "PostgreSQL.EnableStorage is true: the portal supports the PostgreSQL index with DICOM files on disk only"
        )
    values = dict(section)
    if "ConnectionUri" in values:
        uri = urlsplit(_typed("PostgreSQL.ConnectionUri", values.pop("ConnectionUri"), str))
        try:
            port = uri.port or 5432
        except ValueError as exc:  # e.g. postgresql://host:abc/db
            raise ConfigImportError(
                f"PostgreSQL.ConnectionUri: the port is not a number from 1 to 65535 ({exc})"
            ) from None
        values.update(
            Host=uri.hostname or "",
            Port=port,
            Database=uri.path.lstrip("/"),
            Username=unquote(uri.username or ""),
            Password=unquote(uri.password or ""),
        )
    for key, name, kind, default in (
        ("Host", "pg_host", str, "localhost"),
        ("Port", "pg_port", int, 5432),
        ("Database", "pg_database", str, "orthanc"),
        ("Username", "pg_user", str, "orthanc"),
        ("Password", "pg_password", str, ""),
        ("EnableSsl", "pg_tls", bool, False),
    ):
        value = _typed(f"PostgreSQL.{key}", values.get(key, default), kind, secret=key == "Password")
        plan.settings[name] = _check_field(Deployment, name, value, f"PostgreSQL.{key}", secret=key == "Password")
    plan.settings["index_backend"] = Deployment.IndexBackend.POSTGRESQL
    plan.add("imported", f"PostgreSQL index on {plan.settings['pg_host']}:{plan.settings['pg_port']}")
    # Not kept in extra_config: that goes to orthanc.json, and PostgreSQL lives in postgresql.json.
    dropped = sorted(set(values) - PG_KEYS)
    if dropped:
        plan.add("warning", f"PostgreSQL: {', '.join(dropped)} not modelled by the portal, not written back")


def _request_filter(config, plan, scripts):
    """How the old configuration's Lua filter decided, from the scripts it loaded."""
    entries = [_typed("LuaScripts", e, str) for e in _typed("LuaScripts", config.get("LuaScripts", []), list)]
    reading = read_filter({entry: (scripts or {}).get(entry) for entry in entries})
    if reading.kind == "unknown":
        plan.add(
            "warning",
            f"request filter not read with confidence ({reading.note}): its users are imported with the least-"
            "privileged role and without access, for you to decide",
        )
    elif reading.kind == "none":
        plan.add("note", f"request filter: {reading.note}, so every user could do everything")
    else:
        plan.add("imported", f"request filter: {reading.note}; each user's role is read from it")
    return reading


def _users(config, plan, deployment, reading):
    users = _typed("RegisteredUsers", config.get("RegisteredUsers", {}), dict)
    for username, password in users.items():
        _check_field(OrthancUser, "username", username, f"RegisteredUsers: user {json.dumps(username)}")
        key = f"RegisteredUsers: the password of {json.dumps(username)}"
        _check_field(OrthancUser, "password", _typed(key, password, str, secret=True), key, secret=True)
        if not password:
            raise ConfigImportError(f"RegisteredUsers: user {json.dumps(username)} has an empty password")
        if username == deployment.service_username:
            plan.add("replaced", f"user {username} is the portal's own account name: the portal manages its password")
            continue
        inferred = reading.role_for(username)
        plan.users[username] = {"password": password, "role": inferred.role, "is_active": inferred.is_active}
        access = "" if inferred.is_active else ", without access"
        plan.add(
            "decide" if inferred.decide else "imported",
            f"user {username}: role {inferred.role}{access} ({inferred.reason})",
        )
        if is_weak_password(username, password):
            plan.add("critical", f"user {username} has a default or weak password: rotate it before remote access")


def _modalities(config, plan):
    modalities = _typed("DicomModalities", config.get("DicomModalities", {}), dict)
    addresses = {}
    for name, entry in modalities.items():
        label = f"DicomModalities.{name}"
        if isinstance(entry, list):
            if len(entry) not in (3, 4):
                raise ConfigImportError(f"{label}: expected [AET, host, port] or [AET, host, port, manufacturer]")
            entry = dict(zip(("AET", "Host", "Port", "Manufacturer"), entry, strict=False))
        _typed(label, entry, dict)
        port = entry.get("Port", 104)
        if isinstance(port, str):
            # Orthanc accepts a port written as a string; the field decides what is a number
            # (str.isdigit() would take "²").
            port = _check_field(Modality, "port", port, f"{label}.Port")
        row = {
            "name": name,
            "aet": _typed(f"{label}.AET", entry.get("AET", ""), str),
            "host": _typed(f"{label}.Host", entry.get("Host", ""), str),
            "port": _typed(f"{label}.Port", port, int),
            "manufacturer": _typed(f"{label}.Manufacturer", entry.get("Manufacturer", "Generic"), str),
            "local_aet": _typed(f"{label}.LocalAet", entry.get("LocalAet", ""), str),
            "timeout": _typed(f"{label}.Timeout", entry.get("Timeout", 0), int),
        }
        for key, fname in MODALITY_FLAGS.items():
            row[fname] = _typed(f"{label}.{key}", entry.get(key, True), bool)  # Orthanc: every Allow* defaults to true
        if "AllowStorageCommitment" not in entry and ("AllowNAction" in entry or "AllowEventReport" in entry):
            row["allow_storage_commitment"] = bool(
                entry.get("AllowNAction", True) and entry.get("AllowEventReport", True)
            )
        for fname, value in row.items():
            _check_field(Modality, fname, value, f"{label}.{fname}")
        address = (row["aet"], row["host"], row["port"])
        if address in addresses:
            raise ConfigImportError(f"{label}: same AET, host and port as {addresses[address]}")
        addresses[address] = name
        plan.modalities.append(row)
        plan.add("imported", f"modality {name}: {row['aet']}@{row['host']}:{row['port']}")
        dropped = sorted(set(entry) - MODALITY_KEYS - {"AllowNAction", "AllowEventReport"})
        if dropped:
            plan.add("warning", f"modality {name}: {', '.join(dropped)} not modelled by the portal, not written back")
        if plan.settings["dicom_check_modality_host"] and not _is_ip(row["host"]):
            plan.add("warning", f"modality {name}: host {row['host']} is not an IP address while host checking is on")


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _portal_owned(config, plan, plugins):
    portal_libs = set(PLUGINS.values())
    others = sorted(plugins - portal_libs)
    if "Plugins" in config:
        plan.add(
            "replaced", f"Plugins {json.dumps(config['Plugins'])}: the portal loads the plugins it manages by name"
        )
    if others:
        plan.add("warning", f"plugins not loaded by the portal's configuration: {', '.join(others)}")
    if "PythonScript" in config:
        plan.add(
            "warning",
            f"PythonScript {json.dumps(config['PythonScript'])} is not loaded: Orthanc's Python plugin runs one "
            "script, and the portal's worklist server is that script",
        )
    scripts = _typed("LuaScripts", config.get("LuaScripts", []), list)
    if scripts:
        plan.add("warning", f"LuaScripts {json.dumps(scripts)} are replaced by the portal's access filter")
