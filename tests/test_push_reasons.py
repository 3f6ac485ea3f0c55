"""Reasons where the admin looks: a failed push's cause in push_config's output, on the revision
and on the deployment page; and each settings page marks a value Orthanc does not run yet."""

import json
import socket

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from deployments.models import ConfigRevision, Deployment, Modality, OrthancUser
from deployments.orthanc_log import failure_reason
from deployments.push import deployment_push, revision_create
from deployments.render import render_for
from deployments.state import model_state


def test_the_cause_is_read_from_orthancs_error_lines_of_both_releases():
    old = (
        "W1201 15:20:44.38 main.cpp:1] Orthanc version: 1.10.1\n"
        "E1201 15:20:44.386338 OrthancException.cpp:58] The TCP port of the DICOM server is privileged or already "
        "in use:  (port = 18943) cannot create network: TCP Initialization Error: Address already in use\n"
        "E1201 15:20:44.386443 ServerContext.cpp:430] INTERNAL ERROR: ServerContext::Stop() should be invoked "
        "manually to avoid mess in the destruction order!\n"
        "E1201 15:20:44.896682 main.cpp:2074] Uncaught exception, stopping now: [The TCP port of the DICOM server "
        "is privileged or already in use] (code 2004)\n"
    )
    assert failure_reason(old).startswith("the DICOM port 18943 is already in use by another program")
    new = (
        "E1201 15:23:38.060429             MAIN OrthancException.cpp:62] Error while using a shared library "
        "(plugin): Inexistent path to plugin: /usr/share/orthanc/plugins/libOrthancPython.so\n"
    )
    assert failure_reason(new) == (
        "the plugin /usr/share/orthanc/plugins/libOrthancPython.so is missing: install the Debian package "
        "orthanc-python on the Orthanc host, or turn the feature off"
    )
    other = "E1201 10:00:00.000000 LuaContext.cpp:9] Lua: attempt to call a nil value\n"
    assert failure_reason(other) == "Orthanc's last error: Lua: attempt to call a nil value"
    assert failure_reason("W1201 10:00:00.0 main.cpp:1] all well\n") == ""


@pytest.mark.orthanc
def test_a_push_with_the_dicom_port_taken_says_why_in_the_command_the_revision_and_the_pages(
    orthanc, orthanc_deployment, admin_client
):
    revision_create(orthanc_deployment, reason="good")
    deployment_push(orthanc_deployment.pk)
    good_port = orthanc_deployment.dicom_port
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    response = admin_client.post(
        reverse("deployments:edit", args=[orthanc_deployment.slug]),
        {**_form_values(orthanc_deployment), "dicom_port": port},
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    try:
        with pytest.raises(CommandError) as failed:
            call_command("push_config", orthanc_deployment.slug)
    finally:
        blocker.close()

    said = f"the DICOM port {port} is already in use by another program"
    assert said in str(failed.value)
    assert "The previous configuration was restored and Orthanc runs it again." in str(failed.value)
    revision = orthanc_deployment.revisions.first()
    assert revision.state == ConfigRevision.State.FAILED and said in revision.error
    assert orthanc.client().system()["DicomPort"] == good_port
    detail = admin_client.get(reverse("deployments:detail", args=[orthanc_deployment.slug])).content.decode()
    assert 'id="push-failed"' in detail and said in detail
    edit = admin_client.get(reverse("deployments:edit", args=[orthanc_deployment.slug])).content.decode()
    field = edit.split('id="field-dicom_port"', 1)[1].split('id="field-', 1)[0]
    assert 'data-state="failed"' in field and "failed to apply" in field
    assert f"in force: <code>{good_port}</code>" in field
    assert 'class="form-text unapplied' not in edit.split('id="field-http_port"', 1)[1].split('id="field-', 1)[0]


@pytest.mark.orthanc
def test_a_push_naming_a_plugin_that_is_not_installed_says_which_package_to_install(
    orthanc, orthanc_deployment, settings, tmp_path
):
    revision_create(orthanc_deployment, reason="good")
    deployment_push(orthanc_deployment.pk)
    settings.ORTHANC_PLUGINS_DIR = str(tmp_path / "no-plugins-here")
    # Only the DICOMweb plugin, so that both releases name it (1.12 stops at the first one missing).
    Deployment.objects.filter(pk=orthanc_deployment.pk).update(dicomweb_enabled=True, worklists_enabled=False)

    with pytest.raises(CommandError) as failed:
        call_command("push_config", orthanc_deployment.slug)

    assert "libOrthancDicomWeb.so" in str(failed.value)
    assert "install the Debian package orthanc-dicomweb" in str(failed.value)
    assert "The previous configuration was restored" in str(failed.value)
    assert orthanc.client().system()


def _form_values(deployment):
    from deployments.forms import DeploymentForm

    form = DeploymentForm(instance=deployment)
    values = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(value, bool):
            if value:
                values[name] = "on"
        elif value is not None:
            values[name] = value
    return values


def _applied(deployment):
    """An applied revision of the deployment as it is now (as after a successful push)."""
    revision = ConfigRevision.objects.create(deployment=deployment, number=1, state=ConfigRevision.State.APPLIED)
    revision.files = render_for(deployment)
    revision.state_json = json.dumps(model_state(deployment))
    revision.save()
    return revision


@pytest.fixture
def applied_deployment(db):
    deployment = Deployment.objects.create(
        name="Marks", slug="marks", orthanc_url="http://127.0.0.1:9", config_dir="/nonexistent/config",
        service_password="S3rvice-" + "x" * 20, dicom_port=4242,
    )  # fmt: skip
    OrthancUser.objects.create(deployment=deployment, username="alice", password="Al1ce-long-Passw0rd", role="viewer")
    OrthancUser.objects.create(deployment=deployment, username="gone", password="G0ne-long-Passw0rd", role="viewer")
    _applied(deployment)
    return deployment


def test_each_settings_page_marks_what_is_saved_but_not_applied_yet(applied_deployment, admin_client):
    d = applied_deployment
    admin_client.post(reverse("deployments:edit", args=[d.slug]), {**_form_values(d), "dicom_port": 4343})
    alice = d.orthanc_users.get(username="alice")
    admin_client.post(
        reverse("deployments:user_edit", args=[d.slug, alice.pk]),
        {"username": "alice", "role": "operator", "is_active": "on"},
    )
    admin_client.post(reverse("deployments:user_delete", args=[d.slug, d.orthanc_users.get(username="gone").pk]))
    assert d.revisions.filter(state="pending").count() == 3  # nobody pushed them: no worker here

    edit = admin_client.get(reverse("deployments:edit", args=[d.slug])).content.decode()
    field = edit.split('id="field-dicom_port"', 1)[1].split('id="field-', 1)[0]
    assert (
        'data-state="pending"' in field and "saved, not applied yet" in field and "in force: <code>4242</code>" in field
    )
    assert edit.count('class="form-text unapplied') == 1, "only the changed value is marked"
    assert 'id="unapplied-pending"' in edit
    users = admin_client.get(reverse("deployments:orthanc_users")).content.decode()
    assert "role: <strong>saved, not applied yet</strong> · in force: <code>viewer</code>" in users
    assert "<s>gone</s>" in users and "deleted, not applied yet" in users
    user_page = admin_client.get(reverse("deployments:user_edit", args=[d.slug, alice.pk])).content.decode()
    role = user_page.split('id="field-role"', 1)[1].split('id="field-', 1)[0]
    assert "saved, not applied yet" in role and "in force: <code>viewer</code>" in role


def test_a_modality_changed_or_added_is_marked_until_a_push_applies_it(applied_deployment, admin_client):
    d = applied_deployment
    us1 = Modality.objects.create(deployment=d, name="US1", aet="US1", host="127.0.0.1", port=104)
    ConfigRevision.objects.filter(deployment=d).delete()
    _applied(d)  # US1 on port 104 is in force
    Modality.objects.filter(pk=us1.pk).update(port=11112)
    Modality.objects.create(deployment=d, name="US2", aet="US2", host="127.0.0.1", port=105)

    page = admin_client.get(reverse("deployments:modalities")).content.decode()
    row = page.split(">US1</a>", 1)[1].split("</tr>", 1)[0]
    assert "port: <strong>saved, not applied yet</strong> · in force: <code>104</code>" in row
    row = page.split(">US2</a>", 1)[1].split("</tr>", 1)[0]
    assert 'data-state="pending"><strong>saved, not applied yet</strong>' in row
    form = admin_client.get(reverse("deployments:modality_edit", args=[d.slug, us1.pk])).content.decode()
    port = form.split('id="field-port"', 1)[1].split('id="field-', 1)[0]
    assert "in force: <code>104</code>" in port


def test_a_deployment_never_applied_says_so_once_instead_of_marking_every_value(db, admin_client):
    d = Deployment.objects.create(
        name="Fresh", slug="fresh", orthanc_url="http://127.0.0.1:9", config_dir="/nonexistent/c",
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip
    edit = admin_client.get(reverse("deployments:edit", args=[d.slug])).content.decode()
    assert 'id="nothing-applied"' in edit and 'class="form-text unapplied' not in edit


def test_a_revision_applied_before_revisions_kept_their_models_marks_nothing(db, admin_client):
    d = Deployment.objects.create(
        name="Old", slug="old", orthanc_url="http://127.0.0.1:9", config_dir="/nonexistent/c",
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip
    ConfigRevision.objects.create(deployment=d, number=1, state=ConfigRevision.State.APPLIED)
    edit = admin_client.get(reverse("deployments:edit", args=[d.slug])).content.decode()
    assert 'id="nothing-applied"' not in edit and 'class="form-text unapplied' not in edit


def test_an_unexpected_error_during_a_push_fails_the_revision_with_a_sentence_never_leaving_it_applying(db, tmp_path):
    folder = tmp_path / "etc"
    (folder / "odd.json").mkdir(parents=True)  # a folder where Orthanc's files are: reading it fails
    d = Deployment.objects.create(
        name="Odd", slug="odd", orthanc_url="http://127.0.0.1:9", config_dir=str(folder),
        service_password="S3rvice-" + "x" * 20,
    )  # fmt: skip

    with pytest.raises(CommandError) as failed:
        call_command("push_config", d.slug)

    revision = d.revisions.get()
    assert revision.state == ConfigRevision.State.FAILED
    assert revision.error.startswith("the push stopped on an unexpected error (IsADirectoryError")
    assert str(failed.value) == f"push failed: {revision.error}"
