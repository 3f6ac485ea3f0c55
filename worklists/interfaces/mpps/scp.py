"""The MPPS SCP (pynetdicom): one process serves every deployment (or those named), told apart by
the called AE title (each deployment's own, or ``MPPS_AE_TITLE``) and by the calling station.

Who may send is decided before the association is accepted: the calling AE title and the peer's
address must be a registered modality of a deployment answering to the called AE title (AE title
and host, as Orthanc's DicomModalities with DicomCheckModalityHost). Anyone else gets an
A-ASSOCIATE-RJ and a log line. Each association runs in its own thread: a bad dataset gets a DIMSE
failure status with an ErrorComment and a log line, and the others are served as before.
"""

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification
from pynetdicom.transport import ThreadedAssociationServer

from deployments.models import Deployment, Modality
from worklists.interfaces import heartbeat

from . import datasets
from .datasets import DatasetProblem
from .performed import Caller, mpps_create, mpps_set

log = logging.getLogger(__name__)
# A-ASSOCIATE-RJ: rejected permanent, by the service user, with the reason (PS3.8 9.3.4).
REJECT_CALLING, REJECT_CALLED = (0x01, 0x01, 0x03), (0x01, 0x01, 0x07)


@dataclass
class Refusal:
    reason: str
    diagnostic: tuple


def _address(value) -> str:
    value = str(value or "")
    return value.removeprefix("::ffff:")  # an IPv4 peer seen on an IPv6 socket


def host_matches(host: str, address: str) -> bool:
    """Whether a modality registered at ``host`` (an IP address, or a name when the deployment
    does not check hosts) is the peer at ``address``."""
    host = host.strip()
    if host == address:
        return True
    try:
        ipaddress.ip_address(host)
        return False  # another address
    except ValueError:
        pass
    try:
        return address in {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False


def authorise(called_aet: str, calling_aet: str, address: str, slugs=None) -> Caller | Refusal:
    """The registered station behind this association, or why it is refused."""
    called, calling = called_aet.strip(), calling_aet.strip()
    deployments = Deployment.objects.all()
    if slugs:
        deployments = deployments.filter(slug__in=slugs)
    answers = [d for d in deployments if called in (d.dicom_aet, settings.MPPS_AE_TITLE)]
    if not answers:
        return Refusal(f"no deployment served here answers to the called AE title {called!r}", REJECT_CALLED)
    stations = Modality.objects.filter(deployment__in=answers, aet=calling).select_related("deployment")
    known = [s for s in stations if host_matches(s.host, address)]
    if not known:
        if stations:
            hosts = ", ".join(sorted({s.host for s in stations}))
            return Refusal(f"{calling} is registered at {hosts}, not at {address}", REJECT_CALLING)
        return Refusal(f"{calling} is not a registered modality of {called}", REJECT_CALLING)
    if len({s.deployment_id for s in known}) > 1:
        return Refusal(f"{calling} at {address} is registered with several deployments called {called}", REJECT_CALLED)
    return Caller(deployment=known[0].deployment, station=known[0], address=address)


class _Server(ThreadedAssociationServer):
    def get_request(self):
        client, address = super().get_request()
        # Nagle on our end of the association adds about 40 ms to each answer (DESIGN.md).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address


class MppsServer:
    def __init__(self, ae_title="PORTAL_MPPS", slugs=None):
        self.slugs = slugs or None
        self.ae = AE(ae_title=ae_title)
        self.ae.add_supported_context(ModalityPerformedProcedureStep)
        self.ae.add_supported_context(Verification)  # the machine's "test the connection"
        # The called AE title is checked per deployment in on_requested, not by pynetdicom.
        self.ae.require_called_aet = False
        self.ae.acse_timeout = self.ae.dimse_timeout = 30
        self.ae.network_timeout = 60
        self.ae.maximum_associations = 32
        self.handlers = [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_N_CREATE, self.on_n_create),
            (evt.EVT_N_SET, self.on_n_set),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
        ]

    def serve(self, bind, port):
        """Serve until interrupted; each association in its own thread."""
        server = self.ae.make_server((bind, port), evt_handlers=self.handlers, server_class=_Server)
        log.info("MPPS SCP listening on %s:%s", bind, port)
        beating = heartbeat.start("mpps", f"{bind}:{port}")
        try:
            server.serve_forever()
        finally:
            beating.set()
            server.shutdown()  # and every association still open

    def on_requested(self, event):
        assoc = event.assoc
        # The A-ASSOCIATE-RQ as received: pynetdicom copies its titles only after this event.
        request = assoc.requestor.primitive
        called, calling = request.called_ae_title, request.calling_ae_title
        address = _address(assoc.requestor.address)
        try:
            outcome = authorise(called, calling, address, self.slugs)
        except Exception:  # the database away: refuse this one, keep serving
            log.exception("MPPS: cannot check the association from %s at %s", calling, address)
            outcome = Refusal("the portal cannot check the station now", (0x02, 0x01, 0x01))
        finally:
            connection.close()  # each association is a thread: no connection left behind
        if isinstance(outcome, Refusal):
            log.warning("MPPS: association from %s at %s to %s refused: %s", calling, address, called, outcome.reason)
            assoc.acse.send_reject(*outcome.diagnostic)
            assoc.kill()
            return
        assoc.mpps_caller = outcome
        log.info("MPPS: association from %s", outcome)

    def on_n_create(self, event):
        return self._handle(event, creating=True)

    def on_n_set(self, event):
        return self._handle(event, creating=False)

    def _handle(self, event, creating):
        started = time.perf_counter()
        request = event.request
        command = "N-CREATE" if creating else "N-SET"
        caller = getattr(event.assoc, "mpps_caller", None)
        given = request.AffectedSOPInstanceUID if creating else request.RequestedSOPInstanceUID
        uid = str(given or "") or (generate_uid() if creating else "")
        try:
            if caller is None:
                raise DatasetProblem(datasets.NOT_AUTHORISED, "not a registered station")
            if not uid or len(uid) > 64:
                raise DatasetProblem(datasets.INVALID_VALUE, "no valid SOP instance UID")
            try:
                ds = event.attribute_list if creating else event.modification_list
            except Exception as exc:  # bytes pydicom cannot decode
                raise DatasetProblem(datasets.PROCESSING_FAILURE, f"unreadable dataset: {exc}") from exc
            if ds is None:
                raise DatasetProblem(datasets.MISSING_ATTRIBUTE, "no attribute list")
            (mpps_create if creating else mpps_set)(caller, uid, ds)
        except DatasetProblem as exc:
            log.warning("MPPS: %s %s from %s refused (0x%04X): %s", command, uid, caller, exc.status, exc)
            return failure(exc.status, str(exc)), None
        except Exception:
            log.exception("MPPS: %s %s from %s failed", command, uid, caller)
            return failure(datasets.PROCESSING_FAILURE, "the portal could not process it"), None
        finally:
            connection.close()
        log.info("MPPS: %s %s from %s done in %.0f ms", command, uid, caller, (time.perf_counter() - started) * 1000)
        answer = Dataset()
        if creating and not given:
            answer.AffectedSOPInstanceUID = uid  # PS3.7 10.1.5.1.4: the SCP names a step it numbered
        return 0x0000, answer


def failure(code, comment) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]  # LO
    return status
