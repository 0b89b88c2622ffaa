"""The egress policy decides on resolved addresses; routes enforce it for every connection."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

import pytest

from broker.egress.policy import (
    EgressPolicy,
    EgressRules,
    IPAddress,
    address_class,
    parse_cidr,
    resolve,
)
from broker.egress.proxy import DENIED_HEADER, Blocked, EgressGateway, EgressRoute


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud_metadata"),
        ("fd00:ec2::254", "cloud_metadata"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_addresses_are_classified(address: str, kind: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "127.0.0.1"])
async def test_every_spelling_of_loopback_resolves_to_loopback(spelling: str) -> None:
    addresses = await resolve(spelling, 80)
    policy = EgressPolicy()
    assert addresses and all(
        policy.check_address(spelling, a, 80).rule == "loopback" for a in addresses
    )


def test_lists_widen_and_narrow_the_default() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    public = ipaddress.ip_address("93.184.216.34")
    policy = EgressPolicy(
        EgressRules(
            allow_cidrs=(parse_cidr("127.0.0.1/32"),),
            allow_hosts=(".intranet.test",),
            deny_hosts=("evil.test",),
            deny_cidrs=(parse_cidr("93.184.216.0/24"),),
            allow_loopback=True,
        ),
        own_ports={50051},
    )
    assert policy.check_address("x", loopback, 8080).rule == "allow_cidrs"
    assert policy.check_address("a.intranet.test", ipaddress.ip_address("10.0.0.1"), 80).allowed
    assert policy.check_address("x", public, 80).rule == "deny_cidrs"
    denied = policy.check_host("EVIL.test.")
    assert denied is not None and denied.rule == "deny_hosts"
    # The broker's own ports stay out of reach even on an allowed address.
    assert policy.check_address("x", loopback, 50051).rule == "broker_port"
    assert policy.check_address("x", ipaddress.ip_address("::ffff:127.0.0.1"), 50051).rule == (
        "broker_port"
    )
    only = EgressPolicy(EgressRules(allow_hosts=("ok.test",), allow_listed_only=True))
    assert only.check_address("other.test", public, 443).rule == "not_listed"
    assert only.check_address("ok.test", public, 443).allowed


def test_a_tenants_rules_add_to_the_brokers() -> None:
    broker = EgressPolicy(EgressRules(deny_hosts=("a.test",)), own_ports={1})
    tenant = broker.with_rules(EgressRules(deny_hosts=("b.test",), allow_listed_only=True))
    assert tenant.check_host("a.test") is not None and tenant.check_host("b.test") is not None
    assert tenant.own_ports is broker.own_ports  # ports opened later are still protected
    assert tenant.rules.allow_listed_only


# ------------------------------------------------------------------ routes


async def _upstream() -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = head.split(b"\r\n")[0]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(route: EgressRoute, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", route.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_a_route_relays_allowed_requests_and_refuses_the_rest() -> None:
    server, port = await _upstream()
    gateway = EgressGateway(
        EgressPolicy(EgressRules(allow_cidrs=(parse_cidr("127.0.0.1/32"),), allow_loopback=True))
    )
    route = await gateway.open_route()
    seen: list[Blocked] = []
    route.on_blocked = seen.append
    try:
        ok = await _ask(
            route, f"GET http://127.0.0.1:{port}/a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"GET /a?q=1 HTTP/1.1")
        denied = await _ask(route, f"GET http://127.0.0.2:{port}/ HTTP/1.1\r\n\r\n".encode())
        assert (
            denied.startswith(b"HTTP/1.1 403") and f"{DENIED_HEADER}: loopback".encode() in denied
        )
        tunnel = await _ask(route, f"CONNECT 127.0.0.2:{port} HTTP/1.1\r\n\r\n".encode())
        assert tunnel.startswith(b"HTTP/1.1 403")
        # The route's own port is the broker's: a page cannot loop the proxy into itself.
        itself = await _ask(route, f"CONNECT 127.0.0.1:{route.port} HTTP/1.1\r\n\r\n".encode())
        assert f"{DENIED_HEADER}: broker_port".encode() in itself
        assert [b.rule for b in seen] == ["loopback", "loopback", "broker_port"]
        assert route.blocked_since(0) == seen and "?" not in seen[0].target
        garbage = await _ask(route, b"\x16\x03\x01\x00garbage\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400")
        origin_form = await _ask(route, b"GET /etc/passwd HTTP/1.1\r\n\r\n")
        assert origin_form.startswith(b"HTTP/1.1 400")
    finally:
        await gateway.close_route(route)
        server.close()


async def test_a_name_that_resolves_inward_is_denied() -> None:
    async def inward(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("10.0.0.5")]

    route = await EgressRoute(EgressPolicy(), resolver=inward).start()
    try:
        answer = await _ask(route, b"CONNECT www.inward.test:443 HTTP/1.1\r\n\r\n")
        assert f"{DENIED_HEADER}: private".encode() in answer
    finally:
        await route.close()


async def test_closing_a_route_ends_its_connections() -> None:
    route = await EgressRoute(EgressPolicy()).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", route.port)
    writer.write(b"CONNECT slow")  # an unfinished head keeps the connection open
    await writer.drain()
    await asyncio.sleep(0.01)
    await route.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_held_route_cuts_what_is_in_flight_and_forwards_nothing_until_released() -> None:
    """While a session's work is stopped, its route forwards nothing: a tunnel in flight is cut,
    a request arriving meanwhile never reaches its server, and traffic resumes afterwards."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(1024))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway = EgressGateway(
        EgressPolicy(EgressRules(allow_cidrs=(parse_cidr("127.0.0.1/32"),), allow_loopback=True))
    )
    route = await gateway.open_route()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", route.port)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        async with route.hold():
            assert route.held
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the tunnel was cut
            writer.write(b"sent after the stop began")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            late = await _ask(route, f"GET http://127.0.0.1:{port}/late HTTP/1.1\r\n\r\n".encode())
            assert late == b""  # turned away
        writer.close()
        after = await _ask(route, f"GET http://127.0.0.1:{port}/after HTTP/1.1\r\n\r\n".encode())
        # The recording server answers nothing; it recorded the request before closing, which
        # is what ended `_ask`'s read.
        assert not route.held and after == b""
        assert [r.split(b"\r\n")[0] for r in received if r] == [b"GET /after HTTP/1.1"]
    finally:
        await gateway.close_route(route)
        server.close()


async def test_a_stop_that_fails_leaves_the_route_held_and_a_shut_route_stays_shut() -> None:
    route = await EgressRoute(EgressPolicy()).start()
    try:
        with pytest.raises(TimeoutError):
            async with route.hold():
                raise TimeoutError  # the pages would not close: they may still be running
        assert route.held
        other = await EgressRoute(EgressPolicy()).start()
        await other.shut()
        assert other.held
        assert await _ask(other, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n") == b""
        await other.close()
    finally:
        await route.close()


async def test_a_connection_cut_before_it_was_served_is_closed() -> None:
    """A hold that lands between accepting a connection and serving it still closes the socket
    (a task cancelled before its first step never runs its own cleanup)."""
    route = await EgressRoute(EgressPolicy()).start()
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=theirs)
        route._serve(reader, writer)  # accepted; its task has not run a step yet
        async with route.hold():
            pass
        client_reader, client_writer = await asyncio.open_connection(sock=ours)
        assert await asyncio.wait_for(client_reader.read(), 5) == b""
        client_writer.close()
    finally:
        await route.close()
