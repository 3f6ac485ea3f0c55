"""The audit trail: who changed what, field by field, written in the caller's transaction."""

import contextvars
import datetime
import decimal
import uuid
from contextlib import contextmanager

from django.db import models

from .clientip import client_ip
from .models import AuditEntry

REDACTED = "••••••"
SECRET_NAMES = {"password", "secret", "private_key", "token"}


def _is_secret(field):
    return getattr(field, "secret", False) or any(s in field.name for s in SECRET_NAMES)


def _plain(value):
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    return value


def snapshot(instance) -> dict:
    """The instance's concrete field values as JSON-ready data, secrets redacted."""
    data = {}
    for field in instance._meta.concrete_fields:
        value = field.value_from_object(instance)
        if _is_secret(field):
            # Only whether it is set and a digest of nothing: a change still shows as a change.
            data[field.name] = (REDACTED, hash(value)) if value else ""
        else:
            data[field.name] = _plain(value)
    return data


def diff(before: dict | None, after: dict | None) -> dict:
    before, after = before or {}, after or {}
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changes[name] = [_show(old), _show(new)]
    return changes


def _show(value):
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == REDACTED:
        return REDACTED
    return value


# The source of changes made without a request or a user (an interface listener): "hl7", "mpps".
_SOURCE = contextvars.ContextVar("audit_source", default=None)


@contextmanager
def acting_as(source: str):
    """Audit entries recorded inside without a request or user carry ``source`` (at most 16)."""
    token = _SOURCE.set(source[:16])
    try:
        yield
    finally:
        _SOURCE.reset(token)


# The entries of the open ``batched()`` block, written together when it ends (None: no block).
_BATCH = contextvars.ContextVar("audit_batch", default=None)


@contextmanager
def batched():
    """Entries recorded inside are written together, in one INSERT, when the block ends without an
    error: called inside the caller's transaction, they commit or roll back with what they record.
    For a writer of many small changes in one transaction (an HL7 message: its entry, its row)."""
    pending = []
    token = _BATCH.set(pending)
    try:
        yield
    finally:
        _BATCH.reset(token)
    AuditEntry.objects.bulk_create(pending)


def actor_of(request_or_user):
    user = getattr(request_or_user, "user", request_or_user)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


def record(who, action, obj, before=None, after=None, *, summary="", source=None, object_type=None):
    """Add one audit entry. ``who`` is a request (web, API), a user, or None (system)."""
    added = entry(who, action, obj, before, after, summary=summary, source=source, object_type=object_type)
    batch = _BATCH.get()
    if batch is None:
        added.save(force_insert=True)
    else:
        batch.append(added)  # saved as the batch ends
    return added


def entry(who, action, obj, before=None, after=None, *, summary="", source=None, object_type=None):
    """The audit entry ``record`` adds, unsaved: for writers that save many at once (bulk_create)."""
    request = who if hasattr(who, "META") else None
    user = actor_of(who)
    if source is None:
        source = "api" if request is not None and request.path.startswith("/api/") else ("web" if request else None)
        source = source or _SOURCE.get() or "system"
    changes = diff(before, after) if (before is not None or after is not None) else {}
    return AuditEntry(
        actor=user,
        actor_name=user.get_username() if user else source,
        source=source,
        ip=client_ip(request) if request else None,
        action=action,
        object_type=object_type or (obj._meta.label_lower if obj is not None else ""),
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        summary=summary[:200],
        changes=changes,
        deployment_id=deployment_of(obj),
    )


def deployment_of(obj):
    """The site an audited object belongs to, or None for the portal's own objects."""
    if obj is None:
        return None
    if obj._meta.label_lower == "deployments.deployment":
        return obj.pk
    for path in ("deployment_id", "schedule.deployment_id", "run.schedule.deployment_id"):
        value = obj
        try:
            for part in path.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        return value
    return None


def save_form(who, form, **extra):
    """Save a ModelForm and record the change with its before → after values."""
    instance = form.instance
    creating = instance._state.adding
    before = None if creating else snapshot(type(instance).objects.get(pk=instance.pk))
    obj = form.save(**extra)
    record(who, AuditEntry.Action.CREATE if creating else AuditEntry.Action.UPDATE, obj, before, snapshot(obj))
    return obj


def delete(who, obj):
    before = snapshot(obj)
    pk = obj.pk
    obj.delete()
    obj.pk = pk
    record(who, AuditEntry.Action.DELETE, obj, before, None)
