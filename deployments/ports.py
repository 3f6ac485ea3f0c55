"""Free loopback ports for the Orthancs the portal starts itself (the demo of ``make run``, a
restore drill's throwaway Orthanc) and for the servers of the tests and benchmarks.

They come from below the kernel's ephemeral ports: an outgoing connection takes its source port
from that range, and could take the port of an Orthanc that is restarting (a push, a backup's
stop window), which then fails to start. PORTAL_LOCAL_PORTS ("low-high") narrows the range; CI
gives each of its two simultaneous runs its own (.ci/run)."""

import os
import random
import socket

DEFAULT_RANGE = "10000-32767"
_given = set()
# Not the module's `random`: the fault battery seeds that one, and every run would pick the same ports.
_rng = random.SystemRandom()


def port_range():
    low, _, high = os.environ.get("PORTAL_LOCAL_PORTS", DEFAULT_RANGE).partition("-")
    return int(low), int(high)


def free_ports(count, host="127.0.0.1"):
    """``count`` distinct ports nothing listens on, never one this process was given before (the
    kernel hands a freed port out again, and an Orthanc once got one port for HTTP and DICOM)."""
    low, high = port_range()
    chosen = []
    for _ in range(1000 * count):
        if len(chosen) == count:
            return chosen
        port = _rng.randint(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        chosen.append(port)
    raise RuntimeError(f"no free port in {low}-{high} on {host} (PORTAL_LOCAL_PORTS)")


def free_port(preferred=None, host="127.0.0.1"):
    """``preferred`` when it is free (8042 for the demo), else any from the range."""
    if preferred:
        with socket.socket() as s:
            try:
                s.bind((host, preferred))
            except OSError:
                pass
            else:
                return preferred
    return free_ports(1, host)[0]
