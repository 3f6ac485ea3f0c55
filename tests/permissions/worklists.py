import datetime

from . import G, P, Row


def _worklist_world(world):
    from worklists.models import Patient, WorklistEntry

    world.wl_patient = Patient.objects.create(deployment=world.deployment, patient_id="M1", family_name="Matrix")
    world.wl_entry = WorklistEntry.objects.create(
        deployment=world.deployment,
        patient=world.wl_patient,
        accession_number=f"{world.deployment.slug.upper()}1",  # the second site's world has its own
        study_instance_uid=f"1.2.3.999.{world.deployment.pk}",
        scheduled_date=datetime.date.today(),
        scheduled_time=datetime.time(9, 0),
        station_aet="NOSTATION",
    )


def _hl7_world(world):
    from worklists.interfaces.hl7.models import Hl7Mapping, Hl7Outbound

    # One sender per world: the second site's world has its own.
    world.hl7_mapping = Hl7Mapping.objects.create(
        deployment=world.deployment, sending_application=f"PRAXIS-{world.deployment.slug}"
    )
    # A dead letter for the Interfaces page's Resend.
    world.hl7_dead = Hl7Outbound.objects.create(
        mapping=world.hl7_mapping,
        deployment=world.deployment,
        order_key="matrix",
        control_id="ST0",
        entry_status="ARRIVED",
        order_status="IP",
        raw=b"MSH|^~\\&|PORTAL",
        state=Hl7Outbound.State.DEAD,
        error="AE from the receiver",
    )


WORLD_HOOKS = [_worklist_world, _hl7_world]


def A(admin=200, scheduler=200, viewer=403, **kw):
    """An API endpoint: anonymous gets 401 (token authentication), not the login page."""
    return Row(admin, scheduler, viewer, anonymous=401, **kw)


# Patient data: the Scheduler works here, the Viewer role sees none of it.
MATRIX = {
    "worklists:index": G(scheduler=200),
    "worklists:create": G(scheduler=200),
    "worklists:edit": G(scheduler=200, kwargs={"pk": "wl_entry.pk"}),
    "worklists:status": P(scheduler=302, kwargs={"pk": "wl_entry.pk"}, data={"status": "ARRIVED"}),
    "worklists:patient_lookup": G(scheduler=200),
    "worklists:machine": G(scheduler=200),
    "worklists:import": G(scheduler=200),
    "worklists:sync_now": P(scheduler=302, kwargs={"slug": "deployment.slug"}),
    # The HL7 mappings (and the messages they list hold patient data): Admin only.
    "hl7:mappings": G(kwargs={"slug": "deployment.slug"}),
    "hl7:mapping_create": G(kwargs={"slug": "deployment.slug"}),
    "hl7:mapping_edit": G(kwargs={"slug": "deployment.slug", "pk": "hl7_mapping.pk"}),
    "hl7:mapping_delete": P(kwargs={"slug": "deployment.slug", "pk": "hl7_mapping.pk"}),
    # The Interfaces page: messages in and out hold patient data, Admin only.
    "interfaces:page": G(kwargs={"slug": "deployment.slug"}),
    "interfaces:resend": P(kwargs={"slug": "deployment.slug", "pk": "hl7_dead.pk"}),
    "api:docs": G(200, 200, 200),
    "api:schema": A(viewer=200),
    "api:patient-list": A(),
    "api:patient-detail": A(kwargs={"pk": "wl_patient.pk"}),
    "api:entry-list": A(),
    "api:entry-detail": A(kwargs={"uuid": "wl_entry.uuid"}),
    "api:entry-cancel": A(method="post", kwargs={"uuid": "wl_entry.uuid"}),
    "api:entry-transition": A(method="post", kwargs={"uuid": "wl_entry.uuid"}, data={"status": "ARRIVED"}),
}
