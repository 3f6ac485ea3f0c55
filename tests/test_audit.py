"""The audit log: every change through the portal, field by field, secrets redacted."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment
from portal.models import AuditEntry

NEW = {
    "name": "North clinic",
    "slug": "north",
    "orthanc_url": "http://127.0.0.1:8042",
    "service_username": "portal",
    "service_password": "a-Secret-service-pa55word",
    "config_dir": "/srv/orthanc/config",
    "storage_dir": "",
    "index_dir": "",
    "http_port": 8042,
    "authentication_enabled": "on",
    "https_verify_peers": "on",
    "orthanc_explorer_enabled": "on",
    "dicom_server_enabled": "on",
    "dicom_aet": "NORTH",
    "dicom_port": 4242,
    "dicom_check_called_aet": "on",
    "dicom_check_modality_host": "on",
    "limit_find_results": 100,
    "limit_find_instances": 100,
    "concurrent_jobs": 2,
    "deidentify_logs": "on",
    "deidentify_logs_dicom_version": "2021b",
    "default_encoding": "Utf8",
    "tcp_no_delay": "on",
    "keep_alive": "on",
    "storage_access_on_find": "Answers",
    "save_jobs": "on",
    "worklists_enabled": "on",
    "worklist_server": "indexed",
    "worklists_dir": "",
    "dicomweb_root": "/dicom-web/",
    "index_backend": "sqlite",
    "pg_port": 5432,
    "pg_tls": "on",
    "service_kind": "none",
}


def test_creating_a_deployment_records_who_and_every_field_with_the_secret_redacted(admin_client, admin_user):
    response = admin_client.post(reverse("deployments:create"), NEW)

    assert response.status_code == 302, response.context["form"].errors if response.context else ""
    entry = AuditEntry.objects.get(object_type="deployments.deployment")
    assert entry.actor == admin_user and entry.actor_name == "ada_admin" and entry.source == "web"
    assert entry.action == "create"
    assert entry.changes["name"] == [None, "North clinic"]
    assert entry.changes["service_password"] == [None, "••••••"]
    assert "a-Secret-service-pa55word" not in str(entry.changes)


def test_an_update_records_each_changed_field_before_and_after_and_nothing_else(admin_client):
    admin_client.post(reverse("deployments:create"), NEW)
    deployment = Deployment.objects.get(slug="north")

    admin_client.post(
        reverse("deployments:edit", args=["north"]), {**NEW, "limit_find_results": 50, "service_password": ""}
    )

    entry = AuditEntry.objects.filter(action="update", object_type="deployments.deployment").get()
    assert entry.changes == {"limit_find_results": [100, 50]}
    assert entry.object_id == str(deployment.pk)


def test_a_changed_secret_shows_as_changed_but_never_its_value(admin_client):
    admin_client.post(reverse("deployments:create"), NEW)

    admin_client.post(reverse("deployments:edit", args=["north"]), {**NEW, "service_password": "Another-long-pa55word"})

    entry = AuditEntry.objects.filter(action="update").get()
    assert entry.changes["service_password"] == ["••••••", "••••••"]
    assert "Another-long-pa55word" not in str(entry.changes)


def test_the_audit_entry_is_written_in_the_same_transaction_as_the_change(admin_client):
    # An invalid form saves nothing, so it records nothing either.
    admin_client.post(reverse("deployments:create"), {**NEW, "dicom_port": 70000})

    assert not Deployment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_audit_page_filters_by_user_object_type_and_date(admin_client, viewer_user):
    now = timezone.now()
    AuditEntry.objects.create(
        actor_name="ada_admin", action="create", object_type="deployments.deployment", object_repr="A"
    )
    AuditEntry.objects.create(actor_name="sam", action="update", object_type="worklists.patient", object_repr="B")
    AuditEntry.objects.create(
        at=now - timedelta(days=10),
        actor_name="ada_admin",
        action="delete",
        object_type="deployments.modality",
        object_repr="C",
    )

    def rows(**query):
        page = admin_client.get(reverse("audit_log"), query)
        return [e.object_repr for e in page.context["page"]]

    assert rows() == ["A", "B", "C"] or sorted(rows()) == ["A", "B", "C"]
    assert sorted(rows(user="ada_admin")) == ["A", "C"]
    assert rows(object_type="worklists.patient") == ["B"]
    assert sorted(rows(date_from=(now - timedelta(days=1)).date().isoformat())) == ["A", "B"]
    assert rows(date_to=(now - timedelta(days=5)).date().isoformat()) == ["C"]


def test_an_end_date_before_the_start_date_is_an_error_beside_the_field(admin_client):
    response = admin_client.get(reverse("audit_log"), {"date_from": "2026-02-02", "date_to": "2026-01-01"})

    assert "The end date is before the start date." in response.content.decode()


def test_entries_recorded_in_a_batch_are_written_together_at_its_end_and_roll_back_with_it(transactional_db):
    from django.db import transaction

    from portal import audit

    deployment = Deployment.objects.create(name="Batch", slug="batch", orthanc_url="http://127.0.0.1:9")
    with transaction.atomic(), audit.batched():
        audit.record(None, AuditEntry.Action.ACTION, deployment, summary="one")
        audit.record(None, AuditEntry.Action.ACTION, deployment, summary="two")
        assert not AuditEntry.objects.exists(), "kept until the batch ends"
    assert list(AuditEntry.objects.order_by("pk").values_list("summary", flat=True)) == ["one", "two"]

    try:
        with transaction.atomic(), audit.batched():
            audit.record(None, AuditEntry.Action.ACTION, deployment, summary="three")
            raise RuntimeError("the change fails")
    except RuntimeError:
        pass
    assert AuditEntry.objects.count() == 2
