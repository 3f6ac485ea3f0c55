"""The Test (C-ECHO) button: Orthanc echoes a real DICOM peer and the page says how it went."""

import pytest
from django.urls import reverse
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from deployments.models import Modality
from deployments.push import deployment_push, revision_create
from tests.conftest import free_port

pytestmark = pytest.mark.orthanc


@pytest.fixture
def echo_peer():
    """A real C-ECHO SCP (pynetdicom) standing in for an ultrasound machine."""
    ae = AE(ae_title="US_ROOM_1")
    ae.add_supported_context(Verification)
    port = free_port()
    received = []
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, lambda e: received.append(e) or 0x0000)]
    )
    yield port, received
    server.shutdown()


def _messages(response):
    return [str(m) for m in response.context["messages"]]


def test_the_echo_button_reports_success_when_the_machine_answers(orthanc, orthanc_deployment, admin_client, echo_peer):
    port, received = echo_peer
    modality = Modality.objects.create(
        deployment=orthanc_deployment, name="US1", aet="US_ROOM_1", host="127.0.0.1", port=port
    )
    revision_create(orthanc_deployment, reason="add US1")
    deployment_push(orthanc_deployment.pk)

    response = admin_client.post(
        reverse("deployments:modality_echo", args=[orthanc_deployment.slug, modality.pk]), follow=True
    )

    assert any("C-ECHO to US1 (US_ROOM_1@127.0.0.1:" in m and "succeeded" in m for m in _messages(response))
    assert len(received) == 1


def test_the_echo_button_reports_the_reason_when_nothing_answers(orthanc, orthanc_deployment, admin_client):
    modality = Modality.objects.create(
        deployment=orthanc_deployment, name="OFF", aet="US_OFF", host="127.0.0.1", port=free_port()
    )
    revision_create(orthanc_deployment, reason="add OFF")
    deployment_push(orthanc_deployment.pk)

    response = admin_client.post(
        reverse("deployments:modality_echo", args=[orthanc_deployment.slug, modality.pk]), follow=True
    )

    failed = [m for m in _messages(response) if "C-ECHO to OFF" in m]
    assert failed and "failed: Orthanc answered" in failed[0], failed


def test_the_echo_button_says_to_push_first_for_a_modality_orthanc_does_not_know_yet(
    orthanc, orthanc_deployment, admin_client
):
    modality = Modality.objects.create(deployment=orthanc_deployment, name="NEW", aet="NEW", host="127.0.0.1", port=104)

    response = admin_client.post(
        reverse("deployments:modality_echo", args=[orthanc_deployment.slug, modality.pk]), follow=True
    )

    assert any("is the modality pushed to Orthanc yet?" in m for m in _messages(response)), _messages(response)
