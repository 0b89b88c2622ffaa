"""The hub of a lease's Firefox over WebDriver BiDi: the broker holds the browser's one session,
and a tenant's client is relayed into it through the filter (`bidi_rules`).

Firefox serves one BiDi session at a time ("Maximum number of active sessions") and no second
connection can join a BiDi-only one, so the broker opens that session itself as soon as the
browser is up, on a loopback connection of its own: a local process that finds the remote
agent's port can then start no session and send no session command ("invalid session id"). A
client's `session.new` is answered with the broker's session (capabilities asking for a proxy
refused), its `session.end` only lets it go, and what it left in the session (subscriptions,
intercepts, preload scripts, data collectors) is undone when it leaves, so the next client
starts clean. One client at a time: the session's events cannot be told apart by subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from broker.attach.bidi_pages import WATCHED, PageCount, Subscriptions
from broker.attach.bidi_rules import judge, undo
from broker.attach.bounds import AttachLimits, TokenBucket
from broker.attach.clients import HubClient, Peer, Waiting
from broker.attach.downloads import POLL_S
from broker.attach.held_folder import HeldFolder
from broker.attach.hub import HubError
from broker.attach.rules import BadMessage, decode

log = logging.getLogger("broker.attach")

CALL_TIMEOUT_S = 30.0
# The session the broker opens: prompts are left for the client (as Puppeteer asks), and
# certificates are checked.
CAPABILITIES = {
    "alwaysMatch": {"acceptInsecureCerts": False, "unhandledPromptBehavior": {"default": "ignore"}}
}
_ID = re.compile(rb'"id":(\d{1,16})[,}]')
REFUSED_ERROR = "unsupported operation"


class BidiHubError(HubError):
    pass


def _error(ident: int, error: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": ident, "error": error, "message": message}


class BidiHub:
    protocol = "bidi"
    max_clients = 1  # the session's events cannot be told apart by subscriber

    def __init__(
        self,
        socket: ClientConnection,
        downloads_folder: str,
        limits: AttachLimits,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket = socket
        self.limits = limits
        self._now = now
        self._ids = itertools.count(1)
        self._pending: dict[int, Waiting | asyncio.Future[dict[str, Any]] | None] = {}
        self._made: dict[HubClient, list[tuple[str, dict[str, Any]]]] = {}
        self.clients: set[HubClient] = set()
        self.gone = asyncio.Event()  # the browser's connection closed
        self.session_id = ""
        self.capabilities: dict[str, Any] = {}
        self.downloads_folder = downloads_folder
        self._folder = HeldFolder(downloads_folder)  # (never followed if swapped for a link)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._denied = False
        self._pages = PageCount(limits.max_targets)
        self._subscriptions: dict[HubClient, Subscriptions] = {}
        self._own_subscriptions: set[str] = set()
        # a client's (un)subscribe by wire id: its method and parameters
        self._asked: dict[int, tuple[str, dict[str, Any]]] = {}

    def attached(self, trusted: bool) -> int:
        return 0 if trusted else len(self.clients)

    async def start(self) -> None:
        """Read the browser, open the lease's session and send downloads to its folder."""
        self._spawn(self._read_forever())
        result = await self.call("session.new", {"capabilities": CAPABILITIES})
        self.session_id = str(result.get("sessionId", ""))
        capabilities = result.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        await self._watch_pages()
        behavior = {"type": "allowed", "destinationFolder": self.downloads_folder}
        await self.call("browser.setDownloadBehavior", {"downloadBehavior": behavior})
        self._spawn(self._watch_downloads())
        self._spawn(self._expire_forever())

    async def _watch_pages(self) -> None:
        """Subscribe the hub to the pages' creation (again after a client unsubscribed by
        event names, which may have removed the hub's subscription) and count them anew."""
        result = await self.call("session.subscribe", {"events": list(WATCHED)})
        self._own_subscriptions.add(str(result.get("subscription")))
        self._pages.recent.clear()
        for context in self._pages.recounted(
            await self.call("browsingContext.getTree", {"maxDepth": 0})
        ):
            log.info("a page over attach_max_targets was closed")
            self._send_own("browsingContext.close", {"context": context})

    async def _watch_pages_again(self) -> None:
        with contextlib.suppress(BidiHubError, TimeoutError):
            await self._watch_pages()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The hub's own command; its result."""
        if self.gone.is_set():
            raise BidiHubError("the browser is gone")
        wire_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[wire_id] = answer
        await self.socket.send(json.dumps({"id": wire_id, "method": method, "params": params}))
        try:
            message = await asyncio.wait_for(answer, CALL_TIMEOUT_S)
        finally:
            self._pending.pop(wire_id, None)
        if message.get("type") != "success":
            raise BidiHubError(f"{method}: {message.get('message', 'failed')}")
        result = message.get("result", {})
        return result if isinstance(result, dict) else {}

    def _send(self, wire_id: int, method: str, params: dict[str, Any]) -> None:
        text = json.dumps(
            {"id": wire_id, "method": method, "params": params},
            separators=(",", ":"),
            allow_nan=False,
        )
        self._spawn(self._write(text))

    async def _write(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.socket.send(text)

    def _send_own(self, method: str, params: dict[str, Any]) -> None:
        """A command of the hub's whose answer nobody waits for."""
        wire_id = next(self._ids)
        self._pending[wire_id] = None
        self._send(wire_id, method, params)

    # ------------------------------------------------------------ clients

    async def attach(self, peer: Peer, trusted: bool) -> HubClient:
        if self.gone.is_set():
            raise BidiHubError("the browser is gone")
        bucket = TokenBucket(self.limits.messages_per_s, self.limits.burst, self._now())
        client = HubClient(peer, False, bucket)
        self.clients.add(client)
        self._made[client] = []
        self._subscriptions[client] = Subscriptions()
        return client

    def detach(self, client: HubClient) -> None:
        """The client is gone: what it left in the session is undone."""
        if client.closed:
            return
        client.closed = True
        self.clients.discard(client)
        self._subscriptions.pop(client, None)
        for wire_id in [k for k, w in self._pending.items() if getattr(w, "client", 0) is client]:
            self._pending[wire_id] = None  # its answer is dropped (and what it made undone)
        client.pending = 0
        if not self.gone.is_set():
            for method, params in self._made.pop(client, []):
                self._send_own(method, params)

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        """One message from `client`: answered here, refused with a BiDi error, or relayed.
        Raises BadMessage for what is not a BiDi command at all."""
        client.messages_in += 1
        client.bytes_in += len(raw)
        command = decode(raw)
        if command.session_id is not None:
            raise BadMessage("unknown member 'sessionId'")
        method = command.method
        refusal = self._bounds(client, method) or judge(command, self.limits.max_targets, 0)
        refusal = refusal or self._page_refusal(method, command.params)
        if refusal is not None:
            client.refused += 1
            client.send(_error(command.id, REFUSED_ERROR, refusal))
        elif method == "session.new":
            result = {"sessionId": self.session_id, "capabilities": self.capabilities}
            client.send({"type": "success", "id": command.id, "result": result})
        elif method == "session.end":
            client.send({"type": "success", "id": command.id, "result": {}})
        else:
            wire_id = self._relay(client, command.id, method, command.params)
            if method == "browsingContext.create":
                self._pages.opening.add(wire_id)  # counted until its answer
            elif method in ("session.subscribe", "session.unsubscribe"):
                self._asked[wire_id] = (method, command.params)

    def _page_refusal(self, method: str, params: dict[str, Any]) -> str | None:
        if method == "browsingContext.create" and self._pages.full():
            return self._pages.refusal(method)
        named = params.get("subscriptions") if method == "session.unsubscribe" else None
        if isinstance(named, list) and self._own_subscriptions.intersection(map(str, named)):
            return f"{method} is refused: a subscription named is the broker's own"
        return None

    def _relay(self, client: HubClient, ident: int, method: str, params: dict[str, Any]) -> int:
        wire_id = next(self._ids)
        self._pending[wire_id] = Waiting(client, ident, method, self._now())
        client.pending += 1
        self._send(wire_id, method, params)
        return wire_id

    def _bounds(self, client: HubClient, method: str) -> str | None:
        limits = self.limits
        if client.bucket is not None and not client.bucket.take(self._now()):
            return (
                f"{method} is refused: over {limits.messages_per_s:g} messages a second "
                f"(burst {limits.burst})"
            )
        if client.pending >= limits.max_pending:
            return f"{method} is refused: {limits.max_pending} commands are still unanswered"
        return None

    async def _expire_forever(self) -> None:
        while not self.gone.is_set():
            await asyncio.sleep(min(self.limits.command_timeout_s / 4, 15.0))
            self.expire()

    def expire(self) -> None:
        """Answer and forget a client's commands unanswered for command_timeout_s (a script
        awaiting a promise that never settles), so they do not hold its pending bound."""
        timeout = self.limits.command_timeout_s
        late = self._now() - timeout
        for wire_id, waiting in list(self._pending.items()):
            if isinstance(waiting, Waiting) and waiting.sent_at <= late:
                self._pending[wire_id] = None  # a late answer is dropped
                asked = self._forget(wire_id)  # (a page it opens late is closed past the bound)
                if asked is not None:
                    self._subscribed(None, *asked, {})
                waiting.client.pending -= 1
                why = f"{waiting.method} got no answer from the browser in {timeout:g} s"
                waiting.client.send(_error(waiting.ident, "unknown error", why))

    # ------------------------------------------------------------ browser -> client

    async def _read_forever(self) -> None:
        try:
            async for raw in self.socket:
                if len(raw) > self.limits.max_browser_message_bytes:
                    self._oversized(raw.encode() if isinstance(raw, str) else raw)
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("an undecodable message from the browser was dropped")
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except Exception:
            log.info("the lease's BiDi connection closed", exc_info=True)
        finally:
            self.gone.set()
            for waiting in self._pending.values():
                if isinstance(waiting, asyncio.Future) and not waiting.done():
                    waiting.set_exception(BidiHubError("the browser is gone"))
            self._pending.clear()

    def _oversized(self, raw: bytes) -> None:
        """Too large for a client: its command is answered with an error, an event dropped."""
        found = _ID.search(raw[:256])
        waiting = self._pending.pop(int(found.group(1)), None) if found else None
        if found:
            self._forget(int(found.group(1)))
        if not isinstance(waiting, Waiting):
            return
        waiting.client.pending -= 1
        bound = self.limits.max_browser_message_bytes
        why = f"{waiting.method}: the answer is {len(raw)} bytes, over the bound of {bound}"
        waiting.client.send(_error(waiting.ident, REFUSED_ERROR, why))

    def _forget(self, wire_id: int) -> tuple[str, dict[str, Any]] | None:
        self._pages.opening.discard(wire_id)
        return self._asked.pop(wire_id, None)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "event":
            method = str(message.get("method"))
            if method == "browsingContext.downloadEnd":
                params = message.get("params")
                if isinstance(params, dict) and "filepath" in params:
                    params["filepath"] = None  # a path on the broker's host
            elif method in WATCHED:
                self._close_past_bound(self._pages.event(method, message.get("params")))
            for client in list(self.clients):
                if method not in WATCHED or self._subscriptions[client].wants(method):
                    client.send(message)
            return
        ident = message.get("id")
        if not isinstance(ident, int):
            return
        waiting = self._pending.pop(ident, None)
        if ident in self._pages.opening and message.get("type") == "success":
            created = (message.get("result") or {}).get("context")
            self._close_past_bound(created if self._pages.opened(created) else None)
        asked = self._forget(ident)
        if asked is not None:
            self._subscribed(waiting, *asked, message)
        if isinstance(waiting, asyncio.Future):
            if not waiting.done():
                waiting.set_result(message)
        elif waiting is None:
            return
        else:
            self._answer(message, waiting)

    def _close_past_bound(self, context: str | None) -> None:
        if context is not None:
            log.info("a page over attach_max_targets was closed")
            self._send_own("browsingContext.close", {"context": context})

    def _subscribed(
        self, waiting: object, method: str, params: dict[str, Any], answer: dict[str, Any]
    ) -> None:
        """A client's (un)subscribe answered (or given up on). By event names, an unsubscribe
        may remove the hub's subscription: the hub subscribes again whatever the answer, and
        whether or not its client is still there to hear it."""
        if method == "session.unsubscribe" and params.get("events"):
            self._spawn(self._watch_pages_again())
        if answer.get("type") == "success" and isinstance(waiting, Waiting):
            subscriptions = self._subscriptions.get(waiting.client)
            if subscriptions is not None:
                subscriptions.answered(method, params, answer.get("result"))

    def _answer(self, message: dict[str, Any], waiting: Waiting) -> None:
        client = waiting.client
        client.pending -= 1
        made = undo(waiting.method, message.get("result"))
        if made is not None:
            if client.closed:
                self._send_own(*made)  # it left before its answer came
            else:
                self._made[client].append(made)
        if client.closed:
            return
        message["id"] = waiting.ident
        client.send(message)

    # ------------------------------------------------------------ downloads and the end

    async def _watch_downloads(self) -> None:
        """Over the lease's total or a file over its bound: no more downloads for the lease,
        and the offending files (and partial ones) are removed."""
        folder, limits = self._folder, self.limits
        while not self.gone.is_set():
            await asyncio.sleep(POLL_S)
            sizes = {e.name: e.size for e in await asyncio.to_thread(folder.entries)}
            over = [name for name, size in sizes.items() if size > limits.max_download_bytes]
            if not over and sum(sizes.values()) <= limits.max_downloads_bytes:
                continue
            if not self._denied:
                log.info("an attached client's downloads went over their bound: denied from now")
                self._denied = True
                denied = {"downloadBehavior": {"type": "denied"}}
                self._send_own("browser.setDownloadBehavior", denied)
            for name in over + [n for n in sizes if n.endswith(".part")]:
                await asyncio.to_thread(folder.remove, name)

    async def shutdown(self) -> None:
        """Close the connection (the browser's process is the session's to end)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.socket.close(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        self._folder.close()
