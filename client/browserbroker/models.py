"""Plain, typed results the SDK returns instead of raw protobuf messages."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, overload

from browserbroker.v1 import broker_pb2 as pb


class Engine(IntEnum):
    DEFAULT = pb.ENGINE_UNSPECIFIED
    CHROMIUM = pb.ENGINE_CHROMIUM
    FIREFOX = pb.ENGINE_FIREFOX
    CAMOUFOX = pb.ENGINE_CAMOUFOX


class Isolation(IntEnum):
    DEFAULT = pb.ISOLATION_UNSPECIFIED
    CONTEXT = pb.ISOLATION_CONTEXT
    BROWSER = pb.ISOLATION_BROWSER


class OnCancel(IntEnum):
    KEEP_LEASE = pb.ON_CANCEL_KEEP_LEASE
    RELEASE_LEASE = pb.ON_CANCEL_RELEASE_LEASE


class AttachProtocol(IntEnum):
    """The protocol of an attachable lease's connect URL (`client.lease(attach=...)`)."""

    CDP = pb.ATTACH_PROTOCOL_CDP  # Chromium: connect_over_cdp, puppeteer.connect, chromedp
    PLAYWRIGHT = pb.ATTACH_PROTOCOL_PLAYWRIGHT  # not served yet
    BIDI = pb.ATTACH_PROTOCOL_BIDI  # stock Firefox, attach-only (a Run is refused)


class OnDisconnect(IntEnum):
    """What an attachable lease does when its last attached client disconnects."""

    KEEP = pb.ON_DISCONNECT_KEEP  # lives on until its TTL, idle timeout or Release
    END = pb.ON_DISCONNECT_END  # ends (reason "client_disconnected")


def reason_name(reason: int) -> str:
    """`RELEASE_REASON_TTL_EXPIRED` -> "ttl_expired"."""
    return pb.ReleaseReason.Name(reason).removeprefix("RELEASE_REASON_").lower()  # type: ignore[arg-type]


@dataclass(frozen=True)
class PageInfo:
    """One open page of a lease (`steps.list_pages`)."""

    id: str
    url: str
    title: str
    current: bool
    opener_id: str


@dataclass(frozen=True)
class PageEvent:
    """A console error or warning, or an uncaught error, of a page while a step ran."""

    kind: str  # "console.error", "console.warning" or "page.error"
    text: str
    page_id: str


@dataclass(frozen=True)
class StepResult:
    index: int
    action: str
    ok: bool
    error_kind: str
    error_message: str
    duration_s: float
    url: str
    http_status: int
    text: str
    found: bool
    json: str
    data: bytes
    page_id: str = ""  # the lease's current page after the step
    pages: tuple[PageInfo, ...] = ()  # list_pages
    page_events: tuple[PageEvent, ...] = ()  # what the pages reported while the step ran

    @classmethod
    def from_pb(cls, msg: pb.StepResult) -> StepResult:
        kind = pb.StepErrorKind.Name(msg.error.kind).removeprefix("STEP_ERROR_KIND_").lower()
        return cls(
            index=msg.index,
            action=msg.action,
            ok=msg.ok,
            error_kind="" if msg.ok else kind,
            error_message=msg.error.message,
            duration_s=msg.duration.ToNanoseconds() / 1e9,
            url=msg.url,
            http_status=msg.http_status,
            text=msg.text,
            found=msg.found,
            json=msg.json,
            data=msg.data,
            page_id=msg.page_id,
            pages=tuple(PageInfo(p.id, p.url, p.title, p.current, p.opener_id) for p in msg.pages),
            page_events=tuple(PageEvent(e.kind, e.text, e.page_id) for e in msg.page_events),
        )

    @property
    def value(self) -> Any:
        """The decoded result of an `evaluate` step."""
        return json.loads(self.json) if self.json else None


class StepFailedError(Exception):
    def __init__(self, result: StepResult) -> None:
        super().__init__(
            f"step {result.index} ({result.action}) failed: {result.error_kind}: {result.error_message}"
        )
        self.result = result


class RunResult(Sequence[StepResult]):
    """The results of one Run, in step order."""

    def __init__(self, results: list[StepResult]) -> None:
        self._results = results

    @overload
    def __getitem__(self, index: int) -> StepResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[StepResult]: ...
    def __getitem__(self, index: int | slice) -> StepResult | Sequence[StepResult]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[StepResult]:
        return iter(self._results)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self._results)

    def raise_for_failure(self) -> RunResult:
        for result in self._results:
            if not result.ok:
                raise StepFailedError(result)
        return self


@dataclass(frozen=True)
class ReleaseResult:
    released_now: bool
    reason: str
    released_at: datetime

    @classmethod
    def from_pb(cls, msg: pb.ReleaseResponse) -> ReleaseResult:
        return cls(msg.released_now, reason_name(msg.reason), msg.released_at.ToDatetime())
