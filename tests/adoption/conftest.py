"""An Orthanc as a clinic runs it before the portal: the installed package's /etc/orthanc copied
(Debian 12's or 13's, comments and all), with demo users, a GET-only Lua rule and authentication
on, started from that folder. Tests adopt it, and check over real HTTP what each user may do."""

import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests

from deployments.models import Deployment
from deployments.service import LocalService
from tests.conftest import free_port, require_binary, wait_for

DEBIAN = Path("/etc/orthanc")
PLUGINS = Path("/usr/share/orthanc/plugins")
USERS = {"admin": "Adm1n-long-Passw0rd", "alice": "Al1ce-long-Passw0rd", "bob": "B0b-long-Passw0rd-x"}
# The Orthanc Book's sample filter: everybody reads, only "admin" changes anything.
GET_ONLY_FILTER = """-- Written by hand at the clinic, years ago.
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  -- Only allow GET requests for non-admin users
  if method == 'GET' then
    return true
  elseif username == 'admin' then
    return true
  else
    return false
  end
end

function OnStoredInstance(instanceId, tags, metadata)
  -- another callback of the clinic's script: not the filter
end
"""
# What a user may do, asked over HTTP; none of these changes anything on the server.
PROBES = {
    "read": ("GET", "/system", None),
    "list": ("GET", "/patients", None),
    "search": ("POST", "/tools/find", {"Level": "Patient", "Query": {}}),
    "upload": ("POST", "/instances", b"not a DICOM file"),
    "change": ("PUT", "/modalities/portal-probe", b"not JSON"),
    "delete": ("DELETE", "/patients/00000000-00000000-00000000-00000000-00000000", None),
    "export": ("POST", "/instances/00000000-00000000-00000000-00000000-00000000/export", b"/tmp/x"),
}
# Searching is reading: the portal's viewer may POST /tools/find (deployments/lua.py), which the old
# GET-only rule refused; it reveals nothing GET /patients does not.
READS = {"read", "list", "search"}


class ClinicOrthanc:
    def __init__(self, base: Path, credentials_file=True):
        if not (DEBIAN / "orthanc.json").exists():
            pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
        self.base = base
        self.folder = base / "etc-orthanc"
        shutil.copytree(DEBIAN, self.folder)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        storage = base / "db"
        storage.mkdir()
        main = self.folder / "orthanc.json"
        text = main.read_text()
        for old, new in (
            ('"HttpPort" : 8042', f'"HttpPort" : {self.http_port}'),
            ('"DicomPort" : 4242', f'"DicomPort" : {self.dicom_port}'),
            ('"/var/lib/orthanc/db-v6"', f'"{storage}"'),
            (
                '"RemoteAccessAllowed" : false,',
                '"RemoteAccessAllowed" : false,\n  // The clinic wants a password from everyone\n'
                '  "AuthenticationEnabled" : true,',
            ),
        ):
            assert old in text, old
            text = text.replace(old, new)
        text, count = re.subn(r'"LuaScripts"\s*:\s*\[\s*\]', '"LuaScripts" : [ "clinic-filter.lua" ]', text)
        assert count == 1
        # The package's folder of plugins, named one by one without the Python plugin: reloaded by
        # /tools/reset, Orthanc 1.10's Python plugin now and then crashes Orthanc (seen here), and the
        # yardstick of these tests is Orthanc's own reset, not that crash.
        plugins = sorted(str(p) for p in PLUGINS.glob("*.so") if p.name != "libOrthancPython.so")
        old = f'"{PLUGINS}/"'
        assert old in text, old
        text = text.replace(old, ", ".join(f'"{p}"' for p in plugins))
        users = "".join(f'    "{name}" : "{password}",   // demo account\n' for name, password in USERS.items())
        if credentials_file:
            credentials = self.folder / "credentials.json"
            old = '// "alice" : "alicePassword"'
            assert old in credentials.read_text()
            credentials.write_text(credentials.read_text().replace(old, old + "\n" + users))
        else:
            (self.folder / "credentials.json").unlink()
            text = text.replace(
                '"Name" : "Orthanc",', '"Name" : "Orthanc",\n  "RegisteredUsers" : {\n' + users + "  },"
            )
        main.write_text(text)
        (self.folder / "clinic-filter.lua").write_text(GET_ONLY_FILTER)
        self.service = LocalService(self.folder, self.url, ("admin", USERS["admin"]))

    def start(self):
        require_binary(self.service.binary, "orthanc")
        self.service.start(wait=30)

    def stop(self):
        self.service.stop()

    def deployment(self, **fields):
        """The deployment an admin creates for it before importing: its URL and folder."""
        values = {
            "name": "Clinic on Orthanc",
            "slug": "clinic",
            "orthanc_url": self.url,
            "http_port": self.http_port,
            "config_dir": str(self.folder),
            "service_password": "P0rtal-" + "s" * 24,
            "service_kind": Deployment.ServiceKind.NONE,
        }
        return Deployment.objects.create(**{**values, **fields})

    def rights(self, username, password):
        """probe → allowed / forbidden (403) / refused (401: wrong password)."""
        out = {}
        for name, (method, path, body) in PROBES.items():
            kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
            status = requests.request(
                method, self.url + path, auth=(username, password), timeout=10, **kwargs
            ).status_code
            out[name] = {401: "refused", 403: "forbidden"}.get(status, "allowed")
        return out

    def answers(self, auth):
        try:
            return requests.get(self.url + "/system", auth=auth, timeout=2).status_code == 200
        except requests.RequestException:
            return False


class Downtime:
    """Polls GET /system as one user and keeps the longest stretch without an answer."""

    def __init__(self, orthanc, auth):
        self.orthanc, self.auth = orthanc, auth
        self.longest, self._stop = 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        down_since = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.orthanc.answers(self.auth):
                if down_since is not None:
                    self.longest = max(self.longest, now - down_since)
                down_since = None
            elif down_since is None:
                down_since = now
            time.sleep(0.05)
        if down_since is not None:
            self.longest = max(self.longest, time.monotonic() - down_since)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def reset_downtime(orthanc):
    """How long the clinic's Orthanc is away for its own /tools/reset: the yardstick."""
    with Downtime(orthanc, ("bob", USERS["bob"])) as down:
        requests.post(orthanc.url + "/tools/reset", auth=("admin", USERS["admin"]), timeout=10)
        time.sleep(0.3)
        wait_for(lambda: orthanc.answers(("bob", USERS["bob"])), timeout=30, message="Orthanc after its reset")
        time.sleep(0.3)
    return down.longest


@pytest.fixture
def clinic_orthanc(tmp_path):
    started = []

    def make(credentials_file=True, start=True):
        orthanc = ClinicOrthanc(tmp_path / f"clinic-{len(started)}", credentials_file=credentials_file)
        if start:
            orthanc.start()
        started.append(orthanc)
        return orthanc

    yield make
    for orthanc in started:
        orthanc.stop()
