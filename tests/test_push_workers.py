"""Pushes through real workers, rollback from the history page, and the push_config command."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from deployments.models import ConfigRevision, Modality
from portal.models import Job
from tests.conftest import wait_for

pytestmark = pytest.mark.orthanc


def _done():
    return not Job.objects.filter(state__in=["pending", "running"]).exists()


def test_two_deployments_with_a_worker_each_write_only_their_own_folder(
    orthanc_factory, transactional_db, admin_client, celery_worker_factory
):
    north, south = orthanc_factory(slug="north"), orthanc_factory(slug="south")
    north_d, south_d = north.save_deployment(), south.save_deployment()
    # One worker per deployment queue, as on two clinic sites.
    north_worker = celery_worker_factory(queues=["deployment.north"])
    south_worker = celery_worker_factory(queues=["deployment.south"])
    before_south = {p.name: p.stat().st_mtime_ns for p in Path(south_d.config_dir).iterdir()}

    admin_client.post(
        reverse("deployments:modality_create", args=["north"]),
        {
            "name": "NORTH_US",
            "aet": "NORTH_US",
            "host": "127.0.0.1",
            "port": 104,
            "manufacturer": "Generic",
            "allow_echo": "on",
            "timeout": 0,
            "charset": "ISO_IR 192",
        },
    )
    wait_for(_done, timeout=60, message="the north push")

    revision = north_d.revisions.get()
    assert revision.state == ConfigRevision.State.APPLIED, revision.error
    assert north.client().get_json("/modalities") == ["NORTH_US"]
    assert south.client().get_json("/modalities") == []
    after_south = {p.name: p.stat().st_mtime_ns for p in Path(south_d.config_dir).iterdir()}
    assert after_south == before_south, "the south folder was touched"
    job = Job.objects.get(kind="deployments.deployment_push")
    assert job.queue == "deployment.north"
    assert "Task deployments.deployment_push[" in north_worker.output()
    assert "Task deployments.deployment_push[" not in south_worker.output()


def test_rolling_back_restores_the_models_and_orthanc_runs_that_configuration_again(
    orthanc, orthanc_deployment, admin_client
):
    from deployments.push import deployment_push, revision_create

    Modality.objects.create(deployment=orthanc_deployment, name="FIRST", aet="FIRST", host="127.0.0.1", port=104)
    first = revision_create(orthanc_deployment, reason="first")
    deployment_push(orthanc_deployment.pk)
    Modality.objects.all().delete()
    Modality.objects.create(deployment=orthanc_deployment, name="SECOND", aet="SECOND", host="127.0.0.1", port=105)
    orthanc_deployment.limit_find_results = 7
    orthanc_deployment.save()
    revision_create(orthanc_deployment, reason="second")
    deployment_push(orthanc_deployment.pk)
    assert orthanc.client().get_json("/modalities") == ["SECOND"]

    response = admin_client.post(reverse("deployments:rollback", args=[orthanc_deployment.slug, first.number]))
    deployment_push(orthanc_deployment.pk)  # what the deployment's worker does with the queued job

    assert response.status_code == 302
    rollback = orthanc_deployment.revisions.order_by("-number").first()
    assert rollback.rollback_of == first and rollback.state == ConfigRevision.State.APPLIED, rollback.error
    assert orthanc.client().get_json("/modalities") == ["FIRST"]
    assert list(Modality.objects.values_list("name", flat=True)) == ["FIRST"]
    orthanc_deployment.refresh_from_db()
    assert orthanc_deployment.limit_find_results == 100
    history = admin_client.get(reverse("deployments:revisions", args=[orthanc_deployment.slug])).content.decode()
    assert "rollback to revision 1" in history


def test_the_preview_shows_the_change_against_the_applied_revision_with_passwords_masked(
    orthanc, orthanc_deployment, admin_client
):
    from deployments.push import deployment_push, revision_create

    revision_create(orthanc_deployment, reason="first")
    deployment_push(orthanc_deployment.pk)
    orthanc_deployment.limit_find_results = 42
    orthanc_deployment.save()

    page = admin_client.get(reverse("deployments:preview", args=[orthanc_deployment.slug])).content.decode()

    assert "-  &quot;LimitFindResults&quot;: 100," in page and "+  &quot;LimitFindResults&quot;: 42," in page
    assert orthanc_deployment.service_password not in page


def test_push_config_pushes_and_prints_the_outcome(orthanc, orthanc_deployment, capsys):
    call_command("push_config", orthanc_deployment.slug)

    assert "applied" in capsys.readouterr().out
    assert orthanc_deployment.revisions.get().state == ConfigRevision.State.APPLIED
    folder = Path(orthanc_deployment.config_dir)
    assert json.loads((folder / "orthanc.json").read_text())["Name"] == orthanc_deployment.name


def test_push_config_with_an_unknown_slug_fails_with_one_line(db):
    with pytest.raises(CommandError, match="no deployment with slug 'nope'"):
        call_command("push_config", "nope")
