"""The REST API for practice-management systems: patients and worklist entries.

One token per integration (a service account with the Scheduler role). Validation errors are
JSON naming the field and the limit, from the same DICOM checks as the forms.
"""

from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from deployments.models import Deployment, Modality
from portal import audit
from portal.models import AuditEntry
from portal.sites import deployments_of, scoped
from portal.text import SEARCH_MAX_LENGTH, search_problem

from .models import InvalidTransition, Patient, WorklistEntry
from .scheduling import (
    SHOWN_ENTRY_FIELDS,
    change_status,
    patient_problems,
    save_entry,
    save_patient,
    shown_values,
    station_letters,
    station_problems,
)
from .tasks import request_sync

PATIENT_FIELDS = ["patient_id", "family_name", "given_name", "middle_name", "prefix", "suffix", "birth_date", "sex"]


class SiteField(serializers.SlugRelatedField):
    """A deployment by its slug, among the sites the token's account works for only."""

    def get_queryset(self):
        request = self.context.get("request")
        return deployments_of(request.user) if request is not None else Deployment.objects.none()


class PatientDataSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = PATIENT_FIELDS
        # Same patient ID = same patient: an entry's patient is found or created, never refused.
        validators = []


class PatientSerializer(serializers.ModelSerializer):
    deployment = SiteField(slug_field="slug")

    class Meta:
        model = Patient
        fields = ["id", "deployment", *PATIENT_FIELDS]

    def validate_deployment(self, deployment):
        # Its entries live on that deployment's machines: moving the patient would make them
        # point across deployments.
        if self.instance is not None and deployment != self.instance.deployment:
            raise serializers.ValidationError(
                "A patient's deployment is fixed when the patient is created; add the patient to the other "
                "deployment instead."
            )
        return deployment

    def validate(self, attrs):
        if self.instance is not None:
            # The new name goes to every machine of the patient's scheduled entries: each must show it.
            whole = {name: attrs.get(name, getattr(self.instance, name)) for name in PATIENT_FIELDS}
            whole["patient_id"] = self.instance.patient_id  # the entries are found by the stored ID
            problems = patient_problems(self.instance.deployment, whole)
            if problems:
                raise serializers.ValidationError({name: [message] for name, message in problems.items()})
        return attrs


class EntrySerializer(serializers.ModelSerializer):
    deployment = SiteField(slug_field="slug")
    patient = PatientDataSerializer()
    station_aet = serializers.CharField(
        max_length=16, help_text="AE title of a station of the deployment allowed to query the worklist."
    )
    accession_number = serializers.CharField(
        max_length=16, required=False, allow_blank=True, help_text="Empty: generated from the portal's pattern."
    )
    sync_state = serializers.SerializerMethodField()

    class Meta:
        model = WorklistEntry
        fields = [
            "uuid",
            "deployment",
            "patient",
            "accession_number",
            "study_instance_uid",
            "requested_procedure_id",
            "requested_procedure_description",
            "scheduled_date",
            "scheduled_time",
            "modality",
            "station_aet",
            "station_name",
            "performing_physician",
            "referring_physician",
            "notes",
            "status",
            "sync_state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["uuid", "study_instance_uid", "status", "created_at", "updated_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["accession_number"].validators = list(WorklistEntry._meta.get_field("accession_number").validators)

    def get_sync_state(self, entry) -> str:
        return entry.sync_label[1]

    def validate(self, attrs):
        deployment = attrs.get("deployment") or getattr(self.instance, "deployment", None)
        if self.instance and attrs.get("deployment", deployment) != self.instance.deployment:
            raise serializers.ValidationError({"deployment": ["An entry cannot move to another deployment."]})
        aet = attrs.get("station_aet") or getattr(self.instance, "station_aet", "")
        station = Modality.objects.filter(deployment=deployment, aet=aet, allow_find_worklist=True).first()
        if station is None:
            raise serializers.ValidationError(
                {"station_aet": [f"No station {aet!r} of this deployment may query the worklist."]}
            )
        attrs["station"] = station
        accession = attrs.get("accession_number")
        if (
            accession
            and WorklistEntry.objects.filter(accession_number=accession)
            .exclude(pk=getattr(self.instance, "pk", None))
            .exists()
        ):
            raise serializers.ValidationError({"accession_number": ["This accession number is already used."]})
        if self.instance is not None:
            # What is not sent is what is stored: a new station must show the stored patient too.
            attrs["patient"] = self._whole_patient(attrs.get("patient", {}))
        patient = attrs.get("patient") or {}
        stored = {name: getattr(self.instance, name) for name in SHOWN_ENTRY_FIELDS} if self.instance else {}
        letters = station_letters(deployment)
        problems = station_problems(station, shown_values(patient, {**stored, **attrs}), letters)
        for name, message in patient_problems(deployment, patient, getattr(self.instance, "pk", None), letters).items():
            problems.setdefault(name, message)
        if problems:
            errors = {"patient": {}}
            for name, message in problems.items():
                if name in PATIENT_FIELDS:
                    errors["patient"][name] = [message]
                else:
                    errors[name] = [message]
            raise serializers.ValidationError({k: v for k, v in errors.items() if v})
        return attrs

    def _whole_patient(self, given):
        """A PATCH may send part of the patient: the rest comes from the patient its ID names
        (by default the entry's own), so a partial patient changes only what it sends."""
        patient_id = given.get("patient_id", self.instance.patient.patient_id)
        known = Patient.objects.filter(deployment=self.instance.deployment, patient_id=patient_id).first()
        whole = {name: getattr(known, name) for name in PATIENT_FIELDS} if known else {}
        whole.update(given)
        missing = [name for name in ("patient_id", "family_name") if not whole.get(name)]
        if missing:
            raise serializers.ValidationError(
                {
                    "patient": {
                        name: [f"Required: no patient {patient_id!r} exists yet on this deployment."]
                        for name in missing
                    }
                }
            )
        return whole

    def _save(self, validated, instance=None):
        request = self.context["request"]
        deployment = validated.pop("deployment", None) or instance.deployment
        patient = validated.pop("patient", None)
        if patient is None:
            patient = {name: getattr(instance.patient, name) for name in PATIENT_FIELDS}
        with transaction.atomic():
            return save_entry(request, deployment, patient, validated, instance)

    def create(self, validated_data):
        return self._save(validated_data)

    def update(self, instance, validated_data):
        if instance.status not in (WorklistEntry.Status.SCHEDULED, WorklistEntry.Status.ARRIVED):
            raise serializers.ValidationError({"status": [f"The entry is {instance.status}: it can no longer change."]})
        return self._save(validated_data, instance)


class TransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WorklistEntry.Status.choices)


PATIENT_FILTERS = [
    OpenApiParameter("deployment", str, description="Deployment slug"),
    OpenApiParameter("q", str, description=f"Family name or patient ID prefix, at most {SEARCH_MAX_LENGTH} characters"),
]


@extend_schema_view(list=extend_schema(parameters=PATIENT_FILTERS))
class PatientViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Patients of a deployment. ``?deployment=<slug>&q=<family name or ID prefix>``."""

    serializer_class = PatientSerializer
    queryset = Patient.objects.select_related("deployment").order_by("family_name", "given_name", "id")

    def get_queryset(self):
        qs = scoped(super().get_queryset(), self.request.user)  # another site's object answers 404
        params = self.request.query_params
        if params.get("deployment"):
            qs = qs.filter(deployment__slug=params["deployment"])
        if params.get("q"):
            if search_problem(params["q"]):
                raise serializers.ValidationError({"q": [search_problem(params["q"])]})
            qs = qs.filter(Q(family_name__istartswith=params["q"]) | Q(patient_id__istartswith=params["q"]))
        return qs

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        deployment = data.pop("deployment")
        serializer.instance = save_patient(self.request, deployment, data)

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        patient = serializer.save()  # marks its active entries for rewriting (Patient.save)
        audit.record(self.request, AuditEntry.Action.UPDATE, patient, before, audit.snapshot(patient))
        request_sync(patient.deployment_id)


ENTRY_FILTERS = [
    OpenApiParameter("deployment", str, description="Deployment slug"),
    OpenApiParameter("date", str, description="Scheduled day, YYYY-MM-DD"),
    OpenApiParameter("date_from", str, description="From this day, YYYY-MM-DD"),
    OpenApiParameter("date_to", str, description="Up to this day, YYYY-MM-DD"),
    OpenApiParameter("station", str, description="Scheduled station AE title"),
    OpenApiParameter("status", str, description="Status, e.g. SCHEDULED", enum=WorklistEntry.Status.values),
]


@extend_schema_view(list=extend_schema(parameters=ENTRY_FILTERS))
class EntryViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Worklist entries (scheduled procedure steps). Cancel and move them with the actions."""

    serializer_class = EntrySerializer
    lookup_field = "uuid"
    queryset = WorklistEntry.objects.select_related("patient", "deployment").order_by(
        "scheduled_date", "scheduled_time", "id"
    )

    def get_queryset(self):
        qs = scoped(super().get_queryset(), self.request.user)  # another site's object answers 404
        p = self.request.query_params
        filters = {
            "deployment__slug": p.get("deployment"),
            "scheduled_date": p.get("date"),
            "scheduled_date__gte": p.get("date_from"),
            "scheduled_date__lte": p.get("date_to"),
            "station_aet": p.get("station"),
            "status": p.get("status"),
        }
        bad = {
            k: v
            for k, v in (("date", p.get("date")), ("date_from", p.get("date_from")), ("date_to", p.get("date_to")))
            if v and not _is_date(v)
        }
        if bad:
            raise serializers.ValidationError({k: ["A date is YYYY-MM-DD."] for k in bad})
        return qs.filter(**{k: v for k, v in filters.items() if v})

    @extend_schema(request=None, responses=EntrySerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, uuid=None):
        return self._move(request, WorklistEntry.Status.CANCELLED)

    @extend_schema(request=TransitionSerializer, responses=EntrySerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, uuid=None):
        data = TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._move(request, data.validated_data["status"])

    def _move(self, request, status):
        entry = self.get_object()
        try:
            change_status(request, entry, status)
        except InvalidTransition as exc:
            return Response({"status": exc.messages}, status=400)
        return Response(EntrySerializer(entry, context=self.get_serializer_context()).data)


def _is_date(value):
    import datetime

    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True
