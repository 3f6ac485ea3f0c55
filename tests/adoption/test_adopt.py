"""Adopting a running Orthanc started from a Debian-style commented folder: import, review, first
push, verified; against the real Orthanc of the machine's package, checked over real HTTP."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from deployments.models import ConfigRevision, Deployment, PushLogin
from portal.models import AuditEntry, Job
from tests.conftest import ROOT, test_database_url, wait_for

from .conftest import READS, USERS, Downtime, reset_downtime

pytestmark = pytest.mark.orthanc


def manage(*args, stdin=""):
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def clinic_files(folder):
    """The folder's files as Orthanc sees them (the push's lock file aside)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


def all_rights(orthanc):
    return {name: orthanc.rights(name, password) for name, password in USERS.items()}


def assert_no_more_rights(before, after):
    for user, rights in after.items():
        assert "refused" not in rights.values(), f"{user} no longer logs in with the old password: {rights}"
        for probe, state in rights.items():
            if state == "allowed" and probe not in READS:
                assert before[user][probe] == "allowed", f"{user} may now {probe}, which the old filter refused"
        for probe in READS - {"search"}:
            assert rights[probe] == before[user][probe], f"{user}: {probe} changed"


def test_a_clinics_orthanc_is_adopted_from_the_page_with_an_admin_account_typed_once(
    clinic_orthanc, transactional_db, admin_client, celery_worker_factory
):
    orthanc = clinic_orthanc()
    deployment = orthanc.deployment()
    before = all_rights(orthanc)
    assert before["alice"]["delete"] == "forbidden" and before["admin"]["delete"] == "allowed", before
    yardstick = reset_downtime(orthanc)
    worker = celery_worker_factory(queues=[deployment.queue])

    # 1. import: every *.json of the folder and the Lua script the configuration loads
    files = [
        SimpleUploadedFile(p.name, p.read_bytes(), content_type="application/json")
        for p in sorted(orthanc.folder.iterdir())
        if p.suffix in (".json", ".lua")
    ]
    response = admin_client.post(
        reverse("deployments:import", args=["clinic"]), {"files": files, "confirm": "on"}, follow=True
    )
    # 2. review: the roles the old filter gave, nothing to decide, nothing pushed yet
    html = response.content.decode()
    assert 'data-step="review"' in html
    roles = {u.username: (u.role, u.is_active) for u in deployment.orthanc_users.all()}
    assert roles == {"admin": ("admin", True), "alice": ("viewer", True), "bob": ("viewer", True)}
    assert 'id="import-decide"' not in html
    assert "clinic-filter.lua defines IncomingHttpRequestFilter" in html
    assert not deployment.revisions.exists()

    # 3. the first push, with the clinic's admin account typed once
    with Downtime(orthanc, ("bob", USERS["bob"])) as down:
        response = admin_client.post(
            reverse("deployments:adoption", args=["clinic"]),
            {"way": "account", "username": "admin", "password": USERS["admin"]},
        )
        assert response.status_code == 302
        wait_for(
            lambda: not Job.objects.filter(state__in=["pending", "running"]).exists(), timeout=90, message="the push"
        )

    # 4. verified
    revision = deployment.revisions.get()
    assert revision.state == ConfigRevision.State.APPLIED, revision.error
    html = admin_client.get(reverse("deployments:adoption", args=["clinic"])).content.decode()
    assert 'data-step="verified"' in html and "3 of 3 imported account(s) log in" in html
    portal = (deployment.service_username, deployment.service_password)
    assert requests.get(orthanc.url + "/system", auth=portal, timeout=5).status_code == 200
    assert_no_more_rights(before, all_rights(orthanc))
    assert down.longest <= yardstick + 1.0, f"down {down.longest:.2f} s; its own reset: {yardstick:.2f} s"
    moved = sorted(p.name for p in (orthanc.folder / f"before-portal-{revision.number}").iterdir())
    assert {"dicomweb.json", "serve-folders.json", "worklists.json"} <= set(moved)

    # The typed password went to the push only: gone from the database, never in a log or message.
    assert not PushLogin.objects.exists()
    secret = USERS["admin"]
    assert secret not in worker.output()
    assert secret not in json.dumps(list(Job.objects.values("message")))
    assert secret not in json.dumps(list(AuditEntry.objects.values("summary", "changes")))
    assert secret not in revision.error + revision.log_tail
    assert "Orthanc admin account admin" in AuditEntry.objects.get(summary__startswith="first push").summary


def test_the_command_adopts_a_folder_without_credentials_json_and_says_what_happened_at_each_step(
    clinic_orthanc, transactional_db
):
    orthanc = clinic_orthanc(credentials_file=False)
    deployment = orthanc.deployment()
    before = all_rights(orthanc)

    # Without a way in, the push stops before Orthanc is touched and says what to do.
    manage("import_orthanc_config", "clinic", str(orthanc.folder))
    plain = manage("push_config", "clinic")
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr
    assert "it does not accept the password of portal (401)" in plain.stderr
    assert "--admin-user" in plain.stderr and "Nothing changed: the previous files are back" in plain.stderr
    assert orthanc.answers(("admin", USERS["admin"]))
    assert not (orthanc.folder / "access.lua").exists() and (orthanc.folder / "dicomweb.json").exists()

    # A wrong password: the same, naming the account.
    wrong = manage("push_config", "clinic", "--admin-user", "admin", "--admin-password-stdin", stdin="nope\n")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "it does not accept the password of admin (401)" in wrong.stderr
    # A GET-only account: the old filter does not let it reset Orthanc.
    viewer = manage("push_config", "clinic", "--admin-user", "bob", "--admin-password-stdin", stdin=USERS["bob"])
    assert "its request filter does not let bob call /tools/reset (403)" in viewer.stderr
    assert set(deployment.revisions.values_list("state", flat=True)) == {"failed"}
    assert orthanc.answers(("admin", USERS["admin"]))

    # The guided command: import, review, push with the admin account, verified.
    with Downtime(orthanc, ("bob", USERS["bob"])) as down:
        adopted = manage(
            "adopt_orthanc", "clinic", str(orthanc.folder), "--admin-user", "admin", "--admin-password-stdin",
            "--yes", stdin=USERS["admin"] + "\n",
        )  # fmt: skip
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    out = adopted.stdout
    assert "Orthanc user alice: viewer" in out and "Orthanc user admin: admin" in out
    assert "0 user(s) to decide" in out, out
    assert "applied. Adopted: the portal's account answers with the new configuration" in out
    assert "3 of 3 imported account(s) log in with their old passwords" in out
    assert USERS["admin"] not in out + adopted.stderr
    assert down.longest < 10, down.longest
    assert_no_more_rights(before, all_rights(orthanc))
    credentials = orthanc.folder / "credentials.json"
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    assert deployment.adoptions.first().verified_at


def test_a_failed_first_push_puts_the_old_files_back_and_orthanc_keeps_answering(clinic_orthanc, transactional_db):
    orthanc = clinic_orthanc()
    orthanc.deployment()
    manage("import_orthanc_config", "clinic", str(orthanc.folder))
    deployment = Deployment.objects.get(slug="clinic")
    before = clinic_files(orthanc.folder)
    # A DICOM port that another program holds: Orthanc exits on reading the new files.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    Deployment.objects.filter(pk=deployment.pk).update(dicom_port=port, service_kind=Deployment.ServiceKind.LOCAL)
    try:
        result = manage(
            "push_config", "clinic", "--admin-user", "admin", "--admin-password-stdin", stdin=USERS["admin"]
        )
    finally:
        blocker.close()

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the DICOM port {port} is already in use by another program" in result.stderr
    assert "The previous configuration was restored and Orthanc runs it again." in result.stderr
    assert clinic_files(orthanc.folder) == before, "the clinic's files are not as they were"
    assert not list(orthanc.folder.glob("before-portal-*"))
    assert orthanc.answers(("admin", USERS["admin"]))
    revision = deployment.revisions.get()
    assert revision.state == ConfigRevision.State.FAILED and "already in use" in revision.error
    assert not deployment.adoptions.first().verified_at


def test_a_clinics_orthanc_run_by_the_service_control_is_adopted_by_a_restart(clinic_orthanc, transactional_db):
    orthanc = clinic_orthanc()
    deployment = orthanc.deployment(service_kind=Deployment.ServiceKind.LOCAL)
    before = all_rights(orthanc)

    # In one run, without an admin account: the service control restarts Orthanc on the new files.
    result = manage("adopt_orthanc", "clinic", str(orthanc.folder), "--yes")

    assert result.returncode == 0, result.stderr
    assert "Adopted: the portal's account answers with the new configuration" in result.stdout
    deployment.refresh_from_db()
    assert deployment.dicomweb_enabled and not deployment.worklists_enabled  # the push used the imported rows
    assert (
        "dicom-web"
        in requests.get(
            orthanc.url + "/plugins", auth=(deployment.service_username, deployment.service_password), timeout=5
        ).json()
    )
    portal = (deployment.service_username, deployment.service_password)
    assert requests.get(orthanc.url + "/system", auth=portal, timeout=5).status_code == 200
    assert_no_more_rights(before, all_rights(orthanc))
    assert Path(orthanc.folder / "access.lua").read_text().startswith("-- Generated by the Orthanc Clinic Portal")
