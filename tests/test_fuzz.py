"""The fuzzer: every form and API endpoint of the portal, as every role, with hostile input.

Each URL named in the URL configuration has a row in tests/fuzz/ (a new URL without one fails
here). Every request runs as anonymous, Admin, Scheduler and Viewer, inside a savepoint that is
rolled back, so each starts from the same World (tests/test_permission_matrix.py). Every answer:
no 5xx, no traceback text, and a 4xx that is not about access names a field or states a rule.
After a write that was accepted, the pages showing what was written must still answer; and no
worklist entry may point at a patient of another deployment.

FUZZ_EXAMPLES (default 3) sets the examples per URL and test, eight times as many for the API
and the imports. Runs are reproducible: derandomized, and no example database is written.
More, locally: FUZZ_EXAMPLES=200 .venv/bin/pytest tests/test_fuzz.py
"""

import copy
import datetime
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.test import Client
from django.urls import NoReverseMatch, resolve, reverse
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deployments.models import Deployment, Modality
from deployments.render import render_for
from portal.models import AuditEntry
from tests.fuzz import QUERY_NAMES, TABLE, http, values
from tests.test_permission_matrix import MATRIX, World, _url_names
from worklists import csv_import
from worklists.models import Patient, WorklistEntry

# Hypothesis keeps its caches in .hypothesis/ of the working folder; not in the tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "portal-hypothesis"))
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
# The few endpoints that take structured bodies (JSON, files) have more ways to go wrong.
STRUCTURED_EXAMPLES = FUZZ_EXAMPLES * 8
ROLES = ("anonymous", "admin", "scheduler", "viewer")
# Pages that show what a write stored: checked after every accepted write.
AFTERSHOCK_PAGES = (
    "dashboard", "deployments:list", "deployments:modalities", "deployments:orthanc_users",
    "backups:dashboard", "worklists:index", "api:entry-list", "api:patient-list", "audit_log", "staff_list",
)  # fmt: skip
# Path characters for a URL's kwargs, as a client would write them (percent escapes included).
PATH_SEGMENTS = [
    "..", "../..", "..%2F..%2Fetc%2Fpasswd", "%00", "a%00b", "%5C..%5C", "..\\..\\", "%2e%2e", "%C0%AE%C0%AE",
    "%ED%A0%80", "%FF", ";x", "%3F", "%23", "-1", "0", "99999999999999999999999", "1.0", "١", "%25%32%65",
]  # fmt: skip
PATH_VALUES = st.one_of(st.sampled_from(PATH_SEGMENTS), values.text)


def fuzz(examples=FUZZ_EXAMPLES):
    """Reproducible in CI: derandomized, no example database written into the tree, no deadline.
    Quiet and without shrinking: the failure message describes the request (bodies cut short),
    where Hypothesis would print every draw in full (some are 200 KiB) after minutes of shrinking."""
    return hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        verbosity=Verbosity.quiet,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


class Portal:
    """The World, a signed-in session per role, and one checked request at a time."""

    def __init__(self, world):
        self.world = world
        self.sessions = {}
        for role in ROLES[1:]:
            client = Client()
            client.force_login(getattr(world, role))
            self.sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value

    def kwargs(self, name):
        return {k: self.world.resolve(v) for k, v in MATRIX[name].kwargs.items()}

    def url(self, name):
        return reverse(name, kwargs=self.kwargs(name))

    def client(self, role, csrf=False):
        client = Client(enforce_csrf_checks=csrf, raise_request_exception=False)
        if csrf:
            # A well-formed cookie, so that the check reads the form's token (which never matches).
            client.cookies[settings.CSRF_COOKIE_NAME] = "a" * 32
        if role != "anonymous":
            client.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[role]
        return client

    def send_as_every_role(self, method, path, body=b"", content_type="", query="", names=(), csrf=False):
        """One request as each role; the pages are checked after the first write accepted."""
        shaken = False
        for role in ROLES:
            response = self.send(role, method, path, body, content_type, query, names, csrf, aftershocks=not shaken)
            shaken = shaken or response.accepted
        return response

    def send(self, role, method, path, body=b"", content_type="", query="", names=(), csrf=False, aftershocks=True):
        with transaction.atomic():
            audited = AuditEntry.objects.count()
            try:
                response = self.client(role, csrf).generic(
                    method, path, body, content_type=content_type or "application/octet-stream", QUERY_STRING=query
                )
            except Exception as exc:  # raised while Django was answering: a server answers 500
                said = http.describe(role, method, f"{path}?{query}", content_type, body)
                raise AssertionError(f"a 5xx: the request raised {exc!r}\n{said}") from exc
            said = http.describe(role, method, f"{path}?{query}", content_type, body, response)
            check(response, names, said)
            response.accepted = AuditEntry.objects.count() > audited  # each accepted write is audited
            if response.accepted and aftershocks:
                self.aftershocks(said)
            crossed = WorklistEntry.objects.exclude(deployment=F("patient__deployment"))
            assert not crossed.exists(), f"an entry now points at another deployment's patient:\n{said}"
            transaction.set_rollback(True)
        return response

    def aftershocks(self, cause):
        slug = Deployment.objects.filter(pk=self.world.deployment.pk).values_list("slug", flat=True).first()
        paths = [reverse(name) for name in AFTERSHOCK_PAGES]
        if slug:
            paths += [reverse(name, kwargs={"slug": slug}) for name in ("deployments:detail", "deployments:preview")]
        for path in paths:
            response = self.client("admin").get(path)
            shown = http.describe("admin", "GET", path, "", b"", response)
            check(response, (), f"{shown}\n--- after this write was accepted:\n{cause}")

    def page(self, name):
        """The named inputs of a URL's page as the Admin sees it (the login page: as anonymous)."""
        for role in ("admin", "anonymous"):
            with transaction.atomic():
                response = self.client(role).get(self.url(name))
                transaction.set_rollback(True)
            if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
                return http.FormFields(response.content.decode())
        return http.FormFields("")

    def form_fields(self, name):
        """The fields a POST to the URL takes, with valid values where a page shows them."""
        target = TABLE[name]
        fields = dict(self.page(target.baseline).values) if target.baseline else {}
        for field, value in self.page(name).values.items():
            if value or field not in fields:
                fields[field] = value
        for field in target.fields:
            fields.setdefault(field, "")
        return fields


def check(response, names, said):
    assert response.status_code < 500, f"a 5xx:\n{said}"
    assert not http.traceback_in(response), f"traceback text in the answer:\n{said}"
    if response.status_code >= 400 and response.status_code not in http.ACCESS_STATUSES:
        assert http.explains(response, names), f"a 4xx that names no field and states no rule:\n{said}"


def _other_clinic(world):
    """A second deployment with a station and a patient: a boundary the input must not cross."""
    world.other = Deployment.objects.create(
        name="Other clinic",
        slug="other",
        orthanc_url="http://127.0.0.1:9",
        service_password="y" * 24,
        config_dir="/nonexistent/other",
        service_kind=Deployment.ServiceKind.NONE,
    )
    Modality.objects.create(deployment=world.other, name="US9", aet="US9", host="127.0.0.1", port=104)
    Patient.objects.create(deployment=world.other, patient_id="O1", family_name="Other")


@pytest.fixture
def portal(db, django_user_model):
    world = World(django_user_model)
    # The entry's station must be one of the deployment's: a valid body to start from.
    WorklistEntry.objects.filter(pk=world.wl_entry.pk).update(station_aet=world.modality.aet)
    _other_clinic(world)
    return Portal(world)


def test_every_url_of_the_portal_has_a_row_in_the_fuzzer_table():
    names = set(_url_names())
    missing = sorted(names - TABLE.keys())
    stale = sorted(TABLE.keys() - names)
    assert not missing, f"add these URLs to tests/fuzz/__init__.py: {missing}"
    assert not stale, f"these rows name no URL any more: {stale}"


def _form_body(data, fields):
    names = sorted(fields) or ["value"]
    sent = dict(fields)
    for field in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True), label="fields"):
        sent[field] = data.draw(values.field_value, label=field)
    how = data.draw(values.charset, label="charset")
    if data.draw(st.booleans(), label="multipart"):
        return http.multipart(sent, [], how)
    return http.urlencoded(sent, how)


POSTED = sorted(name for name, target in TABLE.items() if target.kind in ("form", "action", "upload"))


@pytest.mark.parametrize("name", POSTED)
def test_no_url_answers_a_5xx_to_hostile_form_values_as_any_role(name, portal):
    fields = portal.form_fields(name)
    path = portal.url(name)

    @fuzz()
    @given(st.data())
    def post(data):
        body, content_type = _form_body(data, fields)
        portal.send_as_every_role("POST", path, body, content_type, names=[*fields, *portal.kwargs(name)])

    post()


@pytest.mark.parametrize("name", POSTED)
def test_a_form_posted_with_a_wrong_csrf_token_answers_403_or_400_as_any_role(name, portal):
    fields = {**portal.form_fields(name), "csrfmiddlewaretoken": "c" * 32}
    path = portal.url(name)

    @fuzz()
    @given(st.data())
    def post(data):
        body, content_type = _form_body(data, fields)
        for role in ROLES:
            response = portal.send(role, "POST", path, body, content_type, names=list(fields), csrf=True)
            # 400 when the body cannot be read at all (the answer then names the rule).
            assert response.status_code in (400, 403), f"{role} POST {path}, wrong CSRF token: {response.status_code}"

    post()


def _path_with(name, kwargs, key, value):
    """The URL with one kwarg replaced by raw text (which reverse() would refuse)."""
    for marker in ("fuzzmarker", 8675309):
        try:
            path = reverse(name, kwargs={**kwargs, key: marker})
        except NoReverseMatch:
            continue
        return path.replace(str(marker), quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="/%"))
    raise AssertionError(f"{name}: no marker fits the {key} of its pattern")


@pytest.mark.parametrize("name", sorted(TABLE))
def test_no_url_answers_a_5xx_to_path_characters_and_hostile_query_strings_as_any_role(name, portal):
    method = "POST" if TABLE[name].kind == "action" else "GET"
    kwargs = portal.kwargs(name)
    inputs = list(portal.page(name).values) if method == "GET" else []
    query_names = sorted({*QUERY_NAMES, *inputs})

    @fuzz()
    @given(st.data())
    def request(data):
        path = reverse(name, kwargs=kwargs)
        if kwargs and data.draw(st.booleans(), label="hostile kwarg"):
            key = data.draw(st.sampled_from(sorted(kwargs)), label="kwarg")
            path = _path_with(name, kwargs, key, data.draw(PATH_VALUES, label=key))
        pairs = data.draw(st.lists(st.tuples(st.sampled_from(query_names), values.text), max_size=4), label="query")
        query = http.query_string(pairs, raw=data.draw(st.booleans(), label="raw bytes"))
        portal.send_as_every_role(method, path, query=query, names=[*query_names, *kwargs])

    request()


def _api_baseline(portal, name):
    """The JSON the endpoint (or its baseline) answers the Admin with: a valid body to start from."""
    target = TABLE[name]
    source = target.baseline or name
    with transaction.atomic():
        response = portal.client("admin").get(portal.url(source))
        transaction.set_rollback(True)
    body = response.json() if response.status_code == 200 else {}
    if not isinstance(body, dict) or "results" in body:
        body = {}
    for field in target.fields:
        body.setdefault(field, "")
    return body


@st.composite
def api_bodies(draw, baseline, choices):
    """A valid body with a field or two made hostile, dropped or cut short (a partial nested
    object), or moved to another deployment; or a body of the wrong shape altogether, or nesting
    deeper than any parser's stack."""
    kind = draw(st.sampled_from(["mutate"] * 5 + ["cross", "shape", "deep"]))
    crossable = sorted(k for k in baseline if k in choices)
    if kind == "cross" and crossable:
        # A valid body that moves the object to another scope: another deployment, another status.
        key = draw(st.sampled_from(crossable))
        others = [v for v in choices[key] if v != baseline[key]] or choices[key]
        return {**baseline, key: draw(st.sampled_from(others))}
    if kind == "shape":
        return draw(values.json_value)
    if kind == "deep":
        inner = draw(values.deep_json)
        return draw(st.sampled_from([inner, f'{{"patient": {inner}}}', f'{{"status": {inner}}}']))
    body = copy.deepcopy(baseline)
    paths = [(k,) for k in body] + [(k, inner) for k, v in body.items() if isinstance(v, dict) for inner in v]
    for path in draw(st.lists(st.sampled_from(paths or [("x",)]), min_size=1, max_size=2, unique=True)):
        *parents, key = path
        holder = body
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder.get(parent), dict) else {}
        current = holder.get(key)
        choice = draw(st.sampled_from(["value", "drop", "cut"] if isinstance(current, dict) else ["value", "drop"]))
        if choice == "drop":
            holder.pop(key, None)
        elif choice == "cut":
            kept = draw(st.lists(st.sampled_from(sorted(current)), max_size=len(current) - 1, unique=True))
            holder[key] = {k: current[k] for k in kept}
        else:
            holder[key] = draw(st.one_of(values.json_value, st.sampled_from(choices.get(key, [current]))))
    return body


API = sorted(name for name, target in TABLE.items() if target.kind == "api")
API_CONTENT_TYPES = ["application/json", "application/json", "application/json", "text/plain", "multipart/form-data"]


@pytest.mark.parametrize("name", API)
def test_no_api_endpoint_answers_a_5xx_to_hostile_json_as_any_role(name, portal):
    path = portal.url(name)
    methods = sorted(m.upper() for m in resolve(path).func.actions if m != "get")
    baseline = _api_baseline(portal, name)
    # Valid values a field could take instead of its own: another deployment, another status.
    choices = {"deployment": ["matrix", "other"], "status": WorklistEntry.Status.values}
    names = sorted({*baseline, *(k for v in baseline.values() if isinstance(v, dict) for k in v)})

    @fuzz(STRUCTURED_EXAMPLES)
    @given(st.data())
    def send(data):
        method = data.draw(st.sampled_from(methods), label="method")
        value = data.draw(api_bodies(baseline, choices), label="body")
        how = data.draw(values.charset, label="charset")
        body = http.json_body(value, how, ascii_only=data.draw(st.booleans(), label="ascii"))
        content_type = http.content_type(data.draw(st.sampled_from(API_CONTENT_TYPES), label="type"), how)
        portal.send_as_every_role(method, path, body, content_type, names=names)

    send()


UPLOADS = sorted(name for name, target in TABLE.items() if target.kind == "upload")


@pytest.mark.parametrize("name", UPLOADS)
def test_no_import_answers_a_5xx_to_odd_files_as_any_role(name, portal):
    page = portal.page(name)
    assert page.files, f"{name}: its page shows no file input"
    fields = {**page.values, "d": portal.world.deployment.slug}
    path = portal.url(name)
    if TABLE[name].file == "csv":
        good_row = {
            "patient_id": "FZ1",
            "family_name": "Fuzz",
            "given_name": "Ada",
            "scheduled_date": datetime.date.today().isoformat(),
            "scheduled_time": "10:00",
            "station": portal.world.modality.aet,
        }
        files = values.csv_files(csv_import.COLUMNS, csv_import.REQUIRED, good_row).map(lambda c: [("day.csv", c)])
    else:
        files = st.lists(values.config_files(render_for(portal.world.deployment)), min_size=1, max_size=2)

    @fuzz(STRUCTURED_EXAMPLES)
    @given(st.data())
    def post(data):
        sent = dict(fields)
        if data.draw(st.booleans(), label="confirm"):
            sent["confirm"] = "on"
        uploads = [(page.files[0], filename, content) for filename, content in data.draw(files, label="files")]
        body, content_type = http.multipart(sent, uploads, data.draw(values.charset, label="charset"))
        portal.send_as_every_role("POST", path, body, content_type, names=[*fields, *page.files])

    post()


def _known_hostile_bodies(baseline, choices):
    """The bodies that once answered 500, sent at every run whatever Hypothesis draws: each nested
    object cut to one field, each field a lone surrogate or a NUL, a move to every other value of a
    scoping field, the wrong shape, and nesting 100,000 deep."""
    yield values.deep(100_000)
    yield f'{{"patient": {values.deep(100_000)}}}'
    yield []
    for key, value in baseline.items():
        if isinstance(value, dict):
            for inner in value:
                yield {**baseline, key: {inner: value[inner]}}
        yield {**baseline, key: "\ud800"}
        yield {**baseline, key: "a\x00b"}
        for other in choices.get(key, []):
            if other != value:
                yield {**baseline, key: other}


@pytest.mark.parametrize("name", API)
def test_no_api_endpoint_answers_a_5xx_to_the_bodies_that_once_did_as_any_role(name, portal):
    path = portal.url(name)
    methods = sorted(m.upper() for m in resolve(path).func.actions if m != "get")
    baseline = _api_baseline(portal, name)
    choices = {"deployment": ["matrix", "other"], "status": WorklistEntry.Status.values}
    names = sorted({*baseline, *(k for v in baseline.values() if isinstance(v, dict) for k in v)})
    utf8 = values.CHARSETS[0]
    for body in _known_hostile_bodies(baseline, choices):
        for method in methods:
            portal.send_as_every_role(
                method, path, http.json_body(body, utf8, ascii_only=True), "application/json", names=names
            )


def _known_hostile_files(name, portal):
    """The files that once answered 500, sent at every run."""
    if TABLE[name].file == "csv":
        header = ",".join(csv_import.REQUIRED)
        yield "day.csv", f"{header}\rFZ1,Fuzz\r".encode()  # CR-only line endings
        yield "day.csv", ("x" * 140_000 + "\n").encode()  # a field over csv's 128 KiB limit
        return
    config = json.loads(render_for(portal.world.deployment).get("orthanc.json", b"{}"))
    for key, value in [("Name", "a\x00b"), ("DicomPort", "²"), ("HttpPort", "abc")]:
        yield "orthanc.json", json.dumps({**config, key: value}).encode()
    uri = {"PostgreSQL": {"EnableIndex": True, "ConnectionUri": "postgresql://u:p@h:abc/db"}}
    yield "postgresql.json", json.dumps(uri).encode()


@pytest.mark.parametrize("name", UPLOADS)
def test_no_import_answers_a_5xx_to_the_files_that_once_did_as_any_role(name, portal):
    page = portal.page(name)
    fields = {**page.values, "d": portal.world.deployment.slug}
    for filename, content in _known_hostile_files(name, portal):
        for confirm in (False, True):
            sent = {**fields, "confirm": "on"} if confirm else dict(fields)
            body, content_type = http.multipart(sent, [(page.files[0], filename, content)], values.CHARSETS[0])
            portal.send_as_every_role("POST", portal.url(name), body, content_type, names=[*fields, *page.files])
