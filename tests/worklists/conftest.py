"""Fixtures of the worklist tests: a real Orthanc with the worklists plugin and two registered
ultrasound machines (one UTF-8, one Latin-1), entries made straight in the database, and a
C-FIND as the machine (pynetdicom)."""

import datetime
import itertools

import pytest
from django.utils import timezone

from deployments.models import Deployment, Modality
from tests.conftest import free_port
from worklists.cfind import find, worklist_query
from worklists.models import Patient, WorklistEntry

_numbers = itertools.count(1)


def add_stations(instance):
    instance.modalities.append(
        Modality(
            name="us1",
            aet="US1",
            host="127.0.0.1",
            port=free_port(),
            allow_find_worklist=True,
            charset=Modality.Charset.UTF8,
            station_name="ROOM1",
        )
    )
    instance.modalities.append(
        Modality(
            name="us2",
            aet="US2",
            host="127.0.0.1",
            port=free_port(),
            allow_find_worklist=True,
            charset=Modality.Charset.LATIN1,
            station_name="ROOM2",
        )
    )


@pytest.fixture
def wl_orthanc(orthanc_factory, transactional_db):
    """A started Orthanc whose deployment row (with its two stations) is in the database."""
    instance = orthanc_factory(slug="wl", start=False)
    add_stations(instance)
    instance.write_config()
    instance.start()
    instance.save_deployment()
    return instance


@pytest.fixture
def wl_deployment(db, tmp_path):
    """A deployment row with a worklist folder and stations, no Orthanc process (sync tests)."""
    deployment = Deployment.objects.create(
        name="Folder clinic",
        slug="folder",
        orthanc_url="http://127.0.0.1:9",
        service_password="x" * 24,
        config_dir=str(tmp_path / "config"),
        storage_dir=str(tmp_path / "storage"),
        worklists_dir=str(tmp_path / "worklists"),
    )
    (tmp_path / "worklists").mkdir()
    Modality.objects.create(
        deployment=deployment,
        name="us1",
        aet="US1",
        host="127.0.0.1",
        port=104,
        charset=Modality.Charset.UTF8,
        station_name="ROOM1",
    )
    Modality.objects.create(
        deployment=deployment,
        name="us2",
        aet="US2",
        host="127.0.0.2",
        port=104,
        charset=Modality.Charset.LATIN1,
        station_name="ROOM2",
    )
    return deployment


def make_entry(
    deployment,
    family="Doe",
    given="Jane",
    station="US1",
    day=None,
    at="09:30",
    status="SCHEDULED",
    patient_id=None,
    accession=None,
    description="Abdomen ultrasound",
    **fields,
):
    """An entry written straight to the database, as a sync sees it (no sync is requested)."""
    n = next(_numbers)
    patient, _ = Patient.objects.get_or_create(
        deployment=deployment,
        patient_id=patient_id or f"P{n:06d}",
        defaults={"family_name": family, "given_name": given, "birth_date": datetime.date(1980, 1, 2), "sex": "F"},
    )
    modality = Modality.objects.filter(deployment=deployment, aet=station).first()
    return WorklistEntry.objects.create(
        deployment=deployment,
        patient=patient,
        accession_number=accession or f"T{n:07d}",
        study_instance_uid=f"1.2.826.0.1.3680043.8.498.{n}",
        requested_procedure_description=description,
        scheduled_date=day or timezone.localdate(),
        scheduled_time=datetime.time.fromisoformat(at),
        station=modality,
        station_aet=station,
        station_name=modality.station_name if modality else "",
        status=status,
        **fields,
    )


def cfind(instance, calling="US1", **query):
    """The machine's C-FIND: answers as pydicom datasets."""
    d = instance.deployment
    return find("127.0.0.1", d.dicom_port, d.dicom_aet, calling, worklist_query(**query))


def files_in(deployment):
    from pathlib import Path

    return sorted(p.name for p in Path(deployment.worklist_folder).iterdir() if p.name.endswith(".wl"))
