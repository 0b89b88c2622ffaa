"""Browser steps a Run executes, engine-neutral, with the validation every request passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from broker.errors import FieldViolation
from broker.model.steps.checks import (
    MAX_SCRIPT_CHARS,
    MAX_SELECTOR_CHARS,
    MAX_URL_CHARS,
    MAX_VALUE_CHARS,
    URL_SCHEMES,
    check_choice,
    check_json_arg,
    check_script,
    check_selector,
    check_text,
    json_depth,
    validate_url,
)
from broker.model.steps.extra import (
    MORE_ACTION_NAMES,
    MoreAction,
    PageEvent,
    PageInfo,
    validate_more,
)

__all__ = [
    "MAX_SCRIPT_CHARS",
    "MAX_SELECTOR_CHARS",
    "MAX_URL_CHARS",
    "MAX_VALUE_CHARS",
    "URL_SCHEMES",
    "json_depth",
    "validate_url",
]

MAX_KEY_CHARS = 64
# Uploaded files of one set_input_files step, in all, unless the broker says otherwise.
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024
WAIT_UNTIL = frozenset({"load", "domcontentloaded", "networkidle", "commit"})
LOAD_STATES = frozenset({"load", "domcontentloaded", "networkidle"})
SELECTOR_STATES = frozenset({"visible", "attached", "detached", "hidden"})


@dataclass(frozen=True)
class Goto:
    url: str
    wait_until: str = "load"


@dataclass(frozen=True)
class Click:
    selector: str


@dataclass(frozen=True)
class Fill:
    selector: str
    value: str


@dataclass(frozen=True)
class Press:
    selector: str
    key: str


@dataclass(frozen=True)
class WaitForSelector:
    selector: str
    state: str = "visible"


@dataclass(frozen=True)
class WaitForLoadState:
    state: str = "load"


@dataclass(frozen=True)
class Evaluate:
    expression: str
    arg_json: str = ""


@dataclass(frozen=True)
class GetContent:
    pass


@dataclass(frozen=True)
class GetText:
    selector: str


@dataclass(frozen=True)
class GetAttribute:
    selector: str
    name: str


@dataclass(frozen=True)
class Screenshot:
    full_page: bool = False


@dataclass(frozen=True)
class Pdf:
    pass


Action = (
    Goto
    | Click
    | Fill
    | Press
    | WaitForSelector
    | WaitForLoadState
    | Evaluate
    | GetContent
    | GetText
    | GetAttribute
    | Screenshot
    | Pdf
    | MoreAction
)

ACTION_NAMES: dict[type[Action], str] = {
    Goto: "goto",
    Click: "click",
    Fill: "fill",
    Press: "press",
    WaitForSelector: "wait_for_selector",
    WaitForLoadState: "wait_for_load_state",
    Evaluate: "evaluate",
    GetContent: "get_content",
    GetText: "get_text",
    GetAttribute: "get_attribute",
    Screenshot: "screenshot",
    Pdf: "pdf",
    **MORE_ACTION_NAMES,
}


@dataclass(frozen=True)
class Step:
    action: Action
    timeout_s: float  # 0: the broker default
    page_id: str = ""  # the lease's page it acts in; empty: the current page
    frame_selector: str = ""  # an <iframe> of that page whose document it acts in

    @property
    def name(self) -> str:
        return ACTION_NAMES[type(self.action)]


class OnCancel(StrEnum):
    """What happens to the lease when its Run is cancelled or runs out of time."""

    KEEP_LEASE = "keep_lease"  # stop the work, open a fresh page, keep the lease
    RELEASE_LEASE = "release_lease"  # stop the work by ending the lease


@dataclass(frozen=True)
class RunOptions:
    steps: tuple[Step, ...]
    on_cancel: OnCancel = OnCancel.KEEP_LEASE
    continue_on_error: bool = False


class StepErrorKind(StrEnum):
    TIMEOUT = "timeout"
    SCRIPT_ERROR = "script_error"
    NAVIGATION = "navigation"
    SELECTOR = "selector"
    UNSUPPORTED = "unsupported"
    BROWSER = "browser"
    BLOCKED = "blocked"  # the egress policy refused a request the step needed
    TOO_LARGE = "too_large"  # the result would exceed the broker's bound


@dataclass
class StepOutcome:
    """What one step produced; exactly the fields its action fills are set."""

    index: int
    action: str
    ok: bool = True
    error_kind: StepErrorKind | None = None
    error_message: str = ""
    duration_s: float = 0.0
    url: str = ""
    http_status: int = 0
    text: str = ""
    found: bool = False
    json: str = ""
    data: bytes = b""
    page_id: str = ""  # the lease's current page after the step
    pages: list[PageInfo] = field(default_factory=list)  # list_pages
    # Console errors and warnings and uncaught errors of the lease's pages while the step ran
    # (bounded; the lease's span records them).
    page_events: list[PageEvent] = field(default_factory=list)


def validate_action(
    prefix: str, action: Action, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
) -> list[FieldViolation]:
    """Every violation of one step's action, with field paths like `steps[2].goto.url`."""
    out: list[FieldViolation] = []
    match action:
        case Goto(url=url, wait_until=wait_until):
            bad_url = validate_url(f"{prefix}.url", url)
            if bad_url:
                out.append(bad_url)
            check_choice(f"{prefix}.wait_until", wait_until, WAIT_UNTIL, out)
        case Click(selector=selector) | GetText(selector=selector):
            check_selector(prefix, selector, out)
        case Fill(selector=selector, value=value):
            check_selector(prefix, selector, out)
            check_text(f"{prefix}.value", value, MAX_VALUE_CHARS, out)
        case Press(selector=selector, key=key):
            check_selector(prefix, selector, out)
            if not key.strip():
                out.append(FieldViolation(f"{prefix}.key", "must not be empty"))
            check_text(f"{prefix}.key", key, MAX_KEY_CHARS, out)
        case WaitForSelector(selector=selector, state=state):
            check_selector(prefix, selector, out)
            check_choice(f"{prefix}.state", state, SELECTOR_STATES, out)
        case WaitForLoadState(state=state):
            check_choice(f"{prefix}.state", state, LOAD_STATES, out)
        case Evaluate(expression=expression, arg_json=arg_json):
            check_script(f"{prefix}.expression", expression, out)
            check_json_arg(f"{prefix}.arg_json", arg_json, out)
        case GetAttribute(selector=selector, name=name):
            check_selector(prefix, selector, out)
            if not name.strip():
                out.append(FieldViolation(f"{prefix}.name", "must not be empty"))
        case GetContent() | Screenshot() | Pdf():
            pass
        case _:
            out += validate_more(prefix, action, max_upload_bytes)
    return out
