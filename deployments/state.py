"""A deployment's configuration models as plain data, and back: what a revision keeps so
that a rollback restores the models along with the files."""

import datetime

from .models import Deployment, Modality, OrthancUser

# Fields that describe the live server or identify the row, not its configuration.
NOT_CONFIG = {"id", "slug", "last_checked_at", "last_ok_at", "last_error", "last_version"}
USER_FIELDS = ["username", "password", "role", "is_active", "expires_on"]
MODALITY_FIELDS = [f.name for f in Modality._meta.concrete_fields if f.name not in ("id", "deployment")]


def _plain(value):
    return value.isoformat() if isinstance(value, datetime.date) else value


def model_state(deployment) -> dict:
    settings = {
        f.name: _plain(f.value_from_object(deployment))
        for f in Deployment._meta.concrete_fields
        if f.name not in NOT_CONFIG
    }
    users = [{f: _plain(getattr(u, f)) for f in USER_FIELDS} for u in deployment.orthanc_users.order_by("username")]
    modalities = [{f: getattr(m, f) for f in MODALITY_FIELDS} for m in deployment.modalities.order_by("name")]
    return {"settings": settings, "users": users, "modalities": modalities}


def restore_model_state(deployment, state) -> None:
    """Make the deployment's rows equal ``state`` (call inside a transaction)."""
    for name, value in state["settings"].items():
        setattr(deployment, name, value)
    deployment.full_clean(exclude=["slug", "name"])
    deployment.save()
    deployment.orthanc_users.exclude(username__in=[u["username"] for u in state["users"]]).delete()
    for data in state["users"]:
        expires = data["expires_on"]
        OrthancUser.objects.update_or_create(
            deployment=deployment,
            username=data["username"],
            defaults={**data, "expires_on": datetime.date.fromisoformat(expires) if expires else None},
        )
    deployment.modalities.exclude(name__in=[m["name"] for m in state["modalities"]]).delete()
    for data in state["modalities"]:
        Modality.objects.update_or_create(deployment=deployment, name=data["name"], defaults=data)
