"""The access each Orthanc role must have, route by route, written from the roles' definitions
(never from deployments/lua.py), and a runner that asks a real Orthanc over HTTP.

- admin: everything;
- operator: everything but DELETE, script execution and exports to the server's disk;
- viewer: every GET (but those two), and the POST routes that only look things up;
- uploader: POST /instances, nothing else;
- a role the filter does not know, and a request with no known user: nothing.

tests/test_orthanc_access.py runs the table one route at a time; `make mutation` (scripts/mutation.py)
runs the whole table against each mutant of the generated Lua filter. Allowed means Orthanc itself
answered (any status but 401 and 403, an error of its own included); refused means 403.
"""

from dataclasses import dataclass
from pathlib import Path

import requests

from deployments.models import OrthancUser
from tests.dicomfiles import make_instance

ROLES = ("admin", "operator", "viewer", "uploader", "auditor")  # "auditor" is no role of the portal's
PASSWORD = "Long-enough-pa55word-{}"
ADMIN, OPERATOR, VIEWER, UPLOADER = "admin", "operator", "viewer", "uploader"
READERS = frozenset({ADMIN, OPERATOR, VIEWER})
WRITERS = frozenset({ADMIN, OPERATOR})
FIND = {"Level": "Study", "Query": {"PatientID": "ROLE1"}}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {patient} {study} {instance} {victim} {export} are filled in per Orthanc
    body: object
    allowed: frozenset
    why: str = ""

    @property
    def id(self):
        return f"{self.method} {self.path}"


def _r(method, path, body, allowed, why=""):
    return Route(method, path, body, frozenset(allowed), why)


ROUTES = [
    # Reading: every GET, for those who read.
    _r("GET", "/system", None, READERS),
    _r("GET", "/patients", None, READERS),
    _r("GET", "/instances", None, READERS, "the uploader may post here, not read"),
    _r("GET", "/studies/{study}", None, READERS),
    _r("GET", "/instances/{instance}/file", None, READERS),
    _r("GET", "/app/explorer.html", None, READERS),
    # Looking things up by POST: readers, and nothing beside or below those routes.
    _r("POST", "/tools/find", FIND, READERS, "Orthanc Explorer's search"),
    _r("POST", "/tools/find/", FIND, READERS, "a trailing slash is the same route"),
    _r("POST", "/tools/lookup", "ROLE1", READERS),
    _r("POST", "/tools/bulk-content", {"Resources": ["{study}"]}, READERS),
    _r("POST", "/tools/find/more", FIND, WRITERS, "below a viewer's route"),
    _r("POST", "/tools/finder", FIND, WRITERS, "beside a viewer's route"),
    _r("POST", "/tools/lookups", "ROLE1", WRITERS, "beside a viewer's route"),
    _r("POST", "/tools/create-archive", {"Resources": ["{study}"]}, WRITERS),
    _r("PUT", "/tools/find", FIND, WRITERS, "a viewer's route with another method"),
    # Changing, sending, uploading.
    _r("POST", "/instances", "DICOM", {ADMIN, OPERATOR, UPLOADER}),
    _r("POST", "/instances/", "DICOM", {ADMIN, OPERATOR, UPLOADER}),
    _r("PUT", "/instances", "DICOM", WRITERS, "the uploader's route with another method"),
    _r("POST", "/instances/{instance}/modify", {"Replace": {"StudyDescription": "x"}}, WRITERS, "below the upload"),
    _r("POST", "/instances/{instance}/anonymize", {}, WRITERS, "below the upload"),
    _r("POST", "/studies/{study}/modify", {"Replace": {"StudyDescription": "y"}}, WRITERS),
    _r("POST", "/modalities/nowhere/store", "{instance}", WRITERS, "sending to a modality"),
    _r("PUT", "/patients/{patient}/protected", "1", WRITERS),
    # Admin only, however the route is spelt.
    _r("POST", "/tools/execute-script", "print(1)", {ADMIN}),
    _r("POST", "//tools//execute-script/", "print(1)", {ADMIN}),
    _r("POST", "/TOOLS/Execute-Script", "print(1)", {ADMIN}),
    _r("POST", "/tools/execute%2Dscript", "print(1)", {ADMIN}, "Orthanc decodes the URI before the filter"),
    _r("GET", "/tools/execute-script", None, {ADMIN}),
    _r("POST", "/instances/{instance}/export", "{export}", {ADMIN}),
    _r("POST", "//instances/{instance}//export/", "{export}", {ADMIN}),
    _r("GET", "/instances/{instance}/export", None, {ADMIN}),
    _r("DELETE", "/instances/{victim}", None, {ADMIN}),
    _r("DELETE", "/tools/find", None, {ADMIN}),
]


def users():
    return [OrthancUser(username=f"{role}1", password=PASSWORD.format(role), role=role) for role in ROLES]


def auth(role):
    return (f"{role}1", PASSWORD.format(role))


class Session:
    """One Orthanc with its fixed resources (one study, uploaded once by the portal's account)."""

    def __init__(self, instance):
        self.instance = instance
        self.url = instance.url
        self.http = requests.Session()
        self.ids = {}

    def upload(self, patient_id):
        answer = self.http.post(
            f"{self.url}/instances",
            data=make_instance(patient_id=patient_id, patient_name=f"Role^{patient_id}"),
            auth=self.instance.auth,
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()

    def prepare(self):
        study = self.upload("ROLE1")
        self.ids = {
            "patient": study["ParentPatient"],
            "study": study["ParentStudy"],
            "instance": study["ID"],
            "export": str(Path(self.instance.base) / "export.dcm"),
        }
        return self

    def call(self, role, method, path, body=None, headers=None):
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        if role is not None:
            kwargs["auth"] = auth(role)
        return self.http.request(method, f"{self.url}{path}", timeout=10, headers=headers, **kwargs).status_code

    def _fill(self, value):
        if isinstance(value, str):
            return value.format(**self.ids)
        if isinstance(value, dict):
            return {k: self._fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v) for v in value]
        return value

    def check(self, route):
        """The roles for which Orthanc's answer differs from the table: [] when it agrees."""
        wrong = []
        if "{victim}" in route.path:
            self.ids["victim"] = self.upload("VICTIM1")["ID"]
        path = self._fill(route.path)
        # The roles that may act go last, so that a DELETE that is allowed happens once, at the end.
        for role in sorted(ROLES, key=lambda r: r in route.allowed):
            body = make_instance(patient_id="UP1") if route.body == "DICOM" else self._fill(route.body)
            status = self.call(role, route.method, path, body)
            if role in route.allowed and status in (401, 403):
                wrong.append(f"{role} {route.method} {path}: {status}, expected Orthanc's own answer")
            elif role not in route.allowed and status != 403:
                wrong.append(f"{role} {route.method} {path}: {status}, expected 403")
        return wrong

    def check_probe(self):
        """The portal's push asks with X-Portal-Probe whether this very configuration runs."""
        probe = self.instance.probe
        answers = {
            "right": self.call_service("GET", "/system", {"X-Portal-Probe": probe}),
            "wrong": self.call_service("GET", "/system", {"X-Portal-Probe": probe[::-1]}),
            "empty": self.call_service("GET", "/system", {"X-Portal-Probe": ""}),
            "none": self.call_service("GET", "/system", None),
        }
        expected = {"right": 200, "wrong": 403, "empty": 403, "none": 200}
        return [f"probe {k}: {answers[k]}, expected {v}" for k, v in expected.items() if answers[k] != v]

    def call_service(self, method, path, headers):
        return self.http.request(
            method, f"{self.url}{path}", auth=self.instance.auth, headers=headers, timeout=10
        ).status_code

    def check_all(self, stop_at_first=False):
        wrong = self.check_probe()
        for route in ROUTES:
            if wrong and stop_at_first:
                break
            wrong += self.check(route)
        return wrong


def check_anonymous(url):
    """An Orthanc without authentication: the filter knows no user, so it refuses everything."""
    wrong = []
    for method, path, body in (
        ("GET", "/system", None),
        ("POST", "/tools/find", FIND),
        ("DELETE", "/patients/x", None),
    ):
        kwargs = {"json": body} if body else {}
        status = requests.request(method, f"{url}{path}", timeout=10, **kwargs).status_code
        if status != 403:
            wrong.append(f"anonymous {method} {path}: {status}, expected 403")
    return wrong
