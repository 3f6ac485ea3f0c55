"""The fuzzer's table: for every named URL of the portal, what kind of input it takes.

tests/test_fuzz.py walks the URL configuration and fails when a name has no row here, as the
permission matrix does. The URL kwargs come from the permission matrix's rows (tests/permissions/);
a row here says only how to fuzz the URL:

- ``page``: a GET page; its query string and URL kwargs are fuzzed (and its search inputs);
- ``form``: a GET page with a form that POSTs to the same URL; the fields are read from the page;
- ``action``: a POST-only URL; ``fields`` names what it reads from the body;
- ``api``: a REST endpoint; JSON bodies built on the fields of the object ``baseline`` answers with;
- ``upload``: a form taking a file, ``file`` says which kind (``csv`` or ``config``).

``baseline`` names the URL whose GET gives valid values to start from, so that the fuzzer changes a
few fields of an otherwise valid submission and reaches the deep validation, not only "required".
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    kind: str
    fields: tuple = ()
    baseline: str = ""
    file: str = ""


def page():
    return Target("page")


def form(baseline=""):
    return Target("form", baseline=baseline)


def action(*fields):
    return Target("action", fields=fields)


def api(baseline="", fields=()):
    return Target("api", fields=fields, baseline=baseline)


def upload(file):
    return Target("upload", file=file)


TABLE = {
    # portal
    "dashboard": page(),
    "dashboard_cards": page(),
    "healthz": page(),
    "login": form(),
    "logout": action("next"),
    "password_change": form(),
    "password_change_done": page(),
    "sites": page(),
    "audit_log": page(),
    "staff_list": page(),
    "staff_create": form(),
    "staff_edit": form(),
    "staff_reset_password": action(),
    "api_tokens": page(),
    "api_token_create": form(),
    "api_token_revoke": action(),
    "metrics": page(),
    "metrics_token": form(),
    # deployments
    "deployments:list": page(),
    "deployments:create": form(baseline="deployments:edit"),
    "deployments:detail": page(),
    "deployments:edit": form(),
    "deployments:check": action(),
    "deployments:modalities": page(),
    "deployments:orthanc_users": page(),
    "deployments:preview": page(),
    "deployments:push": action(),
    "deployments:revisions": page(),
    "deployments:revision": page(),
    "deployments:rollback": action(),
    "deployments:modality_create": form(baseline="deployments:modality_edit"),
    "deployments:modality_edit": form(),
    "deployments:modality_delete": action(),
    "deployments:modality_echo": action(),
    "deployments:user_create": form(baseline="deployments:user_edit"),
    "deployments:user_edit": form(),
    "deployments:user_rotate": action(),
    "deployments:user_delete": action(),
    "deployments:service_rotate": action(),
    "deployments:import": upload("config"),
    "deployments:adoption": form(),
    "deployments:security": page(),
    "deployments:security_audit": action(),
    # backups
    "backups:dashboard": page(),
    "backups:schedule_create": form(baseline="backups:schedule_edit"),
    "backups:schedule": page(),
    "backups:schedule_edit": form(),
    "backups:schedule_delete": action(),
    "backups:schedule_run": action(),
    "backups:test_connection": action(),
    "backups:pin_host_key": action("fingerprint"),
    "backups:ssh_key": page(),
    "backups:ssh_key_generate": action(),
    "backups:run": page(),
    "backups:run_verify": action(),
    "backups:run_restore": form(),
    # worklists
    "worklists:index": page(),
    "worklists:create": form(baseline="worklists:edit"),
    "worklists:edit": form(),
    "worklists:status": action("status"),
    "worklists:patient_lookup": page(),
    "worklists:machine": page(),
    "worklists:import": upload("csv"),
    "worklists:sync_now": action(),
    "hl7:mappings": page(),
    "hl7:mapping_create": form(baseline="hl7:mapping_edit"),
    "hl7:mapping_edit": form(),
    "hl7:mapping_delete": action(),
    "interfaces:page": page(),
    "interfaces:resend": action(),
    # the REST API
    "api:docs": page(),
    "api:schema": page(),
    "api:patient-list": api(baseline="api:patient-detail"),
    "api:patient-detail": api(),
    "api:entry-list": api(baseline="api:entry-detail"),
    "api:entry-detail": api(),
    "api:entry-cancel": api(),
    "api:entry-transition": api(fields=("status",)),
}

# Query parameters the views read without showing an input for them (paging, filters, choices).
QUERY_NAMES = (
    "q", "page", "d", "date", "date_from", "date_to", "deployment", "station", "status", "live",
    "family_name", "user", "object_type", "next", "format", "ordering", "limit", "offset",
)  # fmt: skip
