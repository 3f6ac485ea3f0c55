"""Applying an ImportPlan: one transaction, every change audited."""

from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from portal import audit
from portal.models import AuditEntry

from ..models import Deployment, Modality, OrthancUser
from ..render import OWNED_FILES
from .parse import ConfigImportError
from .plan import OPTIONAL, SETTINGS, ImportPlan, Line


@dataclass
class ImportResult:
    deployment: Deployment
    lines: list
    adoption: object = None  # the Adoption this import started

    @property
    def critical(self):
        return [line for line in self.lines if line.level == "critical"]

    @property
    def to_decide(self):
        return [line for line in self.lines if line.level == "decide"]


def apply_import(deployment, plan: ImportPlan, who=None, source=None, label="") -> ImportResult:
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        before = audit.snapshot(deployment)
        for name, value in plan.settings.items():
            setattr(deployment, name, value)
        deployment.extra_config = plan.extra
        try:
            deployment.full_clean()
        except ValidationError as exc:
            raise ConfigImportError(_first_error(exc)) from None
        deployment.save()
        audit.record(
            who,
            AuditEntry.Action.UPDATE,
            deployment,
            before,
            audit.snapshot(deployment),
            summary=f"Imported an Orthanc configuration from {label}"[:200],
            source=source,
        )
        lines = (
            list(plan.lines)
            + _apply_users(deployment, plan, who, source)
            + _apply_modalities(deployment, plan, who, source)
        )
    lines += _foreign_files(deployment)
    lines.append(Line("note", "nothing was pushed: review the users and settings, then make the first push"))
    return ImportResult(deployment, lines)


def _foreign_files(deployment):
    """Files the portal does not write but Orthanc reads: their keys now live in the portal's own."""
    folder = Path(deployment.config_dir)
    try:
        names = sorted(p.name for p in folder.iterdir() if p.suffix == ".json" and p.name not in OWNED_FILES)
    except OSError:
        return []  # the folder lives on the Orthanc host
    return [
        Line(
            "note",
            f"{name} in {folder} is not written by the portal: if the portal's files now hold all its keys, "
            f"the first push moves it into {folder}/before-portal-N/ (and back if the push fails); if only "
            "some, the push stops and says so (Orthanc refuses a key defined twice)",
        )
        for name in names
    ]


def _first_error(exc):
    if hasattr(exc, "error_dict"):
        name, errors = next(iter(exc.error_dict.items()))
        keys = {f: k for k, (f, _, _) in SETTINGS.items()} | {f: k for k, f in OPTIONAL.items()}
        key = keys.get(name, name)
        return f"{key}: {' '.join(e.message % (e.params or {}) for e in errors)}"
    return " ".join(exc.messages)


def _apply_users(deployment, plan, who, source):
    lines = []
    existing = {u.username: u for u in deployment.orthanc_users.all()}
    for username, row in plan.users.items():
        password = row["password"]
        user = existing.pop(username, None)
        if user is None:
            # The role the old request filter gave, never more (importer/luafilter.py).
            user = OrthancUser(
                deployment=deployment,
                username=username,
                password=password,
                role=row["role"],
                is_active=row["is_active"],
            )
            user.save()
            audit.record(who, AuditEntry.Action.CREATE, user, None, audit.snapshot(user), source=source)
        elif user.password != password:
            before = audit.snapshot(user)
            user.password = password
            user.save()
            audit.record(who, AuditEntry.Action.UPDATE, user, before, audit.snapshot(user), source=source)
            lines.append(Line("imported", f"user {username} already existed: password updated, role {user.role} kept"))
    for user in existing.values():
        audit.delete(who, user)
        lines.append(Line("replaced", f"user {user.username} removed: not in the imported configuration"))
    return lines


def _apply_modalities(deployment, plan, who, source):
    lines = []
    existing = {m.name: m for m in deployment.modalities.all()}
    # Removed first: a new modality may take over the address of one that goes.
    for name in existing.keys() - {row["name"] for row in plan.modalities}:
        modality = existing.pop(name)
        audit.delete(who, modality)
        lines.append(Line("replaced", f"modality {modality.name} removed: not in the imported configuration"))
    for row in plan.modalities:
        modality = existing.pop(row["name"], None)
        creating = modality is None
        before = None if creating else audit.snapshot(modality)
        modality = modality or Modality(deployment=deployment)
        for name, value in row.items():
            setattr(modality, name, value)
        modality.save()
        after = audit.snapshot(modality)
        if creating or before != after:
            action = AuditEntry.Action.CREATE if creating else AuditEntry.Action.UPDATE
            audit.record(who, action, modality, before, after, source=source)
    return lines
