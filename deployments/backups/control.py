"""Orthanc's short stop during a backup or a restore, through the deployment's service control.

Whatever fails while Orthanc is stopped, it is started again (and waited for) before the caller
hears of the failure: Orthanc is never left stopped by a backup.
"""

import logging
import time

from deployments.service import ServiceError, service_for

log = logging.getLogger(__name__)
START_ATTEMPTS = 3


class WindowError(Exception):
    """Orthanc did not stop or start as asked inside the backup's stop window."""

    def __init__(self, message, downtime=None):
        super().__init__(message)
        self.downtime = downtime


def service_of(deployment):
    service = service_for(deployment)
    if service is None:
        raise ServiceError(
            f"{deployment} has no service control the portal can use ({deployment.get_service_kind_display()}): "
            "a consistent copy of a SQLite index needs a short stop of Orthanc"
        )
    return service


def ensure_running(service, attempts=START_ATTEMPTS, timeout=30.0) -> list[str]:
    """Start Orthanc (if needed) until it answers. Returns the failed attempts on the way."""
    errors = []
    for _ in range(attempts):
        try:
            if service.is_running():
                service.wait_until_up(timeout=timeout)
            else:
                service.start(wait=timeout)
            return errors
        except Exception as exc:  # any failure of one attempt: try again, the next may work
            errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("Orthanc start attempt failed: %s", exc)
            time.sleep(0.5)
    raise ServiceError(f"Orthanc could not be started again after {attempts} attempts: {errors[-1]}")


def run_stopped(service, body, limit, guard=None):
    """Stop Orthanc, call ``body(deadline)``, start Orthanc again; returns (body's result, downtime).

    Any failure (stop refused, body failed, start needed more than one attempt) raises after
    Orthanc answers again; the exception carries ``downtime``. ``guard`` (the run's guardian) hears
    of the window's opening and closing: it starts Orthanc if the run dies in between.
    """
    t0 = time.monotonic()
    failure, result = None, None
    try:
        if guard is not None:
            guard.stopping(t0 + limit)
        try:
            service.stop()
        except Exception as exc:
            raise WindowError(f"Orthanc did not stop: {exc}") from exc
        if service.is_running():
            raise WindowError("Orthanc did not stop: it is still running")
        result = body(t0 + limit)
        if service.is_running():
            # The guardian's deadline passed and it started Orthanc under the copy.
            raise WindowError("Orthanc was started again during the index copy: the copy is not consistent")
    except Exception as exc:  # re-raised below, once Orthanc runs again
        failure = exc
    try:
        start_errors = ensure_running(service)
    except ServiceError as exc:
        raise WindowError(
            f"ORTHANC IS DOWN: {exc}" + (f" (the backup had failed first: {failure})" if failure else ""),
            time.monotonic() - t0,
        ) from exc
    downtime = time.monotonic() - t0
    if guard is not None:
        guard.started()
    if failure is not None:
        failure.downtime = downtime
        raise failure
    if start_errors:
        raise WindowError(
            f"Orthanc did not start again at the first attempt ({start_errors[0]}); it is running now, "
            "but the stop window was not kept",
            downtime,
        )
    return result, downtime
