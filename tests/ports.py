"""Free loopback ports for the servers the suite and the benchmarks start: the portal's own choice
(deployments/ports.py), from below the kernel's ephemeral ports, in this run's range."""

from deployments.ports import free_ports


def free_port():
    return free_ports(1)[0]
