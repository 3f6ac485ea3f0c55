"""Pure rendering: a deployment's models → ``{filename: bytes}`` for its configuration folder.

Deterministic (sorted keys, fixed indentation) so a render can be compared with the files on
disk and with earlier revisions. Every top-level key lives in exactly one file: Orthanc refuses
to start when two of its *.json files define the same key.
"""

import hashlib
import json
import re
from functools import cache
from pathlib import Path

from django.utils import timezone

from .lua import render_filter

SECRET_FILES = {"credentials.json", "postgresql.json"}
LUA_FILE = "access.lua"
WORKLIST_SCRIPT = "portal_worklists.py"
# Files the portal owns in the configuration folder; anything else there is left alone.
OWNED_FILES = {"orthanc.json", "credentials.json", "postgresql.json", LUA_FILE, WORKLIST_SCRIPT}
PLUGINS = {
    "worklists": "libModalityWorklists.so",
    "python": "libOrthancPython.so",
    "dicomweb": "libOrthancDicomWeb.so",
    "postgresql": "libOrthancPostgreSQLIndex.so",
}
MASK = "••••••••"


def dump(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def modality_entry(m) -> dict:
    entry = {
        "AET": m.aet,
        "Host": m.host,
        "Port": m.port,
        "Manufacturer": m.manufacturer,
        "AllowEcho": m.allow_echo,
        "AllowFind": m.allow_find,
        "AllowFindWorklist": m.allow_find_worklist,
        "AllowGet": m.allow_get,
        "AllowMove": m.allow_move,
        "AllowStore": m.allow_store,
        "AllowStorageCommitment": m.allow_storage_commitment,
    }
    if m.local_aet:
        entry["LocalAet"] = m.local_aet
    if m.timeout:
        entry["Timeout"] = m.timeout
    return entry


def effective_roles(deployment, users, today=None) -> dict[str, tuple[str, str]]:
    """username → (password, role) of the accounts that may log in today, the portal's first."""
    today = today or timezone.localdate()
    accounts = {u.username: (u.password, u.role) for u in users if u.is_effective(today)}
    accounts[deployment.service_username] = (deployment.service_password, "admin")
    return accounts


def render_deployment(deployment, users=(), modalities=(), plugins_dir="/usr/share/orthanc/plugins", today=None):
    d = deployment
    storage = d.storage_dir or f"{d.config_dir}/../storage"
    main = {
        **(d.extra_config or {}),
        "Name": d.name,
        "HttpPort": d.http_port,
        "RemoteAccessAllowed": d.remote_access_allowed,
        "AuthenticationEnabled": d.authentication_enabled,
        "SslEnabled": d.ssl_enabled,
        "HttpsVerifyPeers": d.https_verify_peers,
        "OrthancExplorerEnabled": d.orthanc_explorer_enabled,
        "WebDavEnabled": d.webdav_enabled,
        "ExecuteLuaEnabled": d.execute_lua_enabled,
        "RestApiWriteToFileSystemEnabled": d.rest_api_write_to_file_system_enabled,
        "DicomServerEnabled": d.dicom_server_enabled,
        "DicomAet": d.dicom_aet,
        "DicomPort": d.dicom_port,
        "DicomCheckCalledAet": d.dicom_check_called_aet,
        "DicomCheckModalityHost": d.dicom_check_modality_host,
        "DicomAlwaysAllowEcho": d.dicom_always_allow_echo,
        "DicomAlwaysAllowStore": d.dicom_always_allow_store,
        "DicomAlwaysAllowFind": d.dicom_always_allow_find,
        "DicomAlwaysAllowFindWorklist": d.dicom_always_allow_find_worklist,
        "DicomAlwaysAllowGet": d.dicom_always_allow_get,
        "DicomAlwaysAllowMove": d.dicom_always_allow_move,
        "DicomModalities": {m.name: modality_entry(m) for m in modalities},
        "LimitFindResults": d.limit_find_results,
        "LimitFindInstances": d.limit_find_instances,
        "OverwriteInstances": d.overwrite_instances,
        "StorageCompression": d.storage_compression,
        "ConcurrentJobs": d.concurrent_jobs,
        "DeidentifyLogs": d.deidentify_logs,
        "DeidentifyLogsDicomVersion": d.deidentify_logs_dicom_version,
        # Every worklist answer leaves in this one encoding: chosen from the stations (deployments/charsets.py).
        "DefaultEncoding": d.worklist_encoding(modalities),
        "TcpNoDelay": d.tcp_no_delay,
        "KeepAlive": d.keep_alive,
        "StorageAccessOnFind": d.storage_access_on_find,
        "SaveJobs": d.save_jobs,
        "StorageDirectory": storage,
        "IndexDirectory": d.index_dir or storage,
        "LuaScripts": [f"{d.config_dir}/{LUA_FILE}"],
    }
    if d.ssl_enabled:
        main["SslCertificate"] = d.ssl_certificate
    plugins = []
    extra = d.extra_config or {}
    # A plugin section starts from what an import kept of it (keys the portal does not model).
    files = {}
    if d.worklists_enabled:
        main["Worklists"] = {**extra.get("Worklists", {}), "Enable": True, "Database": d.worklist_folder}
        if d.worklist_server == d.WorklistServer.CLASSIC:
            plugins.append(f"{plugins_dir}/{PLUGINS['worklists']}")
        else:
            # The script reads the same Worklists section; the classic plugin is not loaded.
            plugins.append(f"{plugins_dir}/{PLUGINS['python']}")
            main["PythonScript"] = f"{d.config_dir}/{WORKLIST_SCRIPT}"
            main["PythonVerbose"] = False
            files[WORKLIST_SCRIPT] = worklist_script()
    if d.dicomweb_enabled:
        plugins.append(f"{plugins_dir}/{PLUGINS['dicomweb']}")
        main["DicomWeb"] = {**extra.get("DicomWeb", {}), "Enable": True, "Root": d.dicomweb_root}
    if d.index_backend == d.IndexBackend.POSTGRESQL:
        plugins.append(f"{plugins_dir}/{PLUGINS['postgresql']}")
        files["postgresql.json"] = dump(
            {
                "PostgreSQL": {
                    "EnableIndex": True,
                    "EnableStorage": False,
                    "Host": d.pg_host,
                    "Port": d.pg_port,
                    "Database": d.pg_database,
                    "Username": d.pg_user,
                    "Password": d.pg_password,
                    "EnableSsl": d.pg_tls,
                }
            }
        )
    main["Plugins"] = plugins
    accounts = effective_roles(d, users, today)
    roles = {name: role for name, (_, role) in accounts.items()}
    files["orthanc.json"] = dump(main)
    files["credentials.json"] = dump({"RegisteredUsers": {name: pw for name, (pw, _) in accounts.items()}})
    files[LUA_FILE] = render_filter(roles, probe_token(files, roles))
    return files


@cache
def worklist_script() -> bytes:
    """The script that Orthanc's Python plugin runs (deployments/worklist_server.py)."""
    return (Path(__file__).with_name("worklist_server.py")).read_bytes()


def probe_token(files, roles) -> str:
    """A digest of everything else the configuration holds: it changes with any change."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    digest.update(json.dumps(roles, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def probe_of(files) -> str:
    match = re.search(r'^local probe = "([^"]*)"', files.get(LUA_FILE, b"").decode(), re.M)
    return match.group(1) if match else ""


def render_for(deployment, today=None, plugins_dir=None):
    """Render from the database rows of a saved deployment."""
    from django.conf import settings

    return render_deployment(
        deployment,
        users=list(deployment.orthanc_users.all()),
        modalities=list(deployment.modalities.all()),
        plugins_dir=plugins_dir or settings.ORTHANC_PLUGINS_DIR,
        today=today,
    )


def file_mode(filename) -> int:
    return 0o600 if filename in SECRET_FILES else 0o644


def masked(files: dict[str, bytes]) -> dict[str, str]:
    """The files as text with every password replaced, for previews and diffs."""
    out = {}
    for name, data in files.items():
        text = data.decode("utf-8")
        if name == "credentials.json":
            users = json.loads(text)["RegisteredUsers"]
            text = dump({"RegisteredUsers": dict.fromkeys(users, MASK)}).decode()
        elif name == "postgresql.json":
            pg = json.loads(text)
            pg["PostgreSQL"]["Password"] = MASK
            text = dump(pg).decode()
        out[name] = text
    return out
