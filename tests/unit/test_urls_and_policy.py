"""One parse: URLs judged as the browser reads them, a client's proxy in one spelling, and an
egress policy that means what it says (allow lists do not open loopback or metadata on their own,
deny lists name addresses however spelt, embedded IPv4 judged by what it embeds)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from broker.api import decode
from broker.common.urls import HostType, UrlError, canonical, canonical_host, proxy_server
from broker.egress.policy import EgressPolicy, EgressRules, address_class, parse_cidr
from broker.errors import InvalidArgument
from broker.model.steps.base import StepBounds
from broker.model.steps.navigation import Goto
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("text", "href", "host", "host_type"),
    [
        (" \x00\x1f file:///etc/hostname\x7f"[:-1], "file:///etc/hostname", "", HostType.NONE),
        ("fi\nle:///etc/", "file:///etc/", "", HostType.NONE),
        ("\tHTTP://EXAMPLE.com\\a", "http://example.com/a", "example.com", HostType.DOMAIN),
        ("http://0x7f.1/", "http://127.0.0.1/", "127.0.0.1", HostType.IPV4),
        ("http://2130706433", "http://127.0.0.1/", "127.0.0.1", HostType.IPV4),
        ("http://0177.0.0.1", "http://127.0.0.1/", "127.0.0.1", HostType.IPV4),
        ("http://[::ffff:127.0.0.1]", "http://[::ffff:7f00:1]/", "::ffff:7f00:1", HostType.IPV6),
        (
            "http://127.0.0.3:8\\@127.0.0.2",
            "http://127.0.0.3:8/@127.0.0.2",
            "127.0.0.3",
            HostType.IPV4,
        ),
        ("http://%31%32%37.0.0.1/", "http://127.0.0.1/", "127.0.0.1", HostType.IPV4),
        ("http://BÜCHER.de", "http://xn--bcher-kva.de/", "xn--bcher-kva.de", HostType.DOMAIN),
    ],
)
def test_urls_are_read_as_the_browser_reads_them(
    text: str, href: str, host: str, host_type: HostType
) -> None:
    url = canonical(text)
    assert (url.href, url.host, url.host_type) == (href, host, host_type)


def test_canonical_hosts() -> None:
    assert canonical_host("0x7f.1") == "127.0.0.1"
    assert canonical_host("[::1]") == canonical_host("::1") == "::1"
    for bad in ("", "a b", "a/b", "a@b", "a\\b", "h:80", "a\x00"):
        with pytest.raises(UrlError):
            canonical_host(bad)


NO_FILES = StepBounds(0, False)


@pytest.mark.parametrize(
    "url",
    [
        " file:///etc/hostname",
        "\tfile:///etc/hostname",
        "\x00file:///etc/hostname",
        "fi\nle:///etc/hostname",
        "F\rILE:/etc/hostname",
        " file:///etc/",
        "\tabout:about",
        "about:config",
        "about:blank/../config",
        "view-source:http://example.com/",
        "chrome://version",
        "javascript:alert(1)",
        "http://[::1",
        "http:",
    ],
)
def test_goto_refuses_what_the_browser_would_read_as_a_local_url(url: str) -> None:
    out: list[Any] = []
    Goto(url).validate("steps[0].goto", NO_FILES, out)
    assert [v.field for v in out] == ["steps[0].goto.url"], url


@pytest.mark.parametrize("url", ["about:blank", " ABOUT:blank#x", "data:text/html,x", "http://a"])
def test_goto_allows_and_hands_on_the_canonical_url(url: str) -> None:
    out: list[Any] = []
    Goto(url).validate("steps[0].goto", NO_FILES, out)
    assert out == []
    assert Goto(" \thttp://0x7f.1\\x").href == "http://127.0.0.1/x"


def test_file_urls_only_where_the_operator_allows_them() -> None:
    out: list[Any] = []
    Goto(" file:///etc/hostname").validate("g", StepBounds(0, True), out)
    assert out == []


# ------------------------------------------------------------------ a client's own proxy


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://127.0.0.3:8\\@127.0.0.2", None),  # WHATWG: host 127.0.0.3; urlsplit: .2
        ("http://u:p@proxy.test:1", None),
        ("http://proxy.test:1/path", None),
        (" http://proxy.test:1", None),
        ("http://prox%79.test:1", None),
        ("ftp://proxy.test:1", None),
        ("HTTP://0x7f.1:3128/", "http://127.0.0.1:3128"),
        ("socks5://[::ffff:127.0.0.1]", "socks5://[::ffff:7f00:1]:1080"),
        ("https://proxy.test", "https://proxy.test:443"),
    ],
)
def test_a_proxy_server_has_one_spelling(server: str, expected: str | None) -> None:
    parsed = proxy_server(server)
    assert (parsed.url if parsed is not None else None) == expected


def _acquire_refused(proxy: pb.Proxy) -> dict[str, str]:
    settings = Settings(allow_client_proxies=True)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument) as caught:
        decode.lease_spec(pb.AcquireRequest(context=pb.ContextOptions(proxy=proxy)), settings)
    return {v.field: v.description for v in caught.value.violations}


def test_a_bypass_list_is_refused_and_a_server_passed_on_canonical() -> None:
    refused = _acquire_refused(pb.Proxy(server="http://proxy.test:1", bypass="127.0.0.1"))
    assert list(refused) == ["context.proxy.bypass"]
    refused = _acquire_refused(pb.Proxy(server="http://127.0.0.3:1\\@127.0.0.2"))
    assert list(refused) == ["context.proxy.server"]
    settings = Settings(allow_client_proxies=True)  # type: ignore[call-arg]
    spec = decode.lease_spec(
        pb.AcquireRequest(context=pb.ContextOptions(proxy=pb.Proxy(server="http://0x7f.1:9"))),
        settings,
    )
    assert spec.context.proxy is not None and spec.context.proxy.server == "http://127.0.0.1:9"


# ------------------------------------------------------------------ policy semantics


def _rule(policy: EgressPolicy, address: str, host: str = "x.test", port: int = 80) -> str:
    return policy.check_address(host, ip(address), port).rule


def test_allow_lists_do_not_lift_loopback_or_metadata_on_their_own() -> None:
    lists = EgressRules(
        allow_hosts=("app.test", ".corp.test"),
        allow_cidrs=(parse_cidr("0.0.0.0/0"), parse_cidr("::/0")),
    )
    policy = EgressPolicy(lists, own_addresses={ip("192.0.2.7")})
    # A name on the allow list that resolves inward, or a CIDR that covers everything.
    assert _rule(policy, "127.0.0.1", "app.test") == "loopback"
    assert _rule(policy, "::1", "a.corp.test") == "loopback"
    assert _rule(policy, "0.0.0.0") == "unspecified"
    assert _rule(policy, "169.254.169.254", "app.test") == "cloud_metadata"
    assert _rule(policy, "169.254.1.1") == "link_local"
    assert _rule(policy, "::ffff:169.254.169.254") == "cloud_metadata"
    assert _rule(policy, "192.0.2.7") == "this_host"  # the host's own interface
    # What the lists are for still opens: private and public addresses.
    assert _rule(policy, "10.0.0.5", "app.test") == "allow_hosts"
    assert _rule(policy, "10.0.0.5") == "allow_cidrs"
    # The named settings lift each denial, for what the lists name only.
    loopback = EgressPolicy(
        EgressRules(allow_cidrs=(parse_cidr("127.0.0.1/32"),), allow_loopback=True)
    )
    assert _rule(loopback, "127.0.0.1") == "allow_cidrs"
    assert _rule(loopback, "127.0.0.2") == "loopback"
    assert _rule(loopback, "169.254.169.254") == "cloud_metadata"
    metadata = EgressPolicy(EgressRules(allow_hosts=("169.254.169.254",), allow_metadata=True))
    assert _rule(metadata, "169.254.169.254") == "allow_hosts"
    assert _rule(metadata, "127.0.0.1") == "loopback"


def test_the_setting_merges_from_broker_and_tenant() -> None:
    broker = EgressRules(allow_cidrs=(parse_cidr("127.0.0.1/32"),))
    assert broker.merged(EgressRules(allow_loopback=True)).allow_loopback
    assert not broker.merged(EgressRules()).allow_loopback
    settings = Settings(egress_allow_loopback=True)  # type: ignore[call-arg]
    assert settings.egress_rules().allow_loopback and not settings.egress_rules().allow_metadata


@pytest.mark.parametrize("spelling", ["93.184.216.34", "0x5d.0xb8.0xd8.0x22", "1572395042"])
def test_deny_hosts_names_an_address_however_spelt(spelling: str) -> None:
    policy = EgressPolicy(
        EgressRules(deny_hosts=(spelling,), allow_cidrs=(parse_cidr("93.184.216.0/24"),))
    )
    assert _rule(policy, "93.184.216.34") == "deny_hosts"
    assert _rule(policy, "::ffff:93.184.216.34") == "deny_hosts"
    assert _rule(policy, "64:ff9b::5db8:d822") == "deny_hosts"
    assert _rule(policy, "93.184.216.35") == "allow_cidrs"
    ipv6 = EgressPolicy(EgressRules(deny_hosts=("[2606:2800:220:1::]",)))
    assert _rule(ipv6, "2606:2800:220:1::") == "deny_hosts"


@pytest.mark.parametrize("written", ["bücher.de", "BÜCHER.de.", " xn--bcher-kva.de "])
def test_a_host_list_entry_means_the_host_however_it_is_written(written: str) -> None:
    # The route sees hosts as the browser sends them: punycode, lowercase.
    exact = EgressPolicy(EgressRules(deny_hosts=(written,)))
    assert exact.check_host("xn--bcher-kva.de") is not None
    assert exact.check_host("shop.xn--bcher-kva.de") is None
    below = EgressPolicy(EgressRules(deny_hosts=(f".{written.strip()}",)))
    assert below.check_host("shop.xn--bcher-kva.de") is not None
    assert below.check_host("xn--bcher-kva.de") is not None
    assert below.check_host("xn--bcher-kva.de.example") is None
    allowed = EgressPolicy(EgressRules(allow_hosts=(written,), allow_listed_only=True))
    assert _rule(allowed, "93.184.216.34", "xn--bcher-kva.de") == "allow_hosts"
    settings = Settings(egress_deny_hosts=[written])  # type: ignore[call-arg]
    assert settings.egress_rules().deny_hosts == ("xn--bcher-kva.de",)


@pytest.mark.parametrize("field", ["egress_allow_hosts", "egress_deny_hosts"])
@pytest.mark.parametrize(
    "entry", ["exa mple.com", "", ".", "..", "example.com/path", "user@example.com"]
)
def test_a_host_list_entry_that_is_not_a_host_is_refused_by_name(field: str, entry: str) -> None:
    with pytest.raises(ValueError, match=f"{field}: .* is not a host name or IP address"):
        Settings(**{field: ["example.com", entry]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a host name"):
        EgressRules(deny_hosts=(entry,))


def _teredo(client: str) -> str:
    obfuscated = ~int(ip(client)) & 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | obfuscated))


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("::ffff:127.0.0.1", "loopback"),
        ("::7f00:1", "loopback"),  # IPv4-compatible
        ("::a9fe:a9fe", "cloud_metadata"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b:1::a9fe:a9fe", "cloud_metadata"),  # local-use NAT64
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("2002:a9fe:a9fe::1", "cloud_metadata"),
        (_teredo("127.0.0.1"), "loopback"),
        (_teredo("8.8.8.8"), "private"),  # the tunnel's own range, not public
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fec0::1", "private"),  # deprecated site-local
        ("feff:ffff::1", "private"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ],
)
def test_embedded_ipv4_is_judged_by_what_it_embeds(address: str, rule: str | None) -> None:
    assert address_class(ip(address)) == rule
