"""Pushing configuration into a real Orthanc (Debian package): apply, verify, roll back."""

import json
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
import requests

from deployments.models import ConfigRevision, Modality
from deployments.push import PushError, deployment_push, revision_create
from portal.models import Job
from tests.conftest import wait_for

pytestmark = pytest.mark.orthanc


def _modality(deployment, name="US1", aet="US_ROOM_1", port=11112):
    return Modality.objects.create(deployment=deployment, name=name, aet=aet, host="127.0.0.1", port=port)


def test_a_push_writes_the_files_resets_orthanc_and_records_the_revision_as_applied(orthanc, orthanc_deployment):
    _modality(orthanc_deployment)
    revision = revision_create(orthanc_deployment, reason="test")

    message = deployment_push(orthanc_deployment.pk)

    revision.refresh_from_db()
    assert revision.state == ConfigRevision.State.APPLIED, revision.error
    assert message == f"revision {revision.number} applied"
    assert orthanc.client().get_json("/modalities") == ["US1"]
    folder = Path(orthanc_deployment.config_dir)
    assert json.loads((folder / "orthanc.json").read_text())["DicomModalities"]["US1"]["AET"] == "US_ROOM_1"


def test_secret_files_are_created_0600_and_others_0644(orthanc, orthanc_deployment):
    revision_create(orthanc_deployment, reason="test")
    deployment_push(orthanc_deployment.pk)

    folder = Path(orthanc_deployment.config_dir)
    assert stat.S_IMODE((folder / "credentials.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "orthanc.json").stat().st_mode) == 0o644
    assert not list(folder.glob(".*.tmp")), "a temporary file was left behind"


def test_a_push_orthanc_cannot_start_with_is_rolled_back_and_recorded_as_failed(orthanc, orthanc_deployment):
    _modality(orthanc_deployment, name="KEEP")
    revision_create(orthanc_deployment, reason="good")
    deployment_push(orthanc_deployment.pk)
    # Another program takes the port the new configuration asks for: Orthanc exits on reset.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    good_port = orthanc_deployment.dicom_port
    orthanc_deployment.dicom_port = blocker.getsockname()[1]
    orthanc_deployment.save()
    bad = revision_create(orthanc_deployment, reason="port taken")

    started = time.monotonic()
    with pytest.raises(PushError):
        deployment_push(orthanc_deployment.pk)
    elapsed = time.monotonic() - started

    blocker.close()
    bad.refresh_from_db()
    assert bad.state == ConfigRevision.State.FAILED
    assert "previous configuration was restored" in bad.error
    assert elapsed < 15 + 15
    system = orthanc.client().system()  # answers again, with the previous configuration
    assert system["DicomPort"] == good_port
    assert orthanc.client().get_json("/modalities") == ["KEEP"]
    assert bad.log_tail, "the failure keeps Orthanc's log tail"


def test_ten_saves_in_quick_succession_apply_the_last_and_never_show_a_partial_file(
    orthanc, orthanc_deployment, celery_worker_factory
):
    celery_worker_factory(queues=[orthanc_deployment.queue], concurrency=2)
    folder = Path(orthanc_deployment.config_dir)
    seen_bad, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            for name in ("orthanc.json", "credentials.json"):
                try:
                    json.loads((folder / name).read_bytes())
                except FileNotFoundError:
                    seen_bad.append(f"{name} missing")
                except ValueError as exc:
                    seen_bad.append(f"{name}: {exc}")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for n in range(10):
            orthanc_deployment.limit_find_results = 100 + n
            orthanc_deployment.save()
            from django.db import transaction

            with transaction.atomic():
                revision_create(orthanc_deployment, reason=f"save {n}")
        wait_for(
            lambda: not Job.objects.filter(state__in=["pending", "running"]).exists(), timeout=90, message="pushes"
        )
    finally:
        stop.set()
        watcher.join()

    assert not seen_bad, seen_bad[:5]
    last = orthanc_deployment.revisions.order_by("-number").first()
    assert last.state == ConfigRevision.State.APPLIED, last.error
    assert json.loads((folder / "orthanc.json").read_text())["LimitFindResults"] == 109
    states = set(orthanc_deployment.revisions.values_list("state", flat=True))
    assert states <= {"applied", "superseded"}


def test_an_unknown_user_gets_401_after_a_push(orthanc, orthanc_deployment):
    revision_create(orthanc_deployment, reason="test")
    deployment_push(orthanc_deployment.pk)

    response = requests.get(f"{orthanc.url}/system", auth=("nobody", "whatever-password"), timeout=5)

    assert response.status_code == 401


def test_a_revision_left_applying_by_a_dead_worker_is_applied_by_the_next_push(orthanc, orthanc_deployment):
    _modality(orthanc_deployment, name="AFTER_CRASH")
    revision = revision_create(orthanc_deployment, reason="interrupted")
    ConfigRevision.objects.filter(pk=revision.pk).update(state=ConfigRevision.State.APPLYING)

    deployment_push(orthanc_deployment.pk)

    revision.refresh_from_db()
    assert revision.state == ConfigRevision.State.APPLIED
    assert orthanc.client().get_json("/modalities") == ["AFTER_CRASH"]
