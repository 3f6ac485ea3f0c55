"""The client's address, for the login lockout (django-axes) and the audit log.

``X-Forwarded-For`` is believed only when the request comes from a configured trusted proxy
(``TRUSTED_PROXIES``), and then only up to the right-most hop that is not itself a trusted proxy:
every hop to the left of it was written by the client and can say anything.
"""

import ipaddress

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def parse_networks(values, name="TRUSTED_PROXIES"):
    """Addresses or networks (``10.0.0.5``, ``172.31.250.0/24``) as ip_network objects."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {value!r} is not an IP address or network (e.g. 172.31.250.10 or 172.31.250.0/24)."
            ) from None
    return networks


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks):
    return address is not None and any(address in network for network in networks)


def client_ip(request):
    """The address of whoever sent this request, as far as trusted proxies vouch for it."""
    remote = request.META.get("REMOTE_ADDR") or None
    networks = settings.TRUSTED_PROXY_NETWORKS
    if not networks or not _trusted(_address(remote or ""), networks):
        return remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    believed = remote
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # Garbage where an address should be: nothing further left can be believed either.
            return believed
        believed = str(address)
        if not _trusted(address, networks):
            return believed
    return believed
