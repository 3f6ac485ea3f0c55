"""The import command and upload form, and the security page."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from deployments.models import Deployment, OrthancUser
from tests.conftest import ROOT, test_database_url

from .test_importer import CONFIG, DEBIAN, make_deployment


def run_import(*args):
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", "import_orthanc_config", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def debian_copy(tmp_path):
    if not (DEBIAN / "orthanc.json").exists():
        pytest.fail("/etc/orthanc/orthanc.json is missing: apt-get install orthanc", pytrace=False)
    shutil.copytree(DEBIAN, tmp_path / "etc")
    return tmp_path / "etc"


# ---------------------------------------------------------------- command


def test_import_command_reads_a_folder_and_prints_the_report(transactional_db, debian_copy):
    make_deployment()
    result = run_import("clinic", str(debian_copy))
    assert result.returncode == 0, result.stderr
    assert 'imported: DicomAet = "ORTHANC" (orthanc.json)' in result.stdout
    assert "kept: SslCertificate" in result.stdout
    assert result.stdout.rstrip().endswith("Imported into clinic: 0 critical finding(s).")
    assert Deployment.objects.get(slug="clinic").dicomweb_enabled


def test_import_command_needs_an_existing_deployment(transactional_db, debian_copy):
    result = run_import("nowhere", str(debian_copy))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: no deployment 'nowhere': create it in the portal first, then import into it"
    ]
    assert not Deployment.objects.exists()


def test_import_command_with_a_malformed_file_exits_non_zero_with_one_line(transactional_db, tmp_path):
    make_deployment()
    bad = tmp_path / "orthanc.json"
    bad.write_text('{\n  "HttpPort": 8042,\n  "DicomAet": ORTHANC\n}\n')
    result = run_import("clinic", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: nothing imported: orthanc.json: line 3, column 15: Expecting value"
    ]
    assert Deployment.objects.get(slug="clinic").name == "Clinic clinic"


def test_import_command_with_a_missing_path_says_so(transactional_db, tmp_path):
    make_deployment()
    result = run_import("clinic", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"CommandError: nothing imported: {tmp_path / 'nope'}: no such file or folder"


# ---------------------------------------------------------------- upload form


def upload(name, text):
    return SimpleUploadedFile(name, text.encode(), content_type="application/json")


def test_admin_uploads_a_folders_files_and_reviews_the_report_on_the_adoption_page(admin_client, debian_copy):
    deployment = make_deployment()
    files = [upload(p.name, p.read_text()) for p in sorted(Path(debian_copy).glob("*.json"))]

    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]), {"files": files, "confirm": "on"}, follow=True
    )

    assert response.redirect_chain == [(reverse("deployments:adoption", args=[deployment.slug]), 302)]
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="import-report"' in html
    assert "ServeFolders" in html and "DicomAet = &quot;ORTHANC&quot;" in html
    deployment.refresh_from_db()
    assert deployment.name == "Orthanc" and deployment.dicomweb_enabled


def test_an_upload_with_a_weak_password_shows_the_critical_finding(admin_client):
    deployment = make_deployment()
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload("orthanc.json", CONFIG)], "confirm": "on"},
        follow=True,
    )
    html = response.content.decode()
    assert 'id="import-critical"' in html
    assert "user alice has a default or weak password" in html
    assert OrthancUser.objects.get(username="alice").role == "admin"  # no request filter: everyone could do all


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            [("a.json", '{"HttpPort": 1}'), ("b.json", '{"HttpPort": 2}')],
            "Nothing was imported: HttpPort is defined in both a.json and b.json",
        ),
        # The column and the words after it are Python's json module's, and differ between Python
        # releases (3.13: "column 18: Illegal trailing comma"): only the portal's own part is checked.
        ([("orthanc.json", '{"HttpPort": 8042,,}')], "Nothing was imported: orthanc.json: line 1, column "),
        (
            [("orthanc.json", '{"RegisteredUsers": {"a:b": "Long-enough-passw0rd"}}')],
            "A username cannot contain &#x27;:&#x27;",
        ),
    ],
)
def test_a_bad_upload_shows_one_error_beside_the_field_and_changes_nothing(admin_client, files, message):
    deployment = make_deployment()
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload(n, t) for n, t in files], "confirm": "on"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    field = html.split('id="field-files"', 1)[1].split('id="field-confirm"', 1)[0]
    assert message in field, field
    deployment.refresh_from_db()
    assert deployment.name == "Clinic clinic" and not OrthancUser.objects.exists()


def test_an_upload_needs_the_confirmation(admin_client):
    deployment = make_deployment()
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload("orthanc.json", '{"Name": "New name"}')]},
    )
    assert "field-error" in response.content.decode().split('id="field-confirm"', 1)[1]
    deployment.refresh_from_db()
    assert deployment.name == "Clinic clinic"


def test_viewers_cannot_import(client, viewer_user):
    deployment = make_deployment()
    client.force_login(viewer_user)
    response = client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload("orthanc.json", '{"Name": "Mine"}')], "confirm": "on"},
    )
    assert response.status_code == 403
    deployment.refresh_from_db()
    assert deployment.name == "Clinic clinic"


# ---------------------------------------------------------------- security page


def test_viewer_reads_the_security_page_of_a_live_orthanc_without_fix_links(client, viewer_user, orthanc_factory):
    from deployments.security.runs import security_audit_inline

    deployment = orthanc_factory(execute_lua_enabled=True).save_deployment()
    security_audit_inline(deployment)  # the live part comes from a stored run, as the task or cron makes it
    client.force_login(viewer_user)
    html = client.get(reverse("deployments:security", args=[deployment.slug])).content.decode()
    assert 'data-id="execute-lua-enabled" data-severity="critical"' in html
    assert 'data-id="cve-2026-5437-5445"' in html
    assert "fix-link" not in html


def test_admin_follows_a_fix_link_to_the_field_on_the_settings_page(admin_client):
    deployment = make_deployment(webdav_enabled=True, limit_find_results=0, orthanc_url="http://127.0.0.1:9")
    html = admin_client.get(reverse("deployments:security", args=[deployment.slug]) + "?live=0").content.decode()
    edit = reverse("deployments:edit", args=[deployment.slug])
    form = admin_client.get(edit).content.decode()
    for field in ("webdav_enabled", "limit_find_results"):
        assert f'href="{edit}#field-{field}"' in html
        assert f'id="field-{field}"' in form


def test_every_field_a_finding_can_name_is_on_the_settings_page(admin_client):
    from deployments.security.findings import settings_findings

    everything = Deployment(
        name="x",
        slug="x",
        remote_access_allowed=True,
        authentication_enabled=False,
        webdav_enabled=True,
        execute_lua_enabled=True,
        rest_api_write_to_file_system_enabled=True,
        https_verify_peers=False,
        dicom_always_allow_echo=True,
        dicom_always_allow_store=True,
        dicom_always_allow_find=True,
        dicom_always_allow_find_worklist=True,
        dicom_always_allow_get=True,
        dicom_always_allow_move=True,
        limit_find_results=0,
        limit_find_instances=0,
        dicom_check_called_aet=False,
        overwrite_instances=True,
        index_backend="postgresql",
        pg_host="10.0.0.9",
        pg_tls=False,
    )
    fields = {f.field for f in settings_findings(everything) if f.field} | {
        "ssl_enabled",
        "orthanc_explorer_enabled",
        "dicom_check_modality_host",
    }
    deployment = make_deployment()
    form = admin_client.get(reverse("deployments:edit", args=[deployment.slug])).content.decode()
    missing = sorted(f for f in fields if f'id="field-{f}"' not in form)
    assert not missing
