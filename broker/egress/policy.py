"""Egress decisions, made on resolved addresses so that no spelling of a host gets around them.

By default a page may reach public addresses only: loopback, link-local (cloud metadata
services), private, shared, multicast and reserved ranges are denied, and so are the broker's
own ports on this host whatever the lists say. Operators widen or narrow this with lists of hosts
and CIDRs, for the whole broker and per tenant. An allow list never opens loopback (this host)
or cloud metadata on its own: a name can resolve to anything, so that takes a setting of its own
(`allow_loopback`, `allow_metadata`). An IPv6 address that carries an IPv4 one (mapped,
compatible, NAT64, 6to4, Teredo) is judged by the address it carries, and a host list entry
means the host however it is written (Unicode names as punycode, IP literals in any spelling).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache

from broker.common.urls import UrlError, canonical_host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215; the IPv4 address last, as in /96
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
}
# Rule names an allow list lifts only with the setting named beside them.
_LOOPBACK_RULES = frozenset({"loopback", "unspecified", "this_host"})
_METADATA_RULES = frozenset({"cloud_metadata", "link_local"})
# Headers that cloud metadata services require; a lease may not set them on every request.
METADATA_HEADERS = frozenset(
    {
        "metadata",
        "metadata-flavor",
        "x-google-metadata-request",
        "x-aws-ec2-metadata-token",
        "x-aws-ec2-metadata-token-ttl-seconds",
        "x-metadata-token",
    }
)


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


def host_pattern(text: str) -> str:
    """A host-list entry spelt as the route sees hosts (`bücher.de` is `xn--bcher-kva.de`,
    `0x7f.1` is `127.0.0.1`), a leading `.` (the domain and below) kept; ValueError when it
    is not a host."""
    entry = text.strip()
    below = entry.startswith(".")
    try:
        host = canonical_host(entry[1:] if below else entry).rstrip(".")  # (as `_host_key`)
    except UrlError:
        host = ""
    if not host:
        raise ValueError(f"{text[:100]!r} is not a host name or IP address")
    return f".{host}" if below else host


def egress_list(field: str, entries: list[str]) -> list[str]:
    """A settings list of hosts (`*_hosts`: spelt as the route sees them) or of CIDRs, checked;
    ValueError naming the field and the entry."""
    try:
        if field.endswith("_cidrs"):
            for entry in entries:
                parse_cidr(entry)
            return entries
        return [host_pattern(entry) for entry in entries]
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def host_matches(host: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that names `host`: `example.com` exactly, `.example.com` and below."""
    name = _host_key(host)
    for pattern in patterns:
        key = _host_key(pattern)
        if key.startswith("."):
            if name == key[1:] or name.endswith(key):
                return pattern
        elif name == key:
            return pattern
    return None


@dataclass(frozen=True)
class EgressRules:
    """Lists that widen or narrow the default. Denials win over allowances."""

    allow_hosts: tuple[str, ...] = ()
    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    # Deny everything the allow lists do not name (public addresses too).
    allow_listed_only: bool = False
    # May the allow lists reach loopback (this host) / cloud metadata and link-local addresses?
    allow_loopback: bool = False
    allow_metadata: bool = False

    def __post_init__(self) -> None:
        # Host patterns in the spelling the route compares against, however they were written.
        for name in ("allow_hosts", "deny_hosts"):
            object.__setattr__(self, name, tuple(host_pattern(p) for p in getattr(self, name)))

    def merged(self, other: EgressRules) -> EgressRules:
        """Both sets of lists; `allow_listed_only` if either says so."""
        return EgressRules(
            allow_hosts=self.allow_hosts + other.allow_hosts,
            allow_cidrs=self.allow_cidrs + other.allow_cidrs,
            deny_hosts=self.deny_hosts + other.deny_hosts,
            deny_cidrs=self.deny_cidrs + other.deny_cidrs,
            allow_listed_only=self.allow_listed_only or other.allow_listed_only,
            allow_loopback=self.allow_loopback or other.allow_loopback,
            allow_metadata=self.allow_metadata or other.allow_metadata,
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # a stable name, e.g. "loopback", "deny_hosts", "broker_port" (docs/security.md)
    detail: str = ""

    def describe(self, target: str) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{target} {verdict} by egress rule {self.rule!r}" + (
            f" ({self.detail})" if self.detail else ""
        )


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4, Teredo's client),
    if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _NAT64_LOCAL:
        return low
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1, which are themselves
        return low
    return None


def address_class(address: IPAddress) -> str | None:
    """Why an address is not public (a rule name), or None for a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        kind = address_class(inner)
        if kind is not None or not isinstance(address, ipaddress.IPv6Address):
            return kind
        if address.teredo is None:
            return None
        # Teredo to a public client: the tunnel's own range is still not public.
    if address in _METADATA:
        return "cloud_metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "private"  # (fec0::/10, deprecated site-local, is still routed privately)
    if not address.is_global or address.is_reserved:
        return "reserved"
    return None


@cache
def literal_addresses(patterns: tuple[str, ...]) -> frozenset[IPAddress]:
    """The IP literals among host patterns, in any spelling a browser reads (`0x7f.1`,
    `2130706433`, `[::ffff:127.0.0.1]`), as addresses."""
    found: set[IPAddress] = set()
    for pattern in patterns:
        try:
            found.add(ipaddress.ip_address(canonical_host(pattern)))
        except (UrlError, ValueError):
            continue  # a name
    return frozenset(found)


def _names_address(address: IPAddress, literals: frozenset[IPAddress]) -> IPAddress | None:
    inner = embedded_ipv4(address)
    for candidate in (address, inner):
        if candidate is not None and candidate in literals:
            return candidate
    return None


def local_addresses() -> set[IPAddress]:
    """This host's own addresses (every interface), for recognising the broker's own ports."""
    import psutil

    found: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return found


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


@dataclass
class EgressPolicy:
    """The rules in force for one route (broker rules, maybe merged with a tenant's)."""

    rules: EgressRules = field(default_factory=EgressRules)
    # Ports of this broker (gRPC, metrics, its routes): never reachable on this host's addresses.
    own_ports: set[int] = field(default_factory=set)
    own_addresses: set[IPAddress] = field(default_factory=set)

    def with_rules(self, extra: EgressRules) -> EgressPolicy:
        return EgressPolicy(self.rules.merged(extra), self.own_ports, self.own_addresses)

    def check_host(self, host: str) -> Decision | None:
        """A decision on the name alone (deny lists), before anything is resolved."""
        denied = host_matches(host, self.rules.deny_hosts)
        if denied is not None:
            return Decision(False, "deny_hosts", f"matches {denied!r}")
        return None

    def check_address(self, host: str, address: IPAddress, port: int) -> Decision:
        """May a page connect to `address`:`port`, reached by the name `host`?"""
        if port in self.own_ports and self._is_own(address):
            return Decision(False, "broker_port", f"port {port} is the broker's own")
        rules = self.rules
        for network in rules.deny_cidrs:
            if _in(address, network):
                return Decision(False, "deny_cidrs", f"{address} is in {network}")
        denied = _names_address(address, literal_addresses(rules.deny_hosts))
        if denied is not None:
            return Decision(False, "deny_hosts", f"{address} is listed as {denied}")
        kind = address_class(address)
        if address in self.own_addresses and kind not in _LOOPBACK_RULES:
            kind = "this_host"  # the host's own interfaces reach what listens on loopback's ports
        allowed = self._allowed_by_lists(host, address)
        if allowed is None:
            if rules.allow_listed_only:
                return Decision(False, "not_listed", "only listed hosts and CIDRs are allowed")
            if kind is not None:
                return Decision(False, kind, f"{address} is not a public address")
            return Decision(True, "public")
        if kind in _LOOPBACK_RULES and not rules.allow_loopback:
            return Decision(False, kind, f"{address} is this host: {_NOT_LIFTED}_loopback")
        if kind in _METADATA_RULES and not rules.allow_metadata:
            return Decision(False, kind, f"{address} may be cloud metadata: {_NOT_LIFTED}_metadata")
        return allowed

    def _allowed_by_lists(self, host: str, address: IPAddress) -> Decision | None:
        allowed_host = host_matches(host, self.rules.allow_hosts)
        if allowed_host is not None:
            return Decision(True, "allow_hosts", f"matches {allowed_host!r}")
        listed = _names_address(address, literal_addresses(self.rules.allow_hosts))
        if listed is not None:
            return Decision(True, "allow_hosts", f"{address} is listed as {listed}")
        for network in self.rules.allow_cidrs:
            if _in(address, network):
                return Decision(True, "allow_cidrs", f"{address} is in {network}")
        return None

    def _is_own(self, address: IPAddress) -> bool:
        inner = embedded_ipv4(address) or address
        return inner.is_loopback or inner.is_unspecified or inner in self.own_addresses


_NOT_LIFTED = "the allow lists lift this denial only with egress_allow"


def _in(address: IPAddress, network: IPNetwork) -> bool:
    inner = embedded_ipv4(address)
    return address in network or (inner is not None and inner in network)


def parse_cidr(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal in any spelling resolves to itself)."""
    with contextlib.suppress(ValueError):  # canonical literal: no trip to the resolver's thread
        return [ipaddress.ip_address(host)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen
