"""HTTP/1.1 as the route speaks it: one request read and judged at a time, never a byte stream.

A proxy that judges a connection's first request and then copies bytes both ways hands every
later request on that kept-alive connection, for whatever host, to the first server. So the
route parses each message with h11 (framing by Content-Length or chunked, per RFC 9112), sends
exactly one request upstream with `Connection: close`, relays exactly one response with
`Connection: close`, and closes both sides: the browser's next request comes on a new
connection, which the route judges afresh. Nothing the client sent after its first request is
ever forwarded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import h11

MAX_HEAD_BYTES = 64 * 1024
RELAY_CHUNK = 64 * 1024
# Per-connection headers: never forwarded either way (the route sets its own Connection).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
# Framing and the target's authority are the route's to set: no Connection header removes them.
_KEPT = frozenset({b"content-length", b"transfer-encoding", b"host"})
_CLOSE = (b"Connection", b"close")
_HOST_LINE = re.compile(rb"\r\nhost[ \t]*:", re.IGNORECASE)

Headers = list[tuple[bytes, bytes]]


class BadRequest(Exception):
    """The client's request cannot be forwarded as one unambiguous message."""


class Gone(Exception):
    """A side closed or broke its message before the exchange ended."""


@dataclass(frozen=True)
class ProxyRequest:
    """The first request on a client connection: its method and target, as sent."""

    method: str
    target: str
    request: h11.Request


def client_side() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


async def read_request(client: h11.Connection, reader: asyncio.StreamReader) -> ProxyRequest:
    """The first request head on the client's connection, or BadRequest."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")  # bounded by the reader's limit
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
        raise BadRequest("no request head") from None
    if _HOST_LINE.search(head) is None:
        # RFC 9112 wants a Host in every HTTP/1.1 request, but a proxy request's target names
        # its authority: a placeholder lets it parse (the route writes its own Host upstream).
        head = head[:-2] + b"Host: proxy-target\r\n\r\n"
    client.receive_data(head)
    try:
        event = await _next_event(client, reader)
    except h11.RemoteProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(event, h11.Request):
        raise BadRequest("no request")
    names = {name.lower() for name, _ in event.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        # Two framings for one body: whichever the server picks, the other hides a request.
        raise BadRequest("both Content-Length and Transfer-Encoding")
    return ProxyRequest(
        event.method.decode("ascii", "replace"), event.target.decode("latin-1"), event
    )


def trailing_bytes(client: h11.Connection) -> bytes:
    """What the client sent after its request head (a CONNECT tunnel's first bytes)."""
    return bytes(client.trailing_data[0])


async def exchange(
    client: h11.Connection,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    request: h11.Request,
    origin_form: str,
    authority: str,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Forwards `request` (its body framed by h11) as `origin_form` to `authority` (the Host
    header names the judged target, whatever the client wrote), and relays its response. Both
    connections are to be closed afterwards: neither carries a second message."""
    server = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    upstream = h11.Request(
        method=request.method,
        target=origin_form.encode("ascii"),
        headers=[
            (b"Host", authority.encode("ascii")),
            *((n, v) for n, v in _end_to_end(request.headers) if n.lower() != b"host"),
            _CLOSE,
        ],
        http_version="1.1",
    )
    upstream_writer.write(server.send(upstream) or b"")
    try:
        await _relay_body(client, client_reader, server, upstream_writer)
        response = await _response_head(server, upstream_reader, client, client_writer)
        client_writer.write(client.send(response) or b"")
        await _relay_body(server, upstream_reader, client, client_writer)
    except h11.ProtocolError as exc:
        raise Gone(str(exc)) from None


async def _response_head(
    server: h11.Connection,
    upstream_reader: asyncio.StreamReader,
    client: h11.Connection,
    client_writer: asyncio.StreamWriter,
) -> h11.Response:
    """The server's final response head, as the client gets it; interim 1xx go through."""
    while True:
        event = await _next_event(server, upstream_reader)
        if isinstance(event, h11.Response):
            headers = [*_end_to_end(event.headers), _CLOSE]
            return h11.Response(status_code=event.status_code, headers=headers, reason=event.reason)
        if not isinstance(event, h11.InformationalResponse) or event.status_code == 101:
            raise Gone("the server sent no response (or switched protocols unasked)")
        client_writer.write(client.send(event) or b"")


async def _relay_body(
    source: h11.Connection,
    reader: asyncio.StreamReader,
    sink: h11.Connection,
    writer: asyncio.StreamWriter,
) -> None:
    """One message's body, chunk by chunk as it arrives, reframed by h11, and its end."""
    while True:
        event = await _next_event(source, reader)
        if isinstance(event, h11.Data):
            writer.write(sink.send(event) or b"")
        elif isinstance(event, h11.EndOfMessage):
            writer.write(sink.send(h11.EndOfMessage()) or b"")  # trailers are not forwarded
            await writer.drain()
            return
        else:
            raise Gone("a side closed before its message ended")
        await writer.drain()


def _end_to_end(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The headers to forward: no hop-by-hop header, nor any the Connection header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    } - _KEPT
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in _HOP_BY_HOP and name.lower() not in named
    ]


async def _next_event(connection: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await reader.read(RELAY_CHUNK))
