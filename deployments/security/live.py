"""The live part of the audit: what the running Orthanc answers over HTTP."""

import secrets

from ..orthanc import OrthancAuthFailed, OrthancClient, OrthancError
from ..versions import DOCKER_IMAGE, DOCKER_IMAGE_ORTHANC, OrthancVersion, label
from .findings import DEFAULT_CREDENTIALS, HARMLESS_SCRIPT, Finding


def _try(url, username, password, timeout, method="GET", path="/system", **kwargs):
    """HTTP status of one request with these credentials, or None if Orthanc is unreachable."""
    client = OrthancClient(url, username, password, timeout=timeout)
    try:
        client.request(method, path, **kwargs)
        return 200
    except OrthancError as exc:  # OrthancAuthFailed (401/403) and OrthancHTTPError carry .status
        return getattr(exc, "status", None)


# Where a clinic gets a fixed Orthanc when its distribution's package is too old.
UPGRADE_PATHS = (
    f"Upgrade Orthanc: the {DOCKER_IMAGE} image that docker-compose.yml pins (Orthanc "
    f"{label(DOCKER_IMAGE_ORTHANC)}), or the Orthanc team's own Linux binaries (orthanc.uclouvain.be); "
    "Debian's packages (1.10.1 in Debian 12, 1.12.7 in Debian 13) carry the affected code. Meanwhile keep "
    "the REST API off the network (remote access off, or only behind the TLS front for known addresses) "
    "and accept DICOM only from the known modalities."
)


def version_findings(version_text) -> list[Finding]:
    """What the running release means for security (the judgements live in deployments.versions)."""
    version = OrthancVersion.of(version_text)
    if not version.known:
        return [
            Finding(
                "version-unknown",
                "info",
                f"Orthanc reports version {version_text!r}.",
                "Not a release number; check the published vulnerabilities by hand.",
                part="live",
            )
        ]
    f = [
        Finding(
            v.id,
            v.severity,
            f"Orthanc {version} is affected by {v.cves} (fixed in {label(v.fixed_in)}).",
            f"{v.summary[0].upper()}{v.summary[1:]}. These flaws are public, so they are what an attacker tries "
            f"first. {UPGRADE_PATHS}",
            part="live",
        )
        for v in version.vulnerabilities()
    ]
    if version.export_always_allowed:
        f.append(
            Finding(
                "export-always-allowed",
                "low",
                f"Orthanc {version} lets /instances/…/export write files on the server whatever the settings say.",
                "RestApiWriteToFileSystemEnabled only exists from Orthanc 1.12.0; the portal's filter keeps the "
                "route to admins.",
                part="live",
            )
        )
    return f


def live_findings(d, users=(), timeout=5.0) -> list[Finding]:
    url = d.orthanc_url
    client = OrthancClient.for_deployment(d, timeout=timeout)
    try:
        system = client.system()
    except OrthancAuthFailed as exc:
        f = [
            Finding(
                "live-portal-account-refused",
                "info",
                "The live Orthanc refused the portal's account.",
                f"{exc}. The version could not be read; push the configuration first.",
                part="live",
            )
        ]
    except (OrthancError, ValueError) as exc:
        return [Finding("live-not-checked", "info", "The live checks did not run.", str(exc), part="live")]
    else:
        f = version_findings(system.get("Version", ""))
    # A made-up account and the portal's account with a made-up password must both get 401.
    for probe_user in (f"audit-{secrets.token_hex(4)}", d.service_username):
        status = _try(url, probe_user, secrets.token_urlsafe(18), timeout)
        if status in (200, 403):
            f.append(
                Finding(
                    "live-authentication-not-enforced",
                    "critical",
                    f"The live Orthanc accepted user {probe_user} with a made-up password (HTTP {status}).",
                    "Authentication is not enforced: anyone can claim any account name, the portal's admin included.",
                    "authentication_enabled",
                    part="live",
                )
            )
            return f  # default passwords mean nothing on a server that checks none
    pairs = list(DEFAULT_CREDENTIALS)
    for user in users:
        pairs += [(user.username, user.username), (user.username, "orthanc"), (user.username, "password")]
    accepted = []  # user names only: the finding is stored and shown, the password never is
    for username, password in dict.fromkeys(pairs):
        if _try(url, username, password, timeout) in (200, 403):  # 403: the password passed, the filter limited it
            accepted.append(username)
    if accepted:
        f.append(
            Finding(
                "live-default-credentials",
                "critical",
                "The live Orthanc accepts a well-known default password for: " + ", ".join(dict.fromkeys(accepted)),
                "These are the first pairs an attacker tries; rotate those users' passwords and push.",
                page=("deployments:orthanc_users", []),
                part="live",
            )
        )
    f.append(_execute_script_finding(d, users, timeout))
    return f


def _execute_script_finding(d, users, timeout):
    others = [u for u in users if u.role != "admin" and u.is_effective()]
    if not others:
        return Finding(
            "execute-script-not-tested",
            "info",
            "/tools/execute-script by a non-admin: not tested.",
            "No active non-admin Orthanc user exists to try it with.",
            part="live",
        )
    reached, untested = [], []
    for user in others:
        status = _try(
            d.orthanc_url,
            user.username,
            user.password,
            timeout,
            "POST",
            "/tools/execute-script",
            data=HARMLESS_SCRIPT.encode(),
        )
        if status == 401:
            untested.append(user.username)
        elif status != 403:
            reached.append(f"{user.username} ({user.role}, HTTP {status})")
    if reached:
        return Finding(
            "execute-script-reachable",
            "critical",
            "Non-admin users reach /tools/execute-script: " + ", ".join(reached),
            "That route runs any Lua code, and from there system commands; only admins may reach it.",
            "execute_lua_enabled",
            part="live",
        )
    if untested and len(untested) == len(others):
        return Finding(
            "execute-script-not-tested",
            "info",
            "/tools/execute-script by a non-admin: not tested.",
            f"The live Orthanc refused the passwords of {', '.join(untested)}: push the configuration first.",
            part="live",
        )
    return Finding(
        "execute-script-denied",
        "info",
        "Non-admin users get 403 on /tools/execute-script.",
        "As it should be.",
        part="live",
    )
