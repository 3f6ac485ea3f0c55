"""Pure rendering: a deployment's models → ``{filename: bytes}`` for its configuration folder.

Deterministic (sorted keys, fixed indentation) so that a render can be compared with the
files on disk and with earlier revisions. Every top-level key lives in exactly one file:
Orthanc refuses to start when two of its *.json files define the same key.
"""

import json
from urllib.parse import urlsplit

SECRET_FILES = {"credentials.json"}


def dump(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def render_deployment(deployment) -> dict[str, bytes]:
    port = urlsplit(deployment.orthanc_url).port or 8042
    storage = deployment.storage_dir or f"{deployment.config_dir}/../storage"
    main = {
        "Name": deployment.name,
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "DicomServerEnabled": True,
        "DicomAet": deployment.dicom_aet,
        "DicomPort": deployment.dicom_port,
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "DefaultEncoding": "Utf8",
        "LimitFindResults": 100,
        "LimitFindInstances": 100,
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "HttpsVerifyPeers": True,
        "Plugins": [],
    }
    credentials = {"RegisteredUsers": {deployment.service_username: deployment.service_password}}
    return {"orthanc.json": dump(main), "credentials.json": dump(credentials)}


def file_mode(filename) -> int:
    return 0o600 if filename in SECRET_FILES else 0o644
