"""URLs read as a browser reads them: one WHATWG parse (ada-url) for every check the broker makes.

A browser strips leading and trailing C0 controls and spaces, drops tabs and newlines anywhere,
turns backslashes into slashes in special schemes, and reads `0x7f.1` or `2130706433` as
127.0.0.1. A check that splits the raw string judges another URL than the one the browser opens;
so every check judges `CanonicalUrl`, and the browser is handed its `href`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import ada_url

# Per the URL Standard: what is stripped from both ends, and what is removed everywhere.
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")


class HostType(enum.Enum):
    NONE = "none"  # no host (data:, about:, file:///path)
    DOMAIN = "domain"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    OPAQUE = "opaque"  # a non-special scheme's host, taken as is


@dataclass(frozen=True)
class CanonicalUrl:
    """The parts of a URL as the browser will use them."""

    href: str
    scheme: str  # lower case, without the colon
    host: str  # IPv4 dotted, IPv6 without brackets, domains in punycode; "" if none
    host_type: HostType
    port: int | None  # None: the scheme's default
    username: str
    password: str
    path: str

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)


class UrlError(ValueError):
    """The text is not a URL a browser would open."""


def clean(text: str) -> str:
    """The input the URL parser works on: no C0-or-space at the ends, no tab or newline at all."""
    return text.strip(_C0_OR_SPACE).translate(_TAB_OR_NEWLINE)


def canonical(text: str) -> CanonicalUrl:
    """`text` parsed as an absolute URL, as a browser's `new URL(text)` parses it."""
    try:
        url = ada_url.URL(text)
    except ValueError:
        raise UrlError("is not a valid absolute URL") from None
    scheme = url.protocol.removesuffix(":")
    hostname = url.hostname
    host = hostname.removeprefix("[").removesuffix("]")
    return CanonicalUrl(
        href=url.href,
        scheme=scheme,
        host=host,
        host_type=_host_type(url, scheme, host),
        port=int(url.port) if url.port else None,
        username=url.username,
        password=url.password,
        path=url.pathname,
    )


def _host_type(url: ada_url.URL, scheme: str, host: str) -> HostType:
    if not host:
        return HostType.NONE
    if scheme not in SPECIAL_SCHEMES:
        return HostType.OPAQUE
    kind = url.host_type
    if kind == ada_url.HostType.IPV4:
        return HostType.IPV4
    if kind == ada_url.HostType.IPV6:
        return HostType.IPV6
    return HostType.DOMAIN


# Schemes whose hosts the URL Standard parses (domains, IPv4 in any spelling, IPv6).
SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})


def canonical_host(text: str) -> str:
    """A host as an http URL's host would be read (`0x7f.1` is `127.0.0.1`, `[::1]` is `::1`)."""
    host = text.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 literal
    if not host or any(ch in host for ch in "/\\?#@") or host != clean(host):
        raise UrlError(f"{text[:100]!r} is not a host")
    try:
        parsed = canonical(f"http://{host}/")
    except UrlError:
        parsed = None
    if parsed is None or parsed.port is not None or parsed.path != "/":
        raise UrlError(f"{text[:100]!r} is not a host")
    return parsed.host


# What a download may come from: the network (through the egress route) or the page itself.
DOWNLOAD_SCHEMES = frozenset({"http", "https", "data", "blob"})


def is_download_source(text: str) -> bool:
    """May a download step return a file fetched from `text` (never a `file:` URL)?"""
    try:
        return canonical(text).scheme in DOWNLOAD_SCHEMES
    except UrlError:
        return False


_PROXY_PORTS = {"http": 80, "https": 443, "socks5": 1080}


@dataclass(frozen=True)
class ProxyServer:
    scheme: str
    host: str  # as `CanonicalUrl.host`
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def proxy_server(text: str) -> ProxyServer | None:
    """A proxy server (`scheme://host[:port]`) in the one spelling the browser and the policy
    read alike: the host as the browser parses it (`0x7f.1` is 127.0.0.1), and nothing two
    parsers could disagree on (userinfo, a path, backslashes, percent signs, controls), or None."""
    if text != clean(text) or any(ch in text for ch in "\\@?#%") or not text.isascii():
        return None
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    authority = rest.removesuffix("/")
    if not sep or scheme not in _PROXY_PORTS or not authority or "/" in authority:
        return None
    try:
        parsed = canonical(f"http://{authority}/")
    except UrlError:
        return None
    if parsed.has_credentials or not parsed.host or parsed.path != "/":
        return None
    return ProxyServer(scheme, parsed.host, parsed.port or _PROXY_PORTS[scheme])
