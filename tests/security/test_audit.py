"""The security audit: pure checks of the saved settings, the secret files' modes, and the live
checks against the real Orthanc of the Debian package."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from deployments.models import Deployment, Modality, OrthancUser
from deployments.security import audit_deployment, has_critical, settings_findings, version_findings
from deployments.versions import parse_version
from tests.conftest import ROOT, test_database_url


def strong():
    return secrets.token_urlsafe(24)


def ids(findings):
    return {f.id for f in findings}


# ---------------------------------------------------------------- saved settings (pure)


def test_the_portals_secure_defaults_give_no_settings_finding():
    assert settings_findings(Deployment(name="x", slug="x")) == []


@pytest.mark.parametrize(
    ("fields", "finding", "severity", "field"),
    [
        (
            {
                "remote_access_allowed": True,
                "authentication_enabled": False,
                "ssl_enabled": True,
                "orthanc_explorer_enabled": False,
            },
            "remote-without-authentication",
            "critical",
            "authentication_enabled",
        ),
        ({"authentication_enabled": False}, "authentication-off", "medium", "authentication_enabled"),
        (
            {"remote_access_allowed": True, "orthanc_explorer_enabled": False},
            "remote-without-https",
            "high",
            "ssl_enabled",
        ),
        (
            {"remote_access_allowed": True, "ssl_enabled": True},
            "explorer-on-remote",
            "medium",
            "orthanc_explorer_enabled",
        ),
        ({"execute_lua_enabled": True}, "execute-lua-enabled", "critical", "execute_lua_enabled"),
        (
            {"rest_api_write_to_file_system_enabled": True},
            "rest-writes-files",
            "high",
            "rest_api_write_to_file_system_enabled",
        ),
        ({"webdav_enabled": True}, "webdav-enabled", "medium", "webdav_enabled"),
        ({"dicom_always_allow_store": True}, "unknown-modalities-store", "high", "dicom_always_allow_store"),
        ({"dicom_always_allow_echo": True}, "unknown-modalities-echo", "low", "dicom_always_allow_echo"),
        ({"dicom_always_allow_find": True}, "unknown-modalities-find", "high", "dicom_always_allow_find"),
        (
            {"dicom_always_allow_find_worklist": True},
            "unknown-modalities-find-worklist",
            "medium",
            "dicom_always_allow_find_worklist",
        ),
        ({"dicom_always_allow_get": True}, "unknown-modalities-get", "high", "dicom_always_allow_get"),
        ({"dicom_always_allow_move": True}, "unknown-modalities-move", "high", "dicom_always_allow_move"),
        ({"limit_find_results": 0}, "limit-find-results-zero", "medium", "limit_find_results"),
        ({"limit_find_instances": 0}, "limit-find-instances-zero", "medium", "limit_find_instances"),
        ({"dicom_check_called_aet": False}, "called-aet-unchecked", "low", "dicom_check_called_aet"),
        ({"https_verify_peers": False}, "https-peers-unverified", "medium", "https_verify_peers"),
        ({"overwrite_instances": True}, "overwrite-instances", "low", "overwrite_instances"),
        (
            {"index_backend": "postgresql", "pg_host": "10.1.1.5", "pg_tls": False},
            "postgresql-without-tls",
            "medium",
            "pg_tls",
        ),
    ],
)
def test_each_insecure_setting_gives_one_finding_linking_to_the_field_that_fixes_it(fields, finding, severity, field):
    deployment = Deployment(name="x", slug="clinic-a", **fields)
    found = [f.link(deployment.slug) for f in settings_findings(deployment)]
    assert [f.id for f in found] == [finding]
    (f,) = found
    assert (f.severity, f.field) == (severity, field)
    assert f.url == reverse("deployments:edit", args=["clinic-a"]) + f"#field-{field}"
    assert f.what and f.why


def test_hostnames_are_flagged_only_while_host_checking_is_on():
    modalities = [Modality(name="us1", aet="US1", host="10.0.0.8"), Modality(name="ws", aet="WS", host="ws.local")]
    on = settings_findings(Deployment(name="x", slug="x"), modalities=modalities)
    assert ids(on) == {"modality-hostnames"}
    assert "ws (ws.local)" in on[0].what and "us1" not in on[0].what
    assert (
        settings_findings(Deployment(name="x", slug="x", dicom_check_modality_host=False), modalities=modalities) == []
    )


def test_a_saved_weak_password_is_flagged_and_an_inactive_account_is_not():
    users = [
        OrthancUser(username="alice", password="bob"),
        OrthancUser(username="old", password="old", is_active=False),
        OrthancUser(username="carol", password=strong()),
    ]
    assert ids(settings_findings(Deployment(name="x", slug="x"), users=users)) == {"weak-password-alice"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.5.7", {"cve-2025-0896", "cve-2026-5437-5445", "export-always-allowed"}),
        ("1.5.8", {"cve-2026-5437-5445", "export-always-allowed"}),
        ("1.10.1", {"cve-2026-5437-5445", "export-always-allowed"}),
        ("1.12.0", {"cve-2026-5437-5445"}),
        ("1.12.7", {"cve-2026-5437-5445"}),
        ("1.12.10", {"cve-2026-5437-5445"}),
        ("1.12.11", set()),
        ("1.13.0", set()),
        ("mainline", {"version-unknown"}),
    ],
)
def test_orthanc_versions_with_published_vulnerabilities_are_flagged(version, expected):
    assert ids(version_findings(version)) == expected


def test_the_cve_finding_names_every_cve_and_what_the_clinic_can_do():
    (finding,) = [f for f in version_findings("1.12.7") if f.id == "cve-2026-5437-5445"]
    assert "CVE-2026-5437 to CVE-2026-5445 (fixed in 1.12.11)" in finding.what
    assert "the orthancteam/orthanc:26.4.2 image that docker-compose.yml pins (Orthanc 1.12.11)" in finding.why
    assert "Debian's packages (1.10.1 in Debian 12, 1.12.7 in Debian 13)" in finding.why
    assert "keep the REST API off the network" in finding.why


@pytest.mark.parametrize(
    ("last_version", "saved", "refused"),
    [
        ("1.10.1", "2023b", True),
        ("1.12.0", "2023b", True),
        ("1.12.1", "2023b", False),
        ("1.10.1", "2021b", False),
        ("", "2023b", False),  # not known yet: nothing to judge by
    ],
)
def test_a_saved_log_edition_that_the_deployments_orthanc_refuses_is_flagged(last_version, saved, refused):
    d = Deployment(name="x", slug="x", last_version=last_version, deidentify_logs_dicom_version=saved)
    findings = {f.id: f for f in settings_findings(d)}
    assert ("deidentify-version-refused" in findings) == refused
    if refused:
        assert (
            f"Orthanc {last_version} refuses '2023b' and would not start" in findings["deidentify-version-refused"].what
        )


# ---------------------------------------------------------------- against a real Orthanc


def start_with(orthanc_factory, users=(), **fields):
    instance = orthanc_factory(start=False, **fields)
    instance.users.extend(users)
    instance.write_config()
    instance.start()
    return instance


def test_a_secure_live_orthanc_has_no_critical_finding(orthanc_factory, db, orthanc_version):
    instance = start_with(orthanc_factory, [OrthancUser(username="sonographer", password=strong(), role="operator")])
    deployment = instance.save_deployment()

    findings = audit_deployment(deployment)

    assert not has_critical(findings), [str(f) for f in findings]
    # Releases up to 1.12.10 (Debian 12's and 13's included) are flagged for the published CVEs.
    assert ("cve-2026-5437-5445" in ids(findings)) == (parse_version(orthanc_version) <= (1, 12, 10))
    assert "execute-script-denied" in ids(findings)
    assert "live-default-credentials" not in ids(findings)


def test_default_credentials_that_the_live_orthanc_accepts_are_critical(orthanc_factory, db):
    instance = start_with(orthanc_factory, [OrthancUser(username="alice", password="bob", role="viewer")])
    deployment = instance.save_deployment()

    findings = {f.id: f for f in audit_deployment(deployment)}

    finding = findings["live-default-credentials"]
    assert finding.severity == "critical"
    assert "a well-known default password for: alice" in finding.what
    assert "orthanc" not in finding.what  # the portal's account has no default password
    assert "bob" not in finding.what + finding.why  # the password itself is never shown
    assert findings["live-default-credentials"].url == reverse("deployments:orthanc_users")
    alice = deployment.orthanc_users.get(username="alice")
    assert findings["weak-password-alice"].url == reverse("deployments:user_edit", args=[deployment.slug, alice.pk])


def test_a_credentials_file_readable_by_others_is_critical(orthanc_factory, db):
    instance = orthanc_factory()
    deployment = instance.save_deployment()
    credentials = Path(deployment.config_dir) / "credentials.json"
    assert not ids(audit_deployment(deployment, live=False)) & {"credentials-file-readable"}

    os.chmod(credentials, 0o644)

    finding = {f.id: f for f in audit_deployment(deployment, live=False)}["credentials-file-readable"]
    assert finding.severity == "critical" and "0644" in finding.what


def test_an_orthanc_that_checks_no_password_is_critical(orthanc_factory, db):
    instance = orthanc_factory(authentication_enabled=False)
    deployment = instance.save_deployment()

    findings = {f.id: f for f in audit_deployment(deployment)}

    assert findings["live-authentication-not-enforced"].severity == "critical"
    assert "authentication-off" in findings


PERMISSIVE_FILTER = "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n  return true\nend\n"


def test_a_non_admin_reaching_execute_script_is_critical(orthanc_factory, db):
    # An Orthanc configured by hand: Lua over REST on and a filter that lets everyone through.
    instance = orthanc_factory(start=False, execute_lua_enabled=True)
    instance.users.append(OrthancUser(username="viewer1", password=strong(), role="viewer"))
    instance.write_config()
    (Path(instance.deployment.config_dir) / "access.lua").write_text(PERMISSIVE_FILTER)
    instance.start()
    deployment = instance.save_deployment()

    findings = {f.id: f for f in audit_deployment(deployment)}

    assert findings["execute-script-reachable"].severity == "critical"
    assert "viewer1 (viewer, HTTP 200)" in findings["execute-script-reachable"].what
    assert findings["execute-lua-enabled"].severity == "critical"


def test_execute_script_is_not_tested_without_a_non_admin_user(orthanc_factory, db):
    deployment = orthanc_factory().save_deployment()
    finding = {f.id: f for f in audit_deployment(deployment)}["execute-script-not-tested"]
    assert finding.severity == "info" and "not tested" in finding.what


def test_an_unreachable_orthanc_reports_that_the_live_checks_did_not_run(db, tmp_path):
    from tests.conftest import free_port

    deployment = Deployment.objects.create(
        name="Gone",
        slug="gone",
        orthanc_url=f"http://127.0.0.1:{free_port()}",
        service_password=strong(),
        config_dir=str(tmp_path),
    )
    findings = audit_deployment(deployment)
    assert ids(findings) == {"live-not-checked"}
    assert "unreachable" in findings[0].why


# ---------------------------------------------------------------- the command, as cron runs it


def run_command(*args):
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", "audit_deployment", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_audit_command_exits_0_without_critical_finding_and_1_with_one(
    orthanc_factory, transactional_db, orthanc_version
):
    instance = orthanc_factory()
    deployment = instance.save_deployment()

    ok = run_command(deployment.slug)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    flagged = f"HIGH     cve-2026-5437-5445: Orthanc {orthanc_version} is affected" in ok.stdout
    assert flagged == (parse_version(orthanc_version) <= (1, 12, 10))
    assert f"{deployment.slug}: 0 critical" in ok.stdout

    os.chmod(Path(deployment.config_dir) / "credentials.json", 0o640)
    bad = run_command(deployment.slug)
    assert bad.returncode == 1
    assert "CRITICAL credentials-file-readable" in bad.stdout


def test_audit_command_with_an_unknown_slug_exits_2_with_one_line(transactional_db):
    result = run_command("no-such-clinic")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["CommandError: no deployment 'no-such-clinic'"]


def test_a_script_orthanc_runs_that_others_may_change_is_critical(orthanc_factory, db):
    instance = orthanc_factory()
    deployment = instance.save_deployment()
    script = Path(deployment.config_dir) / "portal_worklists.py"
    assert script.exists(), "the portal's worklist server is the default"
    assert not ids(audit_deployment(deployment, live=False)) & {
        "portal_worklists-file-writable",
        "access-file-writable",
    }

    os.chmod(script, 0o666)  # noqa: S103 - the fault this test shows
    os.chmod(Path(deployment.config_dir) / "access.lua", 0o664)

    findings = {f.id: f for f in audit_deployment(deployment, live=False)}
    assert findings["portal_worklists-file-writable"].severity == "critical"
    assert "0666" in findings["portal_worklists-file-writable"].what
    assert "0664" in findings["access-file-writable"].what


@pytest.mark.parametrize("offline", ["--no-live", "unreachable"])
def test_a_known_default_password_is_critical_offline_too_and_fails_the_cron_audit(transactional_db, tmp_path, offline):
    from tests.conftest import free_port

    deployment = Deployment.objects.create(
        name="Offline",
        slug="offline",
        orthanc_url=f"http://127.0.0.1:{free_port()}",  # nothing answers there
        service_password=strong(),
        config_dir=str(tmp_path),
    )
    OrthancUser.objects.create(deployment=deployment, username="admin", password="admin", role="admin")

    result = run_command(deployment.slug, *(["--no-live"] if offline == "--no-live" else []))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "CRITICAL weak-password-admin: Orthanc user admin has a default or weak password" in result.stdout
    assert "admin/admin" not in result.stdout and ": admin —" not in result.stdout
