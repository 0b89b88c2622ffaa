"""One browser's pipe, shared by its clients: each client drives browser-target sessions of its
own (`Target.attachToBrowserTarget`), owns the sessions it attaches and those attached under
them, and hears only their events and the answers to its own commands (ids are remapped).

The broker's own Playwright is a trusted client; a tenant's clients are judged by `rules` and
bounded by `bounds`. The hub watches the browser's page targets itself, to bound how many are
open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from broker.attach.bounds import AttachLimits, TokenBucket
from broker.attach.clients import HubClient, Peer, Waiting, attached_as_seen_by, error
from broker.attach.downloads import DownloadWatch
from broker.attach.envelope import ENVELOPE_BYTES, read_by_hub, read_envelope, respliced
from broker.attach.pipe import CHUNK_BYTES, MAX_BROWSER_MESSAGE_BYTES, BrowserPipe, Oversized
from broker.attach.rules import decode, judge

log = logging.getLogger("broker.attach")

CALL_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 3.0  # Browser.close, then SIGKILL to the browser's process group
_ATTACHING = ("Target.attachToTarget", "Target.attachToBrowserTarget")
_TARGET_EVENTS = ("Target.targetCreated", "Target.targetInfoChanged")


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("an undecodable message from the browser was dropped")
        return None


class HubError(RuntimeError):
    """The browser refused the hub's own command, or is gone."""


def _given_streams(client: HubClient, method: str, result: dict[str, Any]) -> None:
    """IO stream handles an answer hands the client (Page.printToPDF, Fetch and Network bodies
    as streams, IO.resolveBlob's blob); IO.read and IO.close take only those."""
    if isinstance(result.get("stream"), str):
        client.streams.add(result["stream"])
    if method == "IO.resolveBlob" and isinstance(result.get("uuid"), str):
        client.streams.add("blob:" + result["uuid"])


def _stream_of_another(client: HubClient, method: str, params: dict[str, Any]) -> str | None:
    if method in ("IO.read", "IO.close") and params.get("handle") not in client.streams:
        return f"{method} is refused: that stream was not handed to this client"
    return None


class CdpHub:
    protocol = "cdp"

    def __init__(
        self,
        pipe: BrowserPipe,
        downloads_folder: str,
        limits: AttachLimits,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipe = pipe
        self.downloads_folder = downloads_folder
        self.limits = limits
        self._now = now
        self._ids = itertools.count(1)
        self._pending: dict[int, Waiting | asyncio.Future[dict[str, Any]]] = {}
        self._owner: dict[str, HubClient] = {}
        self._pages: set[str] = set()
        self._opening: set[int] = set()  # clients' createTarget not answered yet (wire ids)
        self.clients: set[HubClient] = set()
        self.gone = asyncio.Event()  # the browser closed its end of the pipe
        self._pump: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._contexts: set[str] = set()  # browser contexts seen (downloads are cancelled in)
        self.downloads = DownloadWatch(
            downloads_folder, limits.max_download_bytes, limits.max_downloads_bytes, self._cancel
        )
        self._poll: asyncio.Task[None] | None = None

    @property
    def pages(self) -> int:
        return len(self._pages)

    def attached(self, trusted: bool) -> int:
        return sum(1 for client in self.clients if client.trusted is trusted)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pipe.handle_inline(self._handle, self._bound)
        self._pump = loop.create_task(self._read_forever())
        self._sweep = loop.create_task(self._expire_forever())
        self._poll = loop.create_task(self.downloads.poll_forever())
        await self.call("Target.setDiscoverTargets", {"discover": True})

    async def _expire_forever(self) -> None:
        while not self.gone.is_set():
            await asyncio.sleep(min(self.limits.command_timeout_s / 4, 15.0))
            self.expire()

    def expire(self) -> None:
        """Answer and forget clients' commands the browser has not answered in
        command_timeout_s (Chromium never answers what it cannot read)."""
        timeout = self.limits.command_timeout_s
        late = self._now() - timeout
        for wire_id, waiting in list(self._pending.items()):
            if not isinstance(waiting, Waiting) or waiting.client.trusted:
                continue
            if waiting.sent_at <= late:
                del self._pending[wire_id]
                self._opening.discard(wire_id)  # (a page it opens late is closed past the bound)
                waiting.client.pending -= 1
                text = f"{waiting.method} got no answer from the browser in {timeout:g} s"
                waiting.client.send(error(waiting.ident, waiting.session, text))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The hub's own command on the browser's root session; its result."""
        if self.gone.is_set():
            raise HubError("the browser is gone")
        wire_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[wire_id] = answer
        self.pipe.write(json.dumps({"id": wire_id, "method": method, "params": params or {}}))
        try:
            message = await asyncio.wait_for(answer, CALL_TIMEOUT_S)
        finally:
            self._pending.pop(wire_id, None)
        if "error" in message:
            raise HubError(f"{method}: {message['error'].get('message', 'failed')}")
        result = message.get("result", {})
        return result if isinstance(result, dict) else {}

    async def attach(self, peer: Peer, trusted: bool) -> HubClient:
        """A new client, on a browser-target session of its own."""
        bucket = None
        if not trusted:
            bucket = TokenBucket(self.limits.messages_per_s, self.limits.burst, self._now())
        client = HubClient(peer, trusted, bucket)
        result = await self.call("Target.attachToBrowserTarget")
        root = result.get("sessionId")
        if not isinstance(root, str):
            raise HubError("Target.attachToBrowserTarget gave no session")
        client.root = root
        self._own(root, client)
        self.clients.add(client)
        return client

    def detach(self, client: HubClient) -> None:
        """The client is gone: its sessions end (and with them the contexts it created)."""
        if client.closed:
            return
        client.closed = True
        self.clients.discard(client)
        for session in client.sessions:
            self._owner.pop(session, None)
        client.sessions.clear()
        for wire_id in [k for k, w in self._pending.items() if getattr(w, "client", 0) is client]:
            del self._pending[wire_id]
        client.pending = 0
        if client.root and not self.gone.is_set():
            self._send_own("Target.detachFromTarget", {"sessionId": client.root})

    # ------------------------------------------------------------ client -> browser

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        """One message from `client`: refused with a CDP error, or relayed. Raises BadMessage
        for what is not a CDP command at all."""
        client.messages_in += 1
        client.bytes_in += len(raw)
        command = decode(raw)
        session = client.root if command.session_id is None else command.session_id
        refusal = None
        if session not in client.sessions:
            refusal = "Session with given id not found."
        elif not client.trusted:
            refusal = (
                self._bounds(client, command.method)
                or _stream_of_another(client, command.method, command.params)
                or judge(command, self.downloads_folder)
            )
        if refusal is not None:
            client.refused += 1
            client.send(error(command.id, command.session_id, refusal))
            return
        wire_id = next(self._ids)
        self._pending[wire_id] = Waiting(
            client, command.id, command.method, self._now(), command.session_id
        )
        client.pending += 1
        if command.method == "Target.createTarget" and not client.trusted:
            self._opening.add(wire_id)  # counted as a page until its answer
        self.pipe.write(command.wire(wire_id, session))

    def _bounds(self, client: HubClient, method: str) -> str | None:
        limits = self.limits
        if client.bucket is not None and not client.bucket.take(self._now()):
            return (
                f"{method} is refused: over {limits.messages_per_s:g} messages a second "
                f"(burst {limits.burst})"
            )
        if client.pending >= limits.max_pending:
            return f"{method} is refused: {limits.max_pending} commands are still unanswered"
        opening = len(self._pages) + len(self._opening)
        if method == "Target.createTarget" and opening >= limits.max_targets:
            return (
                f"{method} is refused: {limits.max_targets} pages are open or being opened "
                "(max_targets)"
            )
        return None

    # ------------------------------------------------------------ browser -> clients

    def _bound(self, head: bytes) -> int:
        """How much of a message starting with `head` is held: an answer to the broker's own
        Playwright or the hub, up to MAX_BROWSER_MESSAGE_BYTES; anything else, the bound on
        what an attached client is sent."""
        envelope = read_envelope(head, b"}", len(head) + 1)
        if envelope is not None and envelope.id is not None:
            waiting = self._pending.get(envelope.id)
            if not isinstance(waiting, Waiting) or waiting.client.trusted:
                return MAX_BROWSER_MESSAGE_BYTES
        return self.limits.max_browser_message_bytes

    def _handle(self, raw: bytes | Oversized) -> bool:
        """One message from the browser, as it is read; False: it is parsed in a worker thread
        first (by `_read_forever`, in order with what follows it)."""
        if isinstance(raw, Oversized):
            self._oversized(raw)
        elif not self._relay_unparsed(raw):
            if len(raw) > CHUNK_BYTES:
                return False
            self._dispatch(_loads(raw))
        return True

    async def _read_forever(self) -> None:
        try:
            while (raw := await self.pipe.read(self._bound)) is not None:
                if not self._handle(raw):  # a large message the hub must read
                    assert isinstance(raw, bytes)
                    self._dispatch(await asyncio.to_thread(_loads, raw))
        except Exception:
            log.exception("reading the browser's pipe failed")
        finally:
            self.gone.set()
            for waiting in self._pending.values():
                if isinstance(waiting, asyncio.Future) and not waiting.done():
                    waiting.set_exception(HubError("the browser is gone"))
            self._pending.clear()

    def _dispatch(self, message: object) -> None:
        if not isinstance(message, dict):
            return
        if "id" in message:
            self._opening.discard(message["id"])
            waiting = self._pending.pop(message["id"], None)
            if isinstance(waiting, asyncio.Future):
                if not waiting.done():
                    waiting.set_result(message)
            elif waiting is not None:
                self._answer(message, waiting.client, waiting.ident, waiting.method)
            return
        session = message.get("sessionId")
        if session is None:
            self._own_event(message)
            return
        client = self._owner.get(session)
        if client is None:
            return
        method, params = message.get("method"), message.get("params") or {}
        if not client.trusted:  # (the broker's own download step bounds its own files)
            self.downloads.event(method, params)
        if method == "Tracing.tracingComplete" and isinstance(params.get("stream"), str):
            client.streams.add(params["stream"])
        if method == "Target.attachedToTarget" and isinstance(params.get("sessionId"), str):
            self._own(params["sessionId"], client)
            target = (params.get("targetInfo") or {}).get("targetId")
            if isinstance(target, str):
                client.targets[params["sessionId"]] = target
        elif method == "Target.detachedFromTarget" and isinstance(params.get("sessionId"), str):
            self._owner.pop(params["sessionId"], None)
            client.sessions.discard(params["sessionId"])
            client.targets.pop(params["sessionId"], None)
        if not client.trusted and method in _TARGET_EVENTS:
            attached_as_seen_by(client, params.get("targetInfo"))
        if session == client.root:
            del message["sessionId"]
        client.send(message)

    def _answer(self, message: dict[str, Any], client: HubClient, ident: int, method: str) -> None:
        client.pending -= 1
        if client.closed:
            return
        result = message.get("result")
        if method in _ATTACHING and isinstance(result, dict):
            session = result.get("sessionId")
            if isinstance(session, str):
                self._own(session, client)
        if isinstance(result, dict):
            _given_streams(client, method, result)
        if not client.trusted and isinstance(result, dict):
            for info in [result.get("targetInfo"), *(result.get("targetInfos") or [])]:
                attached_as_seen_by(client, info)
        message["id"] = ident
        if message.get("sessionId") == client.root:
            del message["sessionId"]
        client.send(message)

    def _relay_unparsed(self, raw: bytes) -> bool:
        """Relay a message by its envelope, unparsed (its id and session spliced); False: it
        must be parsed (the hub reads it, or it is not written as Chromium writes them)."""
        envelope = read_envelope(raw[:ENVELOPE_BYTES], raw[-ENVELOPE_BYTES:], len(raw))
        if envelope is None:
            return False
        if envelope.id is not None:
            waiting = self._pending.get(envelope.id)
            if not isinstance(waiting, Waiting) or read_by_hub(waiting.method, True, len(raw)):
                return False
            del self._pending[envelope.id]
            client, ident = waiting.client, waiting.ident
            client.pending -= 1
            if client.closed:
                return True
            if not client.trusted and len(raw) > self.limits.max_browser_message_bytes:
                client.send(
                    error(
                        ident,
                        self._as_sent(client, envelope.session),
                        self._too_large(waiting.method, len(raw)),
                    )
                )
                return True
        else:
            if envelope.session is None or read_by_hub(envelope.method or "", False, len(raw)):
                return False
            owner = self._owner.get(envelope.session)
            if owner is None:
                return True
            client, ident = owner, None
            if not client.trusted and len(raw) > self.limits.max_browser_message_bytes:
                log.info("an event over attach_max_browser_message_bytes was dropped")
                return True
        client.send(respliced(raw, envelope, ident, self._as_sent(client, envelope.session)))
        return True

    @staticmethod
    def _as_sent(client: HubClient, session: str | None) -> str | None:
        return None if session == client.root else session

    def _too_large(self, method: str, size: int) -> str:
        return (
            f"{method}: the browser's answer is {size} bytes, over the "
            f"{self.limits.max_browser_message_bytes} bytes an attached client is sent "
            "(attach_max_browser_message_bytes)"
        )

    def _oversized(self, dropped: Oversized) -> None:
        """A message over its bound was dropped as it was read: its command is answered with
        an error naming its size (an event is gone)."""
        envelope = read_envelope(dropped.head, dropped.tail, dropped.size)
        waiting = (
            None
            if envelope is None or envelope.id is None
            else self._pending.pop(envelope.id, None)
        )
        if isinstance(waiting, Waiting):
            waiting.client.pending -= 1
            if not waiting.client.closed:
                session = self._as_sent(waiting.client, envelope.session if envelope else None)
                if waiting.client.trusted:
                    text = (
                        f"{waiting.method}: the browser's answer is {dropped.size} bytes, "
                        f"over {MAX_BROWSER_MESSAGE_BYTES}"
                    )
                else:
                    text = self._too_large(waiting.method, dropped.size)
                waiting.client.send(error(waiting.ident, session, text))
        elif isinstance(waiting, asyncio.Future) and not waiting.done():
            waiting.set_exception(HubError(f"an answer of {dropped.size} bytes"))
        else:
            log.info("a message of %d bytes from the browser was dropped", dropped.size)

    def _own(self, session: str, client: HubClient) -> None:
        self._owner[session] = client
        client.sessions.add(session)

    def _own_event(self, message: dict[str, Any]) -> None:
        """Events of the hub's own root session: the browser's page targets."""
        params = message.get("params") or {}
        info = params.get("targetInfo") or {}
        method = message.get("method")
        if isinstance(info.get("browserContextId"), str):
            self._contexts.add(info["browserContextId"])
        if method == "Target.targetCreated" and info.get("type") == "page":
            self._pages.add(info.get("targetId", ""))
            if len(self._pages) > self.limits.max_targets:
                log.info("a page over max_targets was closed")
                self._send_own("Target.closeTarget", {"targetId": info.get("targetId", "")})
        elif method == "Target.targetDestroyed":
            self._pages.discard(params.get("targetId", ""))

    def _cancel(self, guid: str) -> None:
        for context in (None, *self._contexts):
            params = (
                {"guid": guid} if context is None else {"guid": guid, "browserContextId": context}
            )
            self._send_own("Browser.cancelDownload", params)

    def _send_own(self, method: str, params: dict[str, Any]) -> None:
        """A command of the hub's whose answer nobody waits for."""
        wire_id = next(self._ids)
        self.pipe.write(json.dumps({"id": wire_id, "method": method, "params": params}))

    # ------------------------------------------------------------------- the end

    async def shutdown(self) -> None:
        """Close the browser (Browser.close, then SIGKILL to its process group) and wait for it
        to exit. Idempotent."""
        try:
            if not self.pipe.exited.done():
                if not self.gone.is_set():
                    self._send_own("Browser.close", {})
                try:
                    await asyncio.wait_for(asyncio.shield(self.pipe.exited), CLOSE_TIMEOUT_S)
                except TimeoutError:
                    log.warning("browser did not close; killed", extra={"pid": self.pipe.pid})
                    self.pipe.kill()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self.pipe.exited), CLOSE_TIMEOUT_S)
        finally:
            self.pipe.close_pipes()
            for task in (self._pump, self._sweep, self._poll):
                if task is not None:
                    task.cancel()
            self.downloads.close()
