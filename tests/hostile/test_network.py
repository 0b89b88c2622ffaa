"""No traffic leaves the egress route, proved from the receiving side on both engines.

A page may only reach the network through its route (a TCP proxy that judges every request).
UDP cannot go through it, so every UDP channel a page can open (WebRTC's STUN and TURN, QUIC and
WebTransport) must be switched off in the browser: a UDP listener on loopback records every
datagram, and there must be none. On plain-HTTP proxy connections the route judges every request,
not only the first: a kept-alive server never sees the browser's requests for other hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from broker.egress.policy import EgressPolicy
from broker.egress.proxy import Blocked, EgressRoute
from broker.engines.jail import Jail
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease
from broker.model.options import EngineName
from broker.runtime.settings import Settings
from browserbroker import Engine, steps
from tests.conftest import BrokerFactory, require
from tests.fixture_site import FixtureSite
from tests.support import TEST_EGRESS

pytestmark = pytest.mark.browser

ENGINES = [Engine.CHROMIUM, Engine.FIREFOX]
BROKER_ENGINES = [EngineName.CHROMIUM, EngineName.FIREFOX]
# How long a page may try before the listener is read: ICE gathering gives up on a silent STUN
# server after a few retransmits (Chromium sends its first within tens of milliseconds).
GATHER_S = 4


class UdpRecorder:
    """A UDP socket on loopback that records every datagram it receives (there must be none)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, refuse_dns: bool = False) -> None:
        self.refuse_dns = refuse_dns  # answer each datagram as a DNS server refusing the query
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.datagrams: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append((f"{sender[0]}:{sender[1]}", data[:512]))
            if self.refuse_dns:
                with contextlib.suppress(OSError, ValueError):
                    self.sock.sendto(_refused(data), sender)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _refused(query: bytes) -> bytes:
    """A DNS answer REFUSED to `query` (so a resolver asking for names a test does not watch,
    such as localhost, moves on at once instead of waiting for its timeout)."""
    end = 12
    while query[end]:
        end += query[end] + 1
    question = query[12 : end + 5]
    flags = bytes([0x80 | (query[2] & 0x79), 0x85])  # a response, same opcode and RD; REFUSED
    return query[:2] + flags + query[4:6] + b"\0" * 6 + question


@pytest.fixture
def udp() -> Iterator[UdpRecorder]:
    recorder = UdpRecorder()
    yield recorder
    recorder.close()


def _webrtc_script(port: int) -> str:
    """Gathers ICE candidates against a STUN and a TURN server on the recorder's port; answers
    what the page saw ("absent" where the browser has no WebRTC)."""
    return f"""async () => {{
      if (typeof RTCPeerConnection === 'undefined') return 'absent';
      const seen = [];
      try {{
        const pc = new RTCPeerConnection({{iceServers: [
          {{urls: 'stun:127.0.0.1:{port}'}},
          {{urls: 'turn:127.0.0.1:{port}?transport=udp', username: 'u', credential: 'p'}},
        ]}});
        pc.onicecandidate = e => {{ if (e.candidate) seen.push(e.candidate.candidate); }};
        pc.createDataChannel('probe');
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise(done => setTimeout(done, {GATHER_S * 1000}));
        pc.close();
      }} catch (e) {{
        return 'refused: ' + e.name;
      }}
      return 'gathered ' + seen.length;
    }}"""


def _webtransport_script(port: int) -> str:
    """Opens a WebTransport session (HTTP/3 over QUIC, so UDP) to the recorder's port."""
    return f"""async () => {{
      if (typeof WebTransport === 'undefined') return 'absent';
      try {{
        const wt = new WebTransport('https://127.0.0.1:{port}/probe');
        const outcome = await Promise.race([
          wt.ready.then(() => 'open', e => 'failed: ' + e.name),
          new Promise(done => setTimeout(() => done('pending'), {GATHER_S * 1000})),
        ]);
        try {{ wt.close(); }} catch (e) {{}}
        return outcome;
      }} catch (e) {{
        return 'refused: ' + e.name;
      }}
    }}"""


async def _quiet(udp: UdpRecorder) -> None:
    await asyncio.sleep(1)  # a datagram in flight has long landed on loopback by then
    assert udp.datagrams == [], f"UDP left the route: {len(udp.datagrams)} datagrams"


CHANNELS = {"webrtc": _webrtc_script, "webtransport": _webtransport_script}


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name.lower())
async def test_no_udp_leaves_the_browser(
    broker_factory: BrokerFactory,
    fixture_server: FixtureSite,
    udp: UdpRecorder,
    engine: Engine,
    channel: str,
) -> None:
    """A page's WebRTC (STUN and TURN over UDP) and its WebTransport (QUIC) send no datagram."""
    running = await broker_factory(engines=BROKER_ENGINES)
    async with running.client.lease(engine=engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate(CHANNELS[channel](udp.port)),
            timeout=60,
        )
        assert result.ok, result[0]
        print(f"{engine.name.lower()}: the {channel} page saw {result[1].value!r}")
    await _quiet(udp)


class KeepAliveSite:
    """An HTTP/1.1 server that keeps every connection open, even one the route asked it to close,
    and records the requests it gets with the Host each one names."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        requests: list[str] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                requests.append(f"{self.headers.get('Host')} {self.path}")
                port = self.connection.getsockname()[1]
                body = f"<!doctype html><title>{port}</title>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Keep-Alive", "timeout=60")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = False  # even when asked to close: a hostile server

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.authority = f"{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.authority}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[KeepAliveSite, KeepAliveSite, KeepAliveSite]]:
    found = (KeepAliveSite(), KeepAliveSite(), KeepAliveSite("127.0.0.2"))
    yield found
    for site in found:
        site.close()


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name.lower())
async def test_kept_alive_connection_is_judged_per_request(
    broker_factory: BrokerFactory,
    sites: tuple[KeepAliveSite, KeepAliveSite, KeepAliveSite],
    engine: Engine,
) -> None:
    """The browser keeps its proxy connection open after a page on an allowed server that keeps
    connections alive; its next requests, for another allowed server and for a denied one, must
    reach their own server or be refused, never the first server."""
    first, second, denied = sites
    running = await broker_factory(engines=BROKER_ENGINES)
    async with running.client.lease(engine=engine) as lease:
        for _ in range(2):
            opened = await lease.run(
                steps.goto(first.url("/one")),
                steps.goto(second.url("/two")),
                steps.evaluate("document.title"),
                timeout=60,
            )
            assert opened.ok, [(s.ok, s.error_kind, s.error_message[:200]) for s in opened]
            assert opened[2].value == str(second.port), "the page came from the wrong server"
            refused = (await lease.run(steps.goto(denied.url("/secret")), timeout=60))[0]
            assert not refused.ok and refused.error_kind == "blocked", refused
    assert all(seen.startswith(first.authority) for seen in first.requests), first.requests
    assert all(seen.startswith(second.authority) for seen in second.requests), second.requests
    assert second.requests, "the second server was never asked"
    assert denied.requests == []


async def _ask_twice(route: EgressRoute, first: bytes, second: bytes) -> bytes:
    """Both requests on one connection, pipelined; what the route answers on it until it closes
    (or 5 s pass: the connection was left open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", route.port)
    writer.write(first + second)
    await writer.drain()
    answer = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                answer += data
    writer.close()
    return answer


async def test_the_route_takes_one_request_per_connection(
    sites: tuple[KeepAliveSite, KeepAliveSite, KeepAliveSite],
) -> None:
    """Without a browser: a second request pipelined behind an allowed one, and a body that two
    framings read differently, never reach the kept-alive server."""
    first, _, denied = sites
    policy = EgressPolicy(Settings(**TEST_EGRESS).egress_rules())  # type: ignore[arg-type]
    route = await EgressRoute(policy).start()
    try:
        smuggled = f"GET http://{denied.authority}/secret HTTP/1.1\r\nHost: {denied.authority}"
        pipelined = await _ask_twice(
            route,
            f"GET {first.url('/one')} HTTP/1.1\r\nHost: {first.authority}\r\n\r\n".encode(),
            f"{smuggled}\r\n\r\n".encode(),
        )
        body = f"0\r\n\r\n{smuggled}\r\n\r\n"
        framed_twice = await _ask_twice(
            route,
            (
                f"POST {first.url('/two')} HTTP/1.1\r\nHost: {first.authority}\r\n"
                f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode(),
            body.encode(),
        )
    finally:
        await route.close()
    assert first.requests == [f"{first.authority} /one"], "the first server got more"
    assert denied.requests == []
    # One response, marked as the connection's last, then the route closed the connection.
    assert pipelined.startswith(b"HTTP/1.1 200") and pipelined.count(b"HTTP/1.") == 1, pipelined
    assert b"connection: close" in pipelined.lower()
    assert framed_twice.startswith(b"HTTP/1.1 400"), framed_twice


def _names_script(tag: str) -> str:
    """Every way a page can make a browser want a name resolved: DNS prefetch, preconnect, a
    fetch, an image, a WebSocket, a STUN server."""
    return f"""async () => {{
      for (const [rel, href] of [['dns-prefetch', '//a-{tag}.test'],
                                 ['preconnect', 'http://b-{tag}.test']]) {{
        const link = document.createElement('link');
        link.rel = rel; link.href = href; document.head.appendChild(link);
      }}
      const img = new Image(); img.src = 'http://c-{tag}.test/x.png';
      try {{ new WebSocket('ws://d-{tag}.test/'); }} catch (e) {{}}
      const fetched = fetch('http://e-{tag}.test/').then(r => r.status, e => 'failed');
      if (typeof RTCPeerConnection !== 'undefined') {{
        const pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:f-{tag}.test:3478'}}]}});
        pc.createDataChannel('probe');
        await pc.setLocalDescription(await pc.createOffer());
      }}
      await new Promise(done => setTimeout(done, {GATHER_S * 1000}));
      return String(await fetched);
    }}"""


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name.lower())
async def test_the_browser_resolves_no_name_itself(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """Names go to the route, which resolves them; the browser asks no DNS server. Inside the
    jail the browser has no resolv.conf, so its resolver would ask 127.0.0.1:53, where a
    listener records every query naming this test's probe names."""
    require(os.geteuid() == 0 and shutil.which("bwrap") is not None, "needs root and bwrap")
    # The proof needs the jail's resolver to be this listener: no resolv.conf inside.
    assert "resolv.conf" not in Jail("bwrap", Path("/jail")).command("/bin/browser")
    try:
        dns = UdpRecorder(port=53, refuse_dns=True)
    except OSError as exc:
        require(False, f"cannot listen on 127.0.0.1:53 ({exc})")
        raise
    tag = secrets.token_hex(6)
    try:
        running = await broker_factory(engines=BROKER_ENGINES, browser_jail="required")
        async with running.client.lease(engine=engine) as lease:
            result = await lease.run(
                steps.goto(fixture_server.url("form.html")),
                steps.evaluate(_names_script(tag)),
                timeout=60,
            )
            assert result.ok, result[0]
            # The fetch went to the route, which could not resolve the name: 502, not a DNS
            # error of the browser's own.
            print(f"{engine.name.lower()}: the fetch of a probe name answered {result[1].value}")
        await asyncio.sleep(1)
    finally:
        dns.close()
    asked = [data for _, data in dns.datagrams if tag.encode() in data]
    assert asked == [], f"the browser resolved {len(asked)} names itself"


class Refused(LeaseObserver):
    """The targets the routes refused."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    def egress_blocked(self, lease: Lease, blocked: Blocked) -> None:
        self.targets.append(blocked.target)


def _turn_tcp_script(host: str, port: int) -> str:
    return f"""async () => {{
      if (typeof RTCPeerConnection === 'undefined') return 'absent';
      const pc = new RTCPeerConnection({{iceServers: [
        {{urls: 'turn:{host}:{port}?transport=tcp', username: 'u', credential: 'p'}}]}});
      pc.createDataChannel('probe');
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise(done => setTimeout(done, {GATHER_S * 1000}));
      pc.close();
      return 'done';
    }}"""


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name.lower())
async def test_webrtc_over_tcp_goes_through_the_route(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """TURN over TCP, the one way WebRTC is left, is a connection through the route: to a
    denied host it is refused there, and the host sees no connection."""
    listener = socket.create_server(("127.0.0.2", 0))
    listener.settimeout(0.2)
    port = int(listener.getsockname()[1])
    seen = []
    running = await broker_factory(engines=BROKER_ENGINES)
    refused = Refused()
    running.broker.observers.add(refused)
    try:
        async with running.client.lease(engine=engine) as lease:
            result = await lease.run(
                steps.goto(fixture_server.url("form.html")),
                steps.evaluate(_turn_tcp_script("127.0.0.2", port)),
                timeout=60,
            )
            assert result.ok, result[0]
            print(f"{engine.name.lower()}: the route refused {refused.targets}")
        with contextlib.suppress(TimeoutError):
            seen.append(listener.accept()[0].getpeername())
    finally:
        listener.close()
    assert seen == [], "a TURN connection went around the route"
