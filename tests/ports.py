"""Free loopback ports for the servers the suite and the benchmarks start.

They come from a range below the kernel's ephemeral ports (PORTAL_TEST_PORTS, "low-high"), so an
outgoing connection never takes one between the choice and the server's bind, and CI runs its two
halves (this machine and the other Debian's chroot) at once with a range each (.ci/run)."""

import os
import random
import socket

DEFAULT_RANGE = "15000-23999"
_given = set()
# Not the module's `random`: the fault battery seeds that one, and every run would pick the same ports.
_rng = random.SystemRandom()


def port_range():
    low, _, high = os.environ.get("PORTAL_TEST_PORTS", DEFAULT_RANGE).partition("-")
    return int(low), int(high)


def free_port():
    """A loopback port nothing listens on, never one this process was given before (an Orthanc once
    got the same port for HTTP and DICOM when a freed port came back)."""
    low, high = port_range()
    for _ in range(1000):
        port = _rng.randint(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}-{high} (PORTAL_TEST_PORTS)")
