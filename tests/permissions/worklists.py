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


WORLD_HOOKS = [_worklist_world]


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
    "api:docs": G(200, 200, 200),
    "api:schema": A(viewer=200),
    "api:patient-list": A(),
    "api:patient-detail": A(kwargs={"pk": "wl_patient.pk"}),
    "api:entry-list": A(),
    "api:entry-detail": A(kwargs={"uuid": "wl_entry.uuid"}),
    "api:entry-cancel": A(method="post", kwargs={"uuid": "wl_entry.uuid"}),
    "api:entry-transition": A(method="post", kwargs={"uuid": "wl_entry.uuid"}, data={"status": "ARRIVED"}),
}
