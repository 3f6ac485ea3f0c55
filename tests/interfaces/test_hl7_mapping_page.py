"""The HL7 mapping page of a deployment: an Admin maps a sender, with every value checked."""

from django.urls import reverse

from portal.models import AuditEntry
from tests.interfaces.conftest import add_hl7_stations
from worklists.interfaces.hl7.models import Hl7Mapping

VALID = {
    "sending_application": "RIS",
    "sending_facility": "",
    "enabled": "on",
    "accession_field": "OBR-18",
    "procedure_field": "OBR-44",
    "modality_field": "OBR-24",
    "default_modality": "US",
    "station_field": "PV1-3.1",
    "station_codes": "ROOM-A = US1\n# the old room\nROOM-B = US2",
    "status_message_type": "ORM^O01",
}


def _deployment():
    from deployments.models import Deployment

    deployment = Deployment.objects.create(
        name="Page clinic", slug="page", orthanc_url="http://127.0.0.1:9", service_password="x" * 24, config_dir="/x"
    )
    add_hl7_stations(deployment)
    return deployment


def test_an_admin_maps_a_sender_and_the_change_is_audited(admin_client):
    deployment = _deployment()
    url = reverse("hl7:mapping_create", kwargs={"slug": deployment.slug})

    response = admin_client.post(url, VALID)

    assert response.status_code == 302, response.content.decode()[:2000]
    mapping = Hl7Mapping.objects.get(sending_application="RIS")
    assert (mapping.deployment, mapping.codes()) == (deployment, {"ROOM-A": "US1", "ROOM-B": "US2"})
    assert AuditEntry.objects.filter(object_type="hl7.hl7mapping", action="create").exists()
    page = admin_client.get(reverse("hl7:mappings", kwargs={"slug": deployment.slug}))
    assert b"RIS" in page.content and b"PV1-3.1" in page.content


def test_the_mapping_form_refuses_an_unknown_station_a_bad_field_and_an_overlong_code_with_clear_messages(
    admin_client,
):
    deployment = _deployment()
    url = reverse("hl7:mapping_create", kwargs={"slug": deployment.slug})

    unknown = admin_client.post(url, {**VALID, "station_codes": "ROOM-C = CT9"})
    bad_field = admin_client.post(url, {**VALID, "accession_field": "XYZ-1; DROP"})
    long_code = admin_client.post(url, {**VALID, "station_codes": "C" * 70 + " = US1"})
    long_name = admin_client.post(url, {**VALID, "sending_application": "R" * 181})

    assert "Not a worklist station of Page clinic: CT9" in unknown.content.decode()
    assert "SEGMENT-FIELD" in bad_field.content.decode()
    assert "Line 1: write one code per line as CODE = AE TITLE" in long_code.content.decode()
    assert "at most 180 characters" in long_name.content.decode()
    assert not Hl7Mapping.objects.exists()


def test_a_second_mapping_of_the_same_sender_is_refused(admin_client):
    deployment = _deployment()
    url = reverse("hl7:mapping_create", kwargs={"slug": deployment.slug})
    assert admin_client.post(url, VALID).status_code == 302

    again = admin_client.post(url, VALID)

    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert Hl7Mapping.objects.count() == 1


def test_the_deployment_page_shows_how_the_senders_messages_fare_and_links_the_mappings_for_an_admin(
    admin_client, client, viewer_user
):
    from tests.interfaces.conftest import make_mapping
    from worklists.interfaces.hl7.models import Hl7Message

    deployment = _deployment()
    make_mapping(deployment)
    Hl7Message.objects.create(deployment=deployment, message_type="ORM^O01", raw=b"x", ack=b"y", ack_code="AA")
    Hl7Message.objects.create(deployment=deployment, message_type="ADT^A08", raw=b"x", ack=b"y", ack_code="AE")
    url = reverse("deployments:detail", kwargs={"slug": deployment.slug})

    page = admin_client.get(url).content.decode()
    client.force_login(viewer_user)
    seen_by_viewer = client.get(url).content.decode()

    assert "1 sending application mapped. Last 24 hours: 1 message accepted, 1 refused." in page
    assert reverse("hl7:mappings", kwargs={"slug": deployment.slug}) in page
    assert "1 message accepted" in seen_by_viewer
    assert reverse("hl7:mappings", kwargs={"slug": deployment.slug}) not in seen_by_viewer


def test_the_status_receiver_needs_both_host_and_port_and_is_kept_with_its_message_type(admin_client):
    deployment = _deployment()
    url = reverse("hl7:mapping_create", kwargs={"slug": deployment.slug})

    refused = admin_client.post(url, {**VALID, "status_host": "ris.clinic.local"})
    saved = admin_client.post(
        url, {**VALID, "status_host": "ris.clinic.local", "status_port": "2576", "status_message_type": "OMG^O19"}
    )

    assert refused.status_code == 200 and b"both the status receiver" in refused.content
    assert saved.status_code == 302
    mapping = Hl7Mapping.objects.get(sending_application="RIS")
    assert (mapping.status_host, mapping.status_port, mapping.status_message_type) == (
        "ris.clinic.local",
        2576,
        "OMG^O19",
    )
