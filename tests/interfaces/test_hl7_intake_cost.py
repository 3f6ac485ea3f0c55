"""What one order costs the listener, and what a connection keeps between its messages: a burst
reads its sender's setup once a second, an Admin's change still reaches it within that second."""

import datetime
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.interfaces.conftest import Ack, Client, order, send
from worklists.interfaces.hl7.intake import SENDER_SECONDS, Senders, message_receive
from worklists.interfaces.hl7.models import Hl7Mapping
from worklists.models import WorklistEntry

WHEN = f"{timezone.localdate() + datetime.timedelta(days=1):%Y%m%d}1000"


def _order(n, **kw):
    return order(f"MSG{n}", placer=f"ORD{n}", accession=f"ACC{n}", when=WHEN, **kw).encode()


def _queries(raw, senders):
    """The statements one message costs, the transaction's own (BEGIN, COMMIT) aside."""
    with CaptureQueriesContext(connection) as captured:
        ack = Ack(message_receive(raw, "test", senders))
    assert ack.code == "AA", ack.raw
    return len([q for q in captured.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))])


def test_an_order_of_a_known_patient_costs_ten_queries_and_eight_on_a_busy_connection(hl7_deployment, redis_server):
    senders = Senders()
    _queries(_order(1), senders)  # the patient is new: created and audited

    # Repeat check, sender, its stations, placer number, patient, accession number; the entry, its
    # order, the message and both audit entries in one INSERT.
    assert _queries(_order(2), Senders()) == 10
    assert _queries(_order(3), senders) == 8, "the sender's mapping and stations read a moment ago"
    assert WorklistEntry.objects.count() == 3


def test_a_mapping_switched_off_refuses_the_next_order_of_an_open_connection_within_a_second(
    hl7_deployment, hl7_listener
):
    client = Client(hl7_listener.port)
    assert Ack(client.send(_order(1))).code == "AA"
    Hl7Mapping.objects.update(enabled=False)

    time.sleep(SENDER_SECONDS + 0.2)
    refused = Ack(client.send(_order(2)))

    assert (refused.code, refused.location) == ("AR", "MSH-3")
    client.close()
    assert WorklistEntry.objects.count() == 1


def test_an_accession_number_another_entry_has_is_refused_as_a_duplicate_key(hl7_deployment, hl7_listener):
    assert send(hl7_listener.port, _order(1)).code == "AA"

    again = send(hl7_listener.port, order("MSG2", placer="ORD2", accession="ACC1", when=WHEN))

    assert (again.code, again.location, again.error_code) == ("AE", "OBR-18.1", "205"), again.raw
    assert "ACC1 is already used" in again.text
    assert WorklistEntry.objects.count() == 1
