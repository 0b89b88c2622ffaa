"""Attached clients of a `playwright` lease: each gets a connection of its own to the lease's
browser's launchServer endpoint (a loopback port at a secret path only the broker knows), and
every call it makes there is judged first (playwright_rules.py); what the server sends back is
relayed as it is, bounded in size.

The hub plays the part a CdpHub plays for CDP (broker/attach/server.py sees only the shape both
share): clients attach and detach, `receive` judges one message, `gone` is set when the
browser's server has exited. The broker's own Playwright connects to the endpoint itself, with
no hub in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from broker.attach.bounds import AttachLimits, TokenBucket
from broker.attach.clients import HubClient, Peer
from broker.attach.held_folder import HeldFolder
from broker.attach.hub import HubError
from broker.attach.playwright_rules import Call, decode_call, judge

log = logging.getLogger("broker.attach")

_ANSWER = re.compile(r'^\{"id":(\d+)[,}]')
_HEAD = 512  # an event's method is within its first bytes ({"guid":"<guid>","method":...)
_CLOSE_TOO_BIG = 1009
CLOSE_SERVER_GONE = 1011
# After a client's connection to the server closes on its own, how long the browser's exit (or
# the lease's end, which closes the socket with its reason) may take before the socket is closed.
UPSTREAM_GRACE_S = 1.0
_VERSION = re.compile(r"^Playwright/(\d+)\.(\d+)\.\d+")
OWN_IDS = 2**31  # the hub's own calls (a client's ids are below: playwright_rules.decode_call)
DOWNLOADS_POLL_S = 0.25  # how often the files of the clients' downloads are measured


@dataclass(eq=False)
class PlaywrightClient(HubClient):
    upstream: ClientConnection | None = None
    types: dict[str, str] = field(default_factory=lambda: {"": "Root"})  # guid -> its type
    waiting: set[int] = field(default_factory=set)  # call ids not answered yet
    opening: set[int] = field(default_factory=set)  # its newPage calls not answered yet
    outbox: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    uploaded: int = 0  # bytes written to temporary files on the broker's host
    artifacts: dict[str, str] = field(default_factory=dict)  # its downloads: guid -> file


def error_answer(ident: int, message: str) -> dict[str, Any]:
    """A call's error, as Playwright's server words one (the client raises it as an Error)."""
    return {"id": ident, "error": {"error": {"name": "Error", "message": message, "stack": ""}}}


class PlaywrightHub:
    protocol = "playwright"

    def __init__(
        self, endpoint: str, route_url: str, limits: AttachLimits, server_version: str
    ) -> None:
        self.endpoint = endpoint  # ws://127.0.0.1:<port>/<secret>: never shown to a client
        self.route_url = route_url
        self.limits = limits
        self.server_version = server_version
        self.gone = asyncio.Event()  # the browser's server has exited
        self._clients: set[PlaywrightClient] = set()
        self._closing = False
        self._own_ids = itertools.count(OWN_IDS)
        self._downloads: asyncio.Task[None] | None = None

    def attached(self, trusted: bool) -> int:
        return sum(1 for client in self._clients if client.trusted == trusted)

    def version_refusal(self, user_agent: str) -> str | None:
        """Why a client of this User-Agent cannot use the server (Playwright's own check: the
        same major and minor version), or None."""
        found = _VERSION.match(user_agent)
        wanted = ".".join(self.server_version.split(".")[:2])
        if found is None or f"{found[1]}.{found[2]}" == wanted:
            return None
        return (
            f"Playwright version mismatch: the lease's server is v{wanted}, the client "
            f"v{found[1]}.{found[2]}; connect with a Playwright {wanted}.x client"
        )

    async def attach(self, peer: Peer, trusted: bool) -> HubClient:
        if self.gone.is_set() or self._closing:
            raise HubError("the browser is gone")
        limits = self.limits
        try:
            upstream = await websockets.connect(
                self.endpoint,
                max_size=limits.max_browser_message_bytes,
                compression=None,
                ping_interval=None,
                open_timeout=10,
                user_agent_header=f"Playwright/{self.server_version} browser-broker",
            )
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            raise HubError(f"the browser's server refused a connection: {exc}") from exc
        bucket = None if trusted else TokenBucket(limits.messages_per_s, limits.burst, _now())
        client = PlaywrightClient(peer, trusted, bucket, upstream=upstream)
        self._clients.add(client)
        loop = asyncio.get_running_loop()
        client.tasks = [
            loop.create_task(self._read_forever(client)),
            loop.create_task(self._write_forever(client)),
        ]
        return client

    def detach(self, client: HubClient) -> None:
        if not isinstance(client, PlaywrightClient) or client.closed:
            return
        client.closed = True
        self._clients.discard(client)
        for task in client.tasks:
            task.cancel()
        if client.upstream is not None:
            # Closing it makes the server close the contexts this client opened.
            asyncio.get_running_loop().create_task(_close(client.upstream))

    async def shutdown(self) -> None:
        """The browser is being stopped: let every client go (their sockets close with the
        lease's reason, or once the browser is gone)."""
        self._closing = True
        if self._downloads is not None:
            self._downloads.cancel()
        for client in list(self._clients):
            self.detach(client)

    # ------------------------------------------------------------ downloads

    def watch_downloads(self, folder: str) -> None:
        """Bound the clients' downloads, which the browser writes in `folder` on the broker's
        host: measured every DOWNLOADS_POLL_S, a file over max_download_bytes, or every one of
        the clients' downloads once the folder holds over max_downloads_bytes, is cancelled
        (Artifact.cancel, sent by the hub on the client's own connection) and its file removed
        (it may have completed between two measures)."""
        self._downloads = asyncio.get_running_loop().create_task(self._measure_forever(folder))

    async def _measure_forever(self, path: str) -> None:
        folder = HeldFolder(path)  # (never followed if swapped for a link)
        cancelled: set[str] = set()
        try:
            while not self.gone.is_set():
                await asyncio.sleep(DOWNLOADS_POLL_S)
                if any(client.artifacts for client in self._clients):
                    self._measure(folder, cancelled)
        finally:
            folder.close()

    def _measure(self, folder: HeldFolder, cancelled: set[str]) -> None:
        over_total = folder.total_bytes() > self.limits.max_downloads_bytes
        for client in list(self._clients):
            for guid, path in list(client.artifacts.items()):
                if guid in cancelled:
                    continue
                # Only a file directly in the held folder is measured or removed: a path the
                # browser named elsewhere (a subfolder it may swap for a link) never is.
                inside, name = os.path.dirname(path) == folder.path, os.path.basename(path)
                size = folder.size_of(name) if inside else 0
                if over_total or size > self.limits.max_download_bytes:
                    cancelled.add(guid)
                    log.warning("an attached client's download is over its bound: cancelled")
                    message = {"id": next(self._own_ids), "guid": guid, "method": "cancel"}
                    client.outbox.append(json.dumps({**message, "params": {}, "metadata": {}}))
                    client.wake.set()
                    if inside:  # (it may have completed meanwhile)
                        folder.remove(name)

    # ------------------------------------------------------------ client -> server

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        """One message from `client`: refused with an error answer naming the call, or relayed.
        Raises BadMessage for what is not a Playwright call at all."""
        assert isinstance(client, PlaywrightClient)
        client.messages_in += 1
        client.bytes_in += len(raw)
        call = decode_call(raw)
        kind = client.types.get(call.guid)
        refusal = self._bounds(client, call)
        if refusal is None and kind is None:
            refusal = f"{call.method} is refused: no object {call.guid[:64]!r} on this connection"
        if refusal is None and kind is not None:
            refusal = judge(kind, call, self.route_url) or self._upload_bound(client, kind, call)
        if refusal is not None:
            client.refused += 1
            client.send(error_answer(call.id, refusal))
            return
        if not call.method.startswith("__"):
            client.waiting.add(call.id)
        if call.method == "newPage":
            client.opening.add(call.id)  # counted as a page until its answer
        client.outbox.append(call.wire())
        client.wake.set()

    def _bounds(self, client: PlaywrightClient, call: Call) -> str | None:
        limits = self.limits
        if client.bucket is not None and not client.bucket.take(_now()):
            return (
                f"{call.method} is refused: over {limits.messages_per_s:g} messages a second "
                f"(burst {limits.burst})"
            )
        if call.id in client.waiting:  # the set would count a reused id once
            return f"{call.method} is refused: call id {call.id} is still unanswered"
        if len(client.waiting) >= limits.max_pending:
            return f"{call.method} is refused: {limits.max_pending} calls are still unanswered"
        opening = sum(len(c.opening) for c in self._clients)
        if call.method == "newPage" and self._pages() + opening >= limits.max_targets:
            return (
                f"{call.method} is refused: {limits.max_targets} pages are open or being "
                "opened (max_targets)"
            )
        return None

    def _pages(self) -> int:
        """Pages the clients' contexts hold (popups included), as the server announced them."""
        return sum(kind == "Page" for c in self._clients for kind in c.types.values())

    def _close_past_bound(self, client: PlaywrightClient, guid: str) -> None:
        """A page the server made (a client's or a site's popup) past max_targets is closed
        by the hub, on the client's own connection (its answer is the hub's)."""
        if self._pages() <= self.limits.max_targets:
            return
        log.info("a page over max_targets was closed")
        message = {"id": next(self._own_ids), "guid": guid, "method": "close"}
        client.outbox.append(json.dumps({**message, "params": {}, "metadata": {}}))
        client.wake.set()

    def _upload_bound(self, client: PlaywrightClient, kind: str, call: Call) -> str | None:
        """Files a client uploads are written on the broker's host first: bounded in all."""
        if kind != "WritableStream" or call.method != "write":
            return None
        size = len(call.params.get("binary") or "") * 3 // 4
        if client.uploaded + size > self.limits.max_downloads_bytes:
            return (
                f"WritableStream.write is refused: a client's uploads are bounded to "
                f"{self.limits.max_downloads_bytes} bytes in all"
            )
        client.uploaded += size
        return None

    async def _write_forever(self, client: PlaywrightClient) -> None:
        assert client.upstream is not None
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.outbox:
                    await client.upstream.send(client.outbox.popleft())

    # ------------------------------------------------------------ server -> client

    async def _read_forever(self, client: PlaywrightClient) -> None:
        assert client.upstream is not None
        why = "the lease's browser server closed the connection"
        try:
            async for message in client.upstream:
                text = message if isinstance(message, str) else message.decode()
                if not self._seen(client, text):
                    continue
                client.messages_out += 1
                client.bytes_out += len(text)
                client.peer.deliver(text)
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is not None and exc.sent.code == _CLOSE_TOO_BIG:
                why = f"a message from the browser is over {self.limits.max_browser_message_bytes}"
        if client.closed or self._closing:
            return
        # The browser's exit, or the lease's end, closes the socket with its own reason.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), UPSTREAM_GRACE_S)
        if not client.closed and not self.gone.is_set():
            log.warning("an attached client's connection to its browser closed: %s", why)
            close = getattr(client.peer, "close", None)
            if close is not None:
                close(CLOSE_SERVER_GONE, why[:120])

    def _seen(self, client: PlaywrightClient, text: str) -> bool:
        """Keep the types of the objects the server creates (calls are judged by them), the
        files of its downloads, and which calls are answered; whether the client is sent it
        (not an answer to the hub's own call)."""
        answer = _ANSWER.match(text)
        if answer is not None:
            ident = int(answer[1])
            client.waiting.discard(ident)
            client.opening.discard(ident)
            return ident < OWN_IDS
        head = text[:_HEAD]
        if '"method":"__create__"' in head or '"method":"__dispose__"' in head:
            try:
                event = json.loads(text)
            except ValueError:
                return True
            params = event.get("params") or {}
            if event.get("method") == "__dispose__":
                client.types.pop(str(event.get("guid")), None)
                client.artifacts.pop(str(event.get("guid")), None)
            elif isinstance(params.get("guid"), str) and isinstance(params.get("type"), str):
                client.types[params["guid"]] = params["type"]
                if params["type"] == "Page":
                    self._close_past_bound(client, params["guid"])
                path = (params.get("initializer") or {}).get("absolutePath")
                if params["type"] == "Artifact" and isinstance(path, str):
                    client.artifacts[params["guid"]] = path
        return True


async def _close(upstream: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(upstream.close(), 5.0)


def _now() -> float:
    return time.monotonic()
