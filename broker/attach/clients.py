"""A client of a hub, as the hub sees it: where its messages go, what it owns, what it sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.attach.bounds import TokenBucket
from broker.attach.rules import ERROR_CODE


class Peer(Protocol):
    def deliver(self, text: str | bytes) -> None:
        """Queue one message (JSON text, maybe as UTF-8 bytes) for the client; never blocks."""
        ...


@dataclass(eq=False)
class HubClient:
    peer: Peer
    trusted: bool
    bucket: TokenBucket | None
    root: str = ""
    sessions: set[str] = field(default_factory=set)
    targets: dict[str, str] = field(default_factory=dict)  # its page sessions' targets
    pending: int = 0
    closed: bool = False
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused: int = 0
    streams: set[str] = field(default_factory=set)  # IO stream handles it was given

    def send(self, message: dict[str, Any] | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        self.messages_out += 1
        self.bytes_out += len(message)
        self.peer.deliver(message)


@dataclass(frozen=True)
class Waiting:
    """A client's command the browser has not answered yet."""

    client: HubClient
    ident: int  # the client's own id
    method: str
    sent_at: float
    session: str | None = None  # the session the client named


def error(ident: int, session: str | None, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"id": ident, "error": {"code": ERROR_CODE, "message": message}}
    if session is not None:
        error["sessionId"] = session
    return error


def attached_as_seen_by(client: HubClient, info: object) -> None:
    """A target's `attached`, as the client would see it alone with the browser: whether it has
    a session to it. The broker's own Playwright attaches to every page, and clients that wait
    for a new, unattached target (chromedp's popups) would never see one. The browser target
    stays attached: every client is, through its root session (Puppeteer finds it so)."""
    if isinstance(info, dict) and "attached" in info and info.get("type") != "browser":
        info["attached"] = info.get("targetId") in client.targets.values()
