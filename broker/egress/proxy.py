"""Routes: one small HTTP proxy on loopback per browser session, enforcing its egress policy.

A browser context is pointed at its route (Playwright's per-context `proxy`; Playwright makes
Chromium send loopback through it too, and Firefox is told to by a preference). The route sees
every connection the page's network stack opens: `CONNECT host:port` for HTTPS and WebSockets,
absolute-form requests for plain HTTP, each target read as a browser reads URLs
(broker.common.urls). A plain-HTTP connection carries one request and one response, then closes
(plain_http.py): a kept-alive connection never takes a request past the route's judgement. It
resolves the host itself, checks each address, and connects to the first allowed one, so the
address checked is the address used (no DNS rebinding window). A denied request is answered `403` with the rule in `X-Browser-Broker-Egress`,
recorded on the route, and reported to whoever listens (metrics, the lease's trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from broker.common.cleanup import TaskSet
from broker.common.urls import UrlError, canonical, canonical_host, proxy_server
from broker.egress import plain_http
from broker.egress.policy import (
    Decision,
    EgressPolicy,
    EgressRules,
    IPAddress,
    Resolver,
    resolve,
)

log = logging.getLogger("broker.egress")

DENIED_HEADER = "X-Browser-Broker-Egress"
# On a 502: why the destination could not be reached (the browser would show a network error).
UPSTREAM_HEADER = "X-Browser-Broker-Upstream-Error"
UNRESOLVABLE = "unresolvable"
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = plain_http.MAX_HEAD_BYTES
RELAY_CHUNK = plain_http.RELAY_CHUNK


@dataclass(frozen=True)
class Blocked:
    """One request the policy refused. `target` is host:port only: no path, no query."""

    seq: int
    target: str
    rule: str
    message: str


BlockListener = Callable[[Blocked], None]


class EgressRoute:
    """The proxy one browser session uses. Its policy can be narrowed when the session is lent."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver = resolve) -> None:
        self.base_policy = policy
        self.policy = policy
        self._resolver = resolver
        self._server: asyncio.Server | None = None
        self._connections = TaskSet()
        self._seq = itertools.count(1)
        self.recent: deque[Blocked] = deque(maxlen=16)
        self.blocked_total = 0
        self.on_blocked: BlockListener | None = None
        self.port = 0
        self._holds = 0  # while above 0, the route forwards nothing (see `hold`)

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bind(self, rules: EgressRules, on_blocked: BlockListener | None) -> None:
        """The session is lent: its tenant's rules apply from now on, and blocks are reported."""
        self.policy = self.base_policy.with_rules(rules)
        self.on_blocked = on_blocked

    async def start(self) -> EgressRoute:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._connections.cancel()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """While the session's work is being stopped: every connection in flight is cut and new
        ones are turned away, so nothing the stopped pages sent (a request still being relayed,
        one queued behind a busy loop, one the browser retries) reaches anywhere after the stop
        began. A stop that fails leaves the route held: its pages may still be running, and the
        lease is ended next."""
        self._holds += 1
        await self._connections.cancel()
        yield
        self._holds -= 1

    async def shut(self) -> None:
        """Forward nothing ever again (the session is closing), whether or not it closes."""
        self._holds += 1
        await self._connections.cancel()

    @property
    def held(self) -> bool:
        return self._holds > 0

    def last_seq(self) -> int:
        return self.recent[-1].seq if self.recent else 0

    def blocked_since(self, seq: int) -> list[Blocked]:
        return [b for b in self.recent if b.seq > seq]

    # ------------------------------------------------------------ serving

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._holds:
            writer.close()  # the work that opened it is being stopped
            return
        task = self._connections.spawn(self._handle(reader, writer))
        # A task cancelled before its first step never runs its `finally`: close the socket here.
        task.add_done_callback(lambda _: writer.close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        client = plain_http.client_side()
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S):
                    request = await plain_http.read_request(client, reader)
            except (plain_http.BadRequest, TimeoutError):
                await _reply(writer, 400, "bad request head")
                return
            found = proxy_target(request.method, request.target)
            if found is None:
                await _reply(writer, 400, "not a proxy request")
                return
            host, port, origin_form = found
            if self._holds:
                return  # the stop began while this request was read: it goes nowhere
            target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            decision, address = await self._decide(host, port)
            if decision.rule == UNRESOLVABLE:  # a DNS failure, as any browser meets, not a denial
                await _reply(
                    writer, 502, f"{target} does not resolve", upstream="name_not_resolved"
                )
                return
            if not decision.allowed or address is None:
                self._block(target, decision)
                await _reply(writer, 403, decision.describe(target), rule=decision.rule)
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    up_reader, upstream = await asyncio.open_connection(str(address), port)
            except (OSError, TimeoutError) as exc:
                reason = "timed_out" if isinstance(exc, TimeoutError) else "connection_failed"
                await _reply(writer, 502, f"{target}: {reason.replace('_', ' ')}", upstream=reason)
                return
            if self._holds:
                return  # the stop began while this connection was being opened
            if request.method == "CONNECT":
                # A tunnel to the one judged host:port (TLS inside): bytes both ways.
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                upstream.write(plain_http.trailing_bytes(client))
                await _relay(reader, writer, up_reader, upstream)
            else:
                # One request, one response, then both connections close: the next request
                # comes on a new connection and is judged like this one.
                authority = target.removesuffix(":80")
                await plain_http.exchange(
                    client,
                    reader,
                    writer,
                    request.request,
                    origin_form,
                    authority,
                    up_reader,
                    upstream,
                )
        except (OSError, asyncio.IncompleteReadError, plain_http.Gone):
            pass  # either side went away, or broke its message
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    stream.close()

    async def _decide(self, host: str, port: int) -> tuple[Decision, IPAddress | None]:
        policy = self.policy
        early = policy.check_host(host)
        if early is not None:
            return early, None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                addresses = await self._resolver(host, port)
        except (OSError, TimeoutError, UnicodeError, ValueError):
            return Decision(False, UNRESOLVABLE, f"{host!r} does not resolve"), None
        first_denial: Decision | None = None
        for address in addresses:
            decision = policy.check_address(host, address, port)
            if decision.allowed:
                return decision, address
            first_denial = first_denial or decision
        return first_denial or Decision(False, UNRESOLVABLE, f"{host!r} has no address"), None

    def _block(self, target: str, decision: Decision) -> None:
        blocked = Blocked(next(self._seq), target, decision.rule, decision.describe(target))
        self.recent.append(blocked)
        self.blocked_total += 1
        log.info("egress denied", extra={"target": target, "rule": decision.rule})
        if self.on_blocked is not None:
            self.on_blocked(blocked)


def proxy_target(method: str, target: str) -> tuple[str, int, str] | None:
    """(host, port, origin-form path) a proxy request names, or None if it names none the route
    serves: `CONNECT host:port`, or an absolute `http://` URL read as a browser reads it."""
    if method == "CONNECT":
        host_text, sep, port_text = target.rpartition(":")
        if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        try:
            host = canonical_host(host_text)
        except UrlError:
            return None
        return (host, int(port_text), "") if _valid_host(host) else None
    try:
        url = canonical(target)
    except UrlError:
        return None
    if url.scheme != "http" or not _valid_host(url.host) or url.has_credentials:
        return None  # only plain HTTP comes as an absolute URI; anything else is refused
    # The href is canonical: "http://authority/path?query#fragment"; a request has no fragment.
    path = "/" + url.href.split("/", 3)[3].partition("#")[0]
    return url.host, url.port or 80, path


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    return all(ch.isalnum() or ch in "-._:" for ch in host) and host.isascii()


async def _reply(
    writer: asyncio.StreamWriter, status: int, message: str, rule: str = "", upstream: str = ""
) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = f"browser broker: {message}\n".encode()
    extra = f"{DENIED_HEADER}: {rule}\r\n" if rule else ""
    extra += f"{UPSTREAM_HEADER}: {upstream}\r\n" if upstream else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        writer.write(head.encode() + body)
        await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(RELAY_CHUNK):
        writer.write(data)
        await writer.drain()


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side closes."""
    tasks = [
        asyncio.ensure_future(_copy(client_reader, upstream_writer)),
        asyncio.ensure_future(_copy(upstream_reader, client_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class EgressGateway:
    """Opens routes under the broker's policy and keeps the broker's own ports out of reach."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver = resolve) -> None:
        self.base_policy = policy
        self.policy = policy
        self._resolver = resolver

    def add_own_port(self, port: int) -> None:
        self.policy.own_ports.add(port)

    async def open_route(self) -> EgressRoute:
        route = await EgressRoute(self.policy, self._resolver).start()
        self.policy.own_ports.add(route.port)
        return route

    async def close_route(self, route: EgressRoute) -> None:
        await route.close()
        self.policy.own_ports.discard(route.port)

    async def vet_proxy(self, server: str, rules: EgressRules) -> Decision:
        """May a lease send its traffic through the proxy at `server` (scheme://host:port)?"""
        parsed = proxy_server(server)  # the host the browser will use, parsed as it parses
        if parsed is None:
            return Decision(False, "proxy_server", "the proxy is not scheme://host:port")
        route = EgressRoute(self.policy.with_rules(rules), self._resolver)
        decision, _ = await route._decide(parsed.host, parsed.port)
        return decision
