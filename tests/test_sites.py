"""Staff who work for some sites only: they see and change nothing of the others, through the pages,
the API, the CSV import, the search and the audit log; only an Admin of every site manages staff."""

import datetime

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from deployments.models import Deployment, Modality
from portal import audit
from portal.models import AuditEntry, SiteAccess
from portal.roles import ADMIN, SCHEDULER
from portal.tokens import token_create
from worklists.models import Patient, WorklistEntry


def _site(slug, name):
    deployment = Deployment.objects.create(
        name=name,
        slug=slug,
        orthanc_url="http://127.0.0.1:9",
        service_password="z" * 24,
        config_dir=f"/nonexistent/{slug}",
        service_kind=Deployment.ServiceKind.NONE,
        worklists_enabled=True,
    )
    Modality.objects.create(deployment=deployment, name="US1", aet="US1", host="127.0.0.1", port=104)
    patient = Patient.objects.create(deployment=deployment, patient_id=f"{slug}-P1", family_name=f"Family{slug}")
    WorklistEntry.objects.create(
        deployment=deployment,
        patient=patient,
        accession_number=f"ACC-{slug}",
        study_instance_uid=f"1.2.826.0.1.{deployment.pk}",
        scheduled_date=datetime.date.today(),
        scheduled_time=datetime.time(9, 0),
        station_aet="US1",
    )
    return deployment


def _account(username, role, *sites):
    user = User.objects.create_user(username, password="x-Pa55word-x")
    user.groups.add(Group.objects.get(name=role))
    if sites:
        access = SiteAccess.objects.create(user=user, all_sites=False)
        access.deployments.set(sites)
    return user


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sites(db):
    return _site("north", "North clinic"), _site("south", "South clinic")


def test_a_scheduler_of_one_site_sees_its_patients_and_entries_and_none_of_the_other_site(sites):
    north, south = sites
    client = _client(_account("nina", SCHEDULER, north))

    page = client.get(reverse("worklists:index")).content.decode()
    assert "ACC-north" in page and "ACC-south" not in page and "South clinic" not in page
    assert client.get(reverse("worklists:index"), {"d": "south"}).status_code == 404
    assert client.get(reverse("worklists:patient_lookup"), {"d": "south", "q": "Fa"}).status_code == 404
    found = client.get(reverse("worklists:patient_lookup"), {"q": "Family"}).content.decode()
    assert "Familynorth" in found and "Familysouth" not in found
    assert client.get(reverse("worklists:import"), {"d": "south"}).status_code == 404
    south_entry = WorklistEntry.objects.get(deployment=south)
    assert client.get(reverse("worklists:edit", kwargs={"pk": south_entry.pk})).status_code == 404


def test_the_api_lists_only_the_token_s_sites_and_refuses_to_write_into_another(sites):
    north, south = sites
    nina = _account("nina", SCHEDULER, north)
    _, token = token_create(nina, "Practice system", datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=9))
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")

    entries = api.get(reverse("api:entry-list")).json()
    rows = entries["results"] if isinstance(entries, dict) else entries
    assert [e["deployment"] for e in rows] == ["north"]
    patients = api.get(reverse("api:patient-list"), {"deployment": "south"}).json()
    assert (patients["results"] if isinstance(patients, dict) else patients) == []
    south_entry = WorklistEntry.objects.get(deployment=south)
    assert api.get(reverse("api:entry-detail", kwargs={"uuid": south_entry.uuid})).status_code == 404
    created = api.post(
        reverse("api:patient-list"),
        {"deployment": "south", "patient_id": "X1", "family_name": "Intruder"},
        content_type="application/json",
    )
    assert created.status_code == 400
    assert "deployment" in created.json()
    assert not Patient.objects.filter(patient_id="X1").exists()


def test_an_admin_of_one_site_reads_that_site_s_audit_trail_only(sites, admin_user):
    north, south = sites
    audit.record(admin_user, AuditEntry.Action.UPDATE, north, summary="north settings changed")
    audit.record(admin_user, AuditEntry.Action.UPDATE, south, summary="south settings changed")
    audit.record(admin_user, AuditEntry.Action.UPDATE, Patient.objects.get(deployment=south), summary="south patient")
    assert AuditEntry.objects.filter(deployment_id=south.pk).count() == 2

    page = _client(_account("nora", ADMIN, north)).get(reverse("audit_log")).content.decode()
    assert "north settings changed" in page
    assert "south settings changed" not in page and "south patient" not in page
    everything = _client(admin_user).get(reverse("audit_log")).content.decode()
    assert "south settings changed" in everything


def test_an_admin_of_one_site_manages_neither_staff_nor_sites_nor_other_accounts_tokens(sites, scheduler_user):
    north, _ = sites
    nora = _client(_account("nora", ADMIN, north))

    assert nora.get(reverse("staff_list")).status_code == 403
    assert nora.get(reverse("deployments:create")).status_code == 403
    assert nora.get(reverse("metrics_token")).status_code == 403
    form = nora.get(reverse("api_token_create"))
    assert "user" not in form.context["form"].fields or not form.context["form"].fields["user"].queryset.exists()
    # The menu leaves out what the account may not open.
    menu = nora.get(reverse("deployments:list")).content.decode()
    assert reverse("staff_list") not in menu and reverse("metrics_token") not in menu


def test_a_global_admin_limits_an_account_to_some_sites_and_the_trail_says_which(sites, admin_client):
    north, south = sites
    sam = _account("sam", SCHEDULER)
    data = {"username": "sam", "role": SCHEDULER, "is_active": "on", "limit_sites": "on", "sites": [north.pk]}

    response = admin_client.post(reverse("staff_edit", kwargs={"pk": sam.pk}), data)

    assert response.status_code == 302
    access = SiteAccess.objects.get(user=sam)
    assert not access.all_sites and list(access.deployments.all()) == [north]
    entry = AuditEntry.objects.filter(object_type="auth.user", object_id=str(sam.pk)).latest("at")
    assert entry.changes["sites"] == ["all", ["north"]]
    assert _client(sam).get(reverse("worklists:index"), {"d": "south"}).status_code == 404
    listing = admin_client.get(reverse("staff_list")).content.decode()
    assert "North clinic" in listing


def test_limiting_an_account_to_no_site_or_limiting_oneself_is_refused_with_a_reason(sites, admin_client, admin_user):
    sam = _account("sam", SCHEDULER)
    none_ticked = admin_client.post(
        reverse("staff_edit", kwargs={"pk": sam.pk}),
        {"username": "sam", "role": SCHEDULER, "is_active": "on", "limit_sites": "on"},
    )
    assert none_ticked.status_code == 200
    assert "Tick at least one site" in none_ticked.content.decode()
    myself = admin_client.post(
        reverse("staff_edit", kwargs={"pk": admin_user.pk}),
        {
            "username": admin_user.username,
            "role": ADMIN,
            "is_active": "on",
            "limit_sites": "on",
            "sites": [sites[0].pk],
        },
    )
    assert myself.status_code == 200
    assert "You cannot limit your own account to some sites." in myself.content.decode()
    assert not SiteAccess.objects.filter(all_sites=False).exists()


def test_the_dashboard_and_backup_pages_of_a_limited_viewer_show_its_site_only(sites):
    north, south = sites
    from deployments.backups.models import BackupSchedule

    for site in sites:
        BackupSchedule.objects.create(
            deployment=site, name=f"NAS of {site.slug}", host="127.0.0.1", port=9, user="b", remote_folder="/srv/b"
        )
    vic = _client(_account("vic", "Viewer", north))
    for url in (reverse("dashboard"), reverse("backups:dashboard"), reverse("deployments:list")):
        page = vic.get(url).content.decode()
        assert "North clinic" in page or "NAS of north" in page, url
        assert "South clinic" not in page and "NAS of south" not in page, url
    schedule = BackupSchedule.objects.get(deployment=south)
    assert vic.get(reverse("backups:schedule", kwargs={"pk": schedule.pk})).status_code == 404
