"""Hostile configuration files: every value is checked by the same validators as the forms, a
bad one gives one clear report line, and nothing is imported or changed."""

import json

import pytest
from django.urls import reverse

from deployments.importer import ConfigImportError, import_texts
from deployments.models import Deployment, Modality, OrthancUser

from .test_import_pages import run_import, upload
from .test_importer import make_deployment


def _unchanged(deployment):
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert fresh.name == deployment.name and fresh.storage_dir == deployment.storage_dir
    assert fresh.extra_config == deployment.extra_config
    assert not Modality.objects.exists() and not OrthancUser.objects.exists()


def test_a_nul_byte_in_an_uploaded_configuration_is_refused_and_every_page_still_answers(admin_client):
    deployment = make_deployment(storage_dir="/srv/clinic/storage")
    text = json.dumps({"StorageDirectory": "/var/lib/orthanc/db\u0000x", "Name": "Nul clinic"})
    response = admin_client.post(
        reverse("deployments:import", args=[deployment.slug]),
        {"files": [upload("orthanc.json", text)], "confirm": "on"},
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was imported: orthanc.json: StorageDirectory: A NUL character (U+0000) is not allowed." in html
    _unchanged(deployment)
    for url in (reverse("dashboard"), reverse("backups:dashboard"), reverse("deployments:detail", args=["clinic"])):
        assert admin_client.get(url).status_code == 200, url


def test_the_import_command_refuses_a_nul_byte_in_a_kept_key_with_one_line(transactional_db, tmp_path):
    deployment = make_deployment()
    bad = tmp_path / "orthanc.json"
    bad.write_text(json.dumps({"HttpPort": 8042, "ServeFolders": {"/web": "/srv/\u0000"}}))
    result = run_import("clinic", str(bad))

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: nothing imported: orthanc.json: ServeFolders./web: A NUL character (U+0000) is not allowed."
    ]
    _unchanged(deployment)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        # str.isdigit() is true for "²", and int("²") fails: the model field decides what is a number.
        ({"DicomModalities": {"us": ["US1", "10.0.0.5", "²"]}}, 'DicomModalities.us.Port: "\\u00b2":'),
        (
            {
                "Plugins": ["/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"],
                "PostgreSQL": {"EnableIndex": True, "ConnectionUri": "postgresql://orthanc:pw@db:abc/orthanc"},
            },
            "PostgreSQL.ConnectionUri: the port is not a number from 1 to 65535",
        ),
        ({"DicomModalities": {"us": ["US1", "scanner\u0007", 104]}}, "Give an IP address or a host name"),
        ({"IndexDirectory": "/srv/a/../../etc"}, "IndexDirectory"),
        ({"DicomWeb": {"Root": "dicom-web"}}, "A URL path that starts and ends with '/'"),
        ({"Name": "Clinic\nSecond line"}, "Control characters are not allowed: found U+000A."),
        ({"RegisteredUsers": {"alice": "Long-enough-\u0001-passw0rd"}}, "(not shown: a password)"),
        ({"Name": "\ud800"}, "a lone surrogate (U+D800)"),
        ({"Name": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "Nested too deeply"),
    ],
)
def test_a_value_the_forms_refuse_is_refused_by_the_importer_with_one_line(db, config, words):
    deployment = make_deployment()
    if "DicomWeb" in config:
        config["Plugins"] = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]
    with pytest.raises(ConfigImportError) as refused:
        import_texts(deployment, {"orthanc.json": json.dumps(config)})

    assert words in str(refused.value)
    assert "\n" not in str(refused.value)
    _unchanged(deployment)


def test_the_settings_form_refuses_the_same_control_characters(admin_client):
    deployment = make_deployment()
    page = admin_client.get(reverse("deployments:edit", args=[deployment.slug]))
    assert page.status_code == 200
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"start_command": "/bin/start\x1b[2J", "confirm_unlimited_find": "on"})
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}

    response = admin_client.post(reverse("deployments:edit", args=[deployment.slug]), data)

    assert response.status_code == 200
    assert "Control characters are not allowed: found U+001B." in response.content.decode()
    assert Deployment.objects.get(pk=deployment.pk).start_command == ""
