"""A worker whose late acknowledgement is lost with its connection asks for the next message once
the broker is back (portal/celery.py): a real Redis, stopped between delivery and acknowledgement."""

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

import portal.celery  # noqa: F401 - what every worker of the portal imports

from .conftest import CentralRedis


def test_a_lost_acknowledgement_frees_the_prefetch_slot_and_the_message_waits_in_redis(tmp_path):
    central = CentralRedis(tmp_path / "redis")
    central.start()
    queue = Queue("deployment.north", Exchange("deployment.north"), routing_key="deployment.north")
    received = []
    try:
        with Connection(central.url(), transport_options={"socket_timeout": 2}) as conn:
            channel = conn.channel()
            channel.basic_qos(0, 1, False)  # prefetch 1, as the portal's workers
            Producer(channel).publish({"job": 1}, exchange=queue.exchange, routing_key="deployment.north",
                                      declare=[queue])  # fmt: skip
            with Consumer(channel, queues=[queue], callbacks=[lambda body, message: received.append(message)]):
                conn.drain_events(timeout=5)
                assert len(received) == 1
                assert not channel.qos.can_consume()
                central.stop()
                with pytest.raises(redis.exceptions.ConnectionError):
                    received[0].ack()
                # Without portal/celery.py's fix the slot stayed taken for good.
                assert channel.qos.can_consume()
        central.start()
        # The message itself is still in Redis's unacked keys: it comes back after the visibility
        # timeout, and its job, already claimed, is not run twice.
        assert central.client().hlen("unacked") == 1
    finally:
        central.stop()
