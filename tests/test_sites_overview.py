"""The sites page: one line per site from what the periodic tasks recorded, the site's worker seen
through a heartbeat on its own queue, sortable, and as cheap for fifty sites as for five."""

import datetime

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.agents import send_heartbeats
from deployments.backups.models import BackupRun, BackupSchedule
from deployments.models import ConfigRevision, Deployment
from portal.models import SiteAccess
from portal.roles import VIEWER
from tests.conftest import wait_for
from worklists.models import Patient, WorklistEntry, WorklistState


def _site(n, **fields):
    return Deployment.objects.create(
        name=f"Clinic {n:02d}",
        slug=f"clinic-{n:02d}",
        orthanc_url="http://127.0.0.1:9",
        service_password="z" * 24,
        config_dir=f"/nonexistent/clinic-{n:02d}",
        service_kind=Deployment.ServiceKind.NONE,
        **fields,
    )


def _rows(page):
    return [line.split('id="site-', 1)[1].split('"', 1)[0] for line in page.splitlines() if 'id="site-' in line]


def test_a_site_s_own_worker_answers_its_heartbeat_and_a_silent_site_shows_unreachable_since(
    celery_worker_factory, admin_client
):
    north, south = _site(1), _site(2)
    worker = celery_worker_factory(queues=[north.queue])  # south's worker is not running: it is cut off

    send_heartbeats()

    north = wait_for(
        lambda: Deployment.objects.filter(pk=north.pk, agent_seen_at__isnull=False).first(),
        timeout=30,
        message="the north worker to answer its heartbeat",
    )
    assert north.agent_host
    page = admin_client.get(reverse("sites")).content.decode()
    assert "seen " in page.split('id="site-clinic-01"')[1].split("</tr>")[0]
    assert "never seen" in page.split('id="site-clinic-02"')[1].split("</tr>")[0]
    assert Deployment.objects.get(pk=south.pk).agent_seen_at is None
    worker.kill()

    # Ten minutes later (the recorded time moved back): the north worker has been silent since.
    seen = north.agent_seen_at - datetime.timedelta(minutes=10)
    Deployment.objects.filter(pk=north.pk).update(agent_seen_at=seen)
    page = admin_client.get(reverse("sites")).content.decode()
    line = page.split('id="site-clinic-01"')[1].split("</tr>")[0]
    assert f"unreachable since {timezone.localtime(seen):%Y-%m-%d %H:%M}" in line


def _fill(site, pending_revisions=0, pending_entries=0, backup_failed=False, synced_minutes=None):
    for number in range(pending_revisions):
        ConfigRevision.objects.create(deployment=site, number=number + 1, state=ConfigRevision.State.PENDING)
    patient = Patient.objects.create(deployment=site, patient_id=f"{site.slug}-P", family_name="Doe")
    for number in range(pending_entries):
        WorklistEntry.objects.create(
            deployment=site,
            patient=patient,
            accession_number=f"A{site.pk}-{number}",
            study_instance_uid=f"1.2.826.0.1.{site.pk}.{number}",
            scheduled_date=timezone.localdate(),
            scheduled_time=datetime.time(9, 0),
            station_aet="US1",
        )
    if synced_minutes is not None:
        WorklistState.objects.update_or_create(
            deployment=site, defaults={"last_sync_at": timezone.now() - datetime.timedelta(minutes=synced_minutes)}
        )
    schedule = BackupSchedule.objects.create(
        deployment=site, name="NAS", host="127.0.0.1", port=9, user="b", remote_folder="/srv/b"
    )
    now = timezone.now()
    BackupRun.objects.create(schedule=schedule, state=BackupRun.State.SUCCEEDED, started_at=now, finished_at=now)
    if backup_failed:
        later = now + datetime.timedelta(seconds=5)
        BackupRun.objects.create(schedule=schedule, state=BackupRun.State.FAILED, started_at=later, finished_at=later)


def test_fifty_sites_take_a_fixed_number_of_queries_and_sort_by_each_column(
    admin_client, django_assert_max_num_queries
):
    sites = [_site(n, worklists_enabled=True) for n in range(50)]
    _fill(sites[7], pending_revisions=3, pending_entries=2, backup_failed=True, synced_minutes=30)
    _fill(sites[3], pending_entries=1, synced_minutes=1)
    Deployment.objects.filter(pk=sites[9].pk).update(last_state="down", last_checked_at=timezone.now())

    with django_assert_max_num_queries(12):
        page = admin_client.get(reverse("sites")).content.decode()

    assert _rows(page) == [s.slug for s in sites]
    line = page.split('id="site-clinic-07"')[1].split("</tr>")[0]
    assert "3 configuration, 2 worklist" in line and "last run failed" in line and "30 min ago" in line
    assert "unreachable" in page.split('id="site-clinic-09"')[1].split("</tr>")[0]
    pending = _rows(admin_client.get(reverse("sites"), {"sort": "pending"}).content.decode())
    assert pending[:2] == ["clinic-07", "clinic-03"]
    lag = _rows(admin_client.get(reverse("sites"), {"sort": "lag"}).content.decode())
    assert lag.index("clinic-07") < lag.index("clinic-03")  # the longest since its last sync first
    Deployment.objects.filter(pk=sites[0].pk).update(last_state="up", last_checked_at=timezone.now())
    worst_first = _rows(admin_client.get(reverse("sites"), {"sort": "orthanc"}).content.decode())
    assert worst_first[0] == "clinic-09" and worst_first[-1] == "clinic-00"
    assert _rows(admin_client.get(reverse("sites"), {"sort": "-name"}).content.decode())[0] == "clinic-49"
    unknown = admin_client.get(reverse("sites"), {"sort": "'; DROP TABLE"})
    assert unknown.status_code == 200 and _rows(unknown.content.decode())[0] == "clinic-00"


@pytest.mark.django_db
def test_a_viewer_of_some_sites_sees_only_their_lines():
    sites = [_site(n) for n in range(3)]
    viewer = User.objects.create_user("vic", password="x-Pa55word-x")
    viewer.groups.add(Group.objects.get(name=VIEWER))
    SiteAccess.objects.create(user=viewer, all_sites=False).deployments.set(sites[1:2])
    client = Client()
    client.force_login(viewer)

    assert _rows(client.get(reverse("sites")).content.decode()) == ["clinic-01"]
