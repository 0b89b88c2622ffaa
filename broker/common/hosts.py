"""Hosts as the settings name them (`host:port`, IPv6 in brackets): which only this machine
reaches, and which mean "every address"."""

from __future__ import annotations

import ipaddress

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets or not)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    """The host of `host:port` ('' for ':port')."""
    return address.rpartition(":")[0]
