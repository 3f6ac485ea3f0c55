"""What the settings pages say beside a value Orthanc does not run: "saved, not applied yet" or
"failed to apply", with the value in force.

The applied revision keeps the models it was rendered from (``state_json``); a saved value that
differs from it is either on its way (a revision waits or is being pushed) or was in the newest
push, which failed and left the previous configuration running."""

from dataclasses import dataclass, field

from .models import ConfigRevision, Deployment
from .state import model_state

PENDING, FAILED = "pending", "failed"


@dataclass
class Mark:
    state: str  # pending or failed
    applied: str = ""  # the value in force, as shown; "" for a password or a row Orthanc never had
    reason: str = ""  # why the newest push failed

    @property
    def text(self):
        if self.state == FAILED:
            return "failed to apply"
        return "saved, not applied yet"


@dataclass
class Unapplied:
    applied: ConfigRevision | None = None
    failed: ConfigRevision | None = None
    settings: dict = field(default_factory=dict)  # field name → Mark
    users: dict = field(default_factory=dict)  # username → {field name → Mark}, "" for the whole row
    modalities: dict = field(default_factory=dict)  # modality name → {field name → Mark}
    removed_users: dict = field(default_factory=dict)  # username → Mark: deleted, Orthanc still has it
    removed_modalities: dict = field(default_factory=dict)

    def __bool__(self):
        return any((self.settings, self.users, self.modalities, self.removed_users, self.removed_modalities))


SECRETS = {f.name for f in Deployment._meta.concrete_fields if getattr(f, "secret", False)} | {"password"}


def shown(name, value) -> str:
    if name in SECRETS:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in ("", None):
        return "(empty)"
    if isinstance(value, (dict, list)):
        return "(set)"
    return str(value)


def unapplied(deployment) -> Unapplied | None:
    """None when nothing was ever applied (the pages then say so once)."""
    applied = deployment.revisions.filter(state=ConfigRevision.State.APPLIED).first()
    if applied is None:
        return None
    if not applied.model_state:
        return Unapplied(applied=applied)  # a revision older than the copy of its models: nothing to compare
    newest = deployment.revisions.exclude(state=ConfigRevision.State.SUPERSEDED).first()
    failed = newest if newest is not None and newest.state == ConfigRevision.State.FAILED else None
    return compare(applied.model_state, model_state(deployment), failed, applied)


def compare(before: dict, now: dict, failed=None, applied=None) -> Unapplied:
    """Pure: the marks for ``now`` against the applied state ``before`` (both as model_state gives)."""
    tried = failed.model_state if failed is not None else {}
    reason = failed.error[:300] if failed is not None else ""
    result = Unapplied(applied=applied, failed=failed)

    def mark(name, old, new, tried_value, known=True):
        # Failed: the newest push carried this very value and did not take.
        state = FAILED if failed is not None and tried_value == new else PENDING
        return Mark(state, shown(name, old) if known else "", reason if state == FAILED else "")

    old_settings, tried_settings = before.get("settings", {}), tried.get("settings", {})
    for name, value in now.get("settings", {}).items():
        if name in old_settings and old_settings[name] != value:
            result.settings[name] = mark(name, old_settings[name], value, tried_settings.get(name, _ABSENT))
    for kind, key in (("users", "username"), ("modalities", "name")):
        old_rows = {row[key]: row for row in before.get(kind, [])}
        tried_rows = {row[key]: row for row in tried.get(kind, [])}
        now_rows = {row[key]: row for row in now.get(kind, [])}
        marks = result.users if kind == "users" else result.modalities
        for ident, row in now_rows.items():
            old, tried_row = old_rows.get(ident), tried_rows.get(ident, {})
            if old is None:
                marks[ident] = {"": mark(key, None, row, tried_rows.get(ident, _ABSENT), known=False)}
                continue
            fields = {
                name: mark(name, old[name], value, tried_row.get(name, _ABSENT))
                for name, value in row.items()
                if name in old and old[name] != value
            }
            if fields:
                marks[ident] = fields
        removed = result.removed_users if kind == "users" else result.removed_modalities
        for ident in old_rows.keys() - now_rows.keys():
            gone = failed is not None and ident not in tried_rows
            removed[ident] = Mark(FAILED if gone else PENDING, "", reason if gone else "")
    return result


_ABSENT = object()
