"""The security audit of a deployment, after the Orthanc security guide.

Three parts: ``settings_findings`` is pure (the saved settings, users and modalities),
``file_findings`` looks at the modes of the secret files in the configuration folder, and
``live_findings`` asks the running Orthanc over HTTP (its version, whether it accepts default
passwords, whether a non-admin account reaches /tools/execute-script). ``worklists`` says which
worklist stations the deployment serves correctly and which scheduled names would arrive garbled.
"""

from .findings import (
    BADGES,
    DEFAULT_CREDENTIALS,
    SEVERITIES,
    WEAK_PASSWORDS,
    Finding,
    file_findings,
    is_weak_password,
    settings_findings,
)
from .live import live_findings, version_findings
from .worklists import entry_findings, worklist_charset_findings

__all__ = [
    "BADGES",
    "DEFAULT_CREDENTIALS",
    "SEVERITIES",
    "WEAK_PASSWORDS",
    "Finding",
    "audit_deployment",
    "file_findings",
    "has_critical",
    "is_weak_password",
    "live_findings",
    "settings_findings",
    "version_findings",
]


def audit_deployment(d, live=True, timeout=5.0) -> list[Finding]:
    users = list(d.orthanc_users.all()) if d.pk else []
    modalities = list(d.modalities.all()) if d.pk else []
    findings = settings_findings(d, users, modalities) + file_findings(d)
    findings += worklist_charset_findings(d, modalities) + entry_findings(d, modalities)
    if live:
        findings += live_findings(d, users, timeout=timeout)
    findings.sort(key=lambda x: SEVERITIES.index(x.severity))
    return [x.link(d.slug) for x in findings]


def has_critical(findings) -> bool:
    return any(x.severity == "critical" for x in findings)
