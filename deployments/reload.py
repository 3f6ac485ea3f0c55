"""Making the running Orthanc read the files a push wrote, checking that it did, and bringing it
back to the previous files when it did not. Only push.py calls these."""

import time

from django.conf import settings

from .orthanc import OrthancAuthFailed, OrthancClient, OrthancError, OrthancHTTPError
from .orthanc_log import plugin_advice
from .render import PLUGINS, probe_of
from .service import ServiceError


class PushError(Exception):
    pass


# What each plugin the portal loads calls itself in Orthanc's /plugins.
PLUGIN_IDS = {
    PLUGINS["worklists"]: "worklists",
    PLUGINS["python"]: "python",
    PLUGINS["dicomweb"]: "dicom-web",
    PLUGINS["postgresql"]: "postgresql-index",
}


class PluginNotLoaded(PushError):
    pass


class NotLetIn(PushError):
    """The running Orthanc refused every account the push could ask it with: it still runs the
    previous files."""


def reload(url, logins, service):
    """Make Orthanc re-read its configuration: /tools/reset with the first account it accepts,
    a restart by the service control if it accepts none, a start if it does not run.

    Raises NotLetIn when nobody here can make it re-read them (it then runs the previous files)."""
    refused = []
    for auth in logins:
        try:
            OrthancClient(url, *auth, timeout=10).post_json("/tools/reset")
            return
        except OrthancAuthFailed as exc:
            refused.append((auth[0], exc.status))
        except OrthancHTTPError as exc:
            raise NotLetIn(f"Orthanc refused /tools/reset: {exc}") from exc
        except OrthancError:
            break  # not running: start it below
    if refused and service is not None:
        try:
            service.restart()  # a restart reads the files without anyone's password
        except ServiceError as exc:
            raise PushError(f"Orthanc did not restart: {exc}") from exc
        return
    if refused:
        raise NotLetIn(not_let_in(refused))
    if service is None:
        return  # nobody here can start it: wait for whoever runs it (e.g. a container waiting for its files)
    try:
        service.start(wait=0)
    except ServiceError as exc:
        raise PushError(f"Orthanc did not start: {exc}") from exc


def not_let_in(refused) -> str:
    """What happened and what to do, when Orthanc let none of the push's accounts reset it."""
    said = []
    for username, status in refused:
        if status == 403:
            said.append(f"its request filter does not let {username} call /tools/reset (403)")
        else:
            said.append(f"it does not accept the password of {username} (401)")
    return (
        f"Orthanc would not re-read its configuration: {'; '.join(said)}. An Orthanc that does not know the "
        "portal's account yet (the first push after an import) needs an existing admin account of it for that "
        "push: type one on the deployment's adoption page, or run manage.py push_config with --admin-user; or set "
        "the deployment's service control so that the portal can restart it"
    )


def wait_for_config(url, auth, probe, service, timeout):
    """Poll until Orthanc answers with the configuration whose Lua filter knows ``probe``."""
    client = OrthancClient(url, *auth, timeout=2)
    deadline = time.monotonic() + timeout
    last = "no answer"
    time.sleep(0.2)  # /tools/reset answers before Orthanc goes down to re-read its files
    while time.monotonic() < deadline:
        if service is not None and hasattr(service, "pid") and not service.is_running():
            raise PushError("Orthanc exited while loading the new configuration")
        try:
            client.request("GET", "/system", headers={"X-Portal-Probe": probe})
            return
        except OrthancAuthFailed as exc:
            last = str(exc)  # 403: still the old filter; 401: old credentials
        except OrthancError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise PushError(f"Orthanc did not answer with the new configuration within {timeout:.0f} s ({last})")


def check_plugins(url, auth, wanted):
    """Orthanc 1.10 starts without a plugin it cannot find: the push says so instead of succeeding."""
    try:
        loaded = set(OrthancClient(url, *auth, timeout=5).get_json("/plugins"))
    except (OrthancError, ValueError, TypeError):
        return  # the configuration answered; which plugins run is then the status check's to see
    for path in wanted:
        library = str(path).rsplit("/", 1)[-1]
        plugin = PLUGIN_IDS.get(library)
        if plugin and plugin not in loaded:
            raise PluginNotLoaded(f"the plugin {path} did not load: {plugin_advice(path)}")


def recover(url, logins, verify_auth, previous, service):
    """After restoring the previous files: make Orthanc run them, whatever state it is in."""
    for auth in logins:
        try:
            OrthancClient(url, *auth, timeout=5).post_json("/tools/reset")
            break
        except OrthancError:
            continue
    else:
        if service is None:
            raise PushError(
                "Orthanc is down and this deployment has no service control to start it: start Orthanc on its "
                "host (the previous files are back in place)"
            )
        try:
            if not service.is_running():
                service.start(wait=0)
        except ServiceError as exc:
            raise PushError(str(exc)) from exc
    probe = probe_of(previous)
    if probe:
        wait_for_config(url, verify_auth, probe, service, settings.PUSH_VERIFY_TIMEOUT)
    else:
        wait_until_answering(url, logins, service, settings.PUSH_VERIFY_TIMEOUT)


def wait_until_answering(url, logins, service, timeout):
    """For files the portal did not write (no probe to ask for): Orthanc answers over HTTP again."""
    deadline = time.monotonic() + timeout
    time.sleep(0.2)
    while time.monotonic() < deadline:
        for auth in logins:
            try:
                OrthancClient(url, *auth, timeout=2).system()
                return
            except OrthancAuthFailed:
                return  # it answers; only not to this account
            except OrthancError:
                break
        time.sleep(0.1)
    raise PushError(f"Orthanc did not answer within {timeout:.0f} s")
