"""Browser steps a Run executes, engine-neutral, with the validation every request passes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from broker.errors import FieldViolation

MAX_URL_CHARS = 8 * 1024
MAX_SELECTOR_CHARS = 4 * 1024
MAX_SCRIPT_CHARS = 64 * 1024
MAX_VALUE_CHARS = 1024 * 1024
MAX_KEY_CHARS = 64
MAX_JSON_DEPTH = 64

URL_SCHEMES = frozenset({"http", "https", "file", "data", "about"})
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
}


@dataclass(frozen=True)
class Step:
    action: Action
    timeout_s: float  # 0: the broker default

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


def _check_selector(prefix: str, selector: str, out: list[FieldViolation]) -> None:
    field_name = f"{prefix}.selector"
    if not selector.strip():
        out.append(FieldViolation(field_name, "must not be empty"))
    elif len(selector) > MAX_SELECTOR_CHARS:
        out.append(FieldViolation(field_name, f"longer than {MAX_SELECTOR_CHARS} characters"))
    elif "\x00" in selector:
        out.append(FieldViolation(field_name, "contains a NUL character"))
    elif not _balanced(selector):
        out.append(FieldViolation(field_name, f"unbalanced brackets or quotes in {selector!r}"))


def _balanced(selector: str) -> bool:
    """Catches the common malformed selectors before they reach the browser."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in selector:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in closing and (not stack or stack.pop() != closing[ch]):
            return False
    return not stack and not quote


def _check_text(field_name: str, value: str, limit: int, out: list[FieldViolation]) -> None:
    if len(value) > limit:
        out.append(FieldViolation(field_name, f"longer than {limit} characters"))


def _check_choice(
    field_name: str, value: str, allowed: frozenset[str], out: list[FieldViolation]
) -> None:
    if value not in allowed:
        out.append(FieldViolation(field_name, f"{value!r} is not one of {sorted(allowed)}"))


def json_depth(text: str) -> int:
    """How deeply `text`'s arrays and objects nest (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def validate_url(field_name: str, url: str) -> FieldViolation | None:
    if not url:
        return FieldViolation(field_name, "must not be empty")
    if len(url) > MAX_URL_CHARS:
        return FieldViolation(field_name, f"longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        return FieldViolation(
            field_name,
            f"{url[:200]!r} is not an absolute URL with a scheme in {sorted(URL_SCHEMES)}",
        )
    if parts.scheme in {"http", "https"} and not parts.hostname:
        return FieldViolation(field_name, f"{url[:200]!r} has no host")
    return None


def validate_action(prefix: str, action: Action) -> list[FieldViolation]:
    """Every violation of one step's action, with field paths like `steps[2].goto.url`."""
    out: list[FieldViolation] = []
    match action:
        case Goto(url=url, wait_until=wait_until):
            bad_url = validate_url(f"{prefix}.url", url)
            if bad_url:
                out.append(bad_url)
            _check_choice(f"{prefix}.wait_until", wait_until, WAIT_UNTIL, out)
        case Click(selector=selector) | GetText(selector=selector):
            _check_selector(prefix, selector, out)
        case Fill(selector=selector, value=value):
            _check_selector(prefix, selector, out)
            _check_text(f"{prefix}.value", value, MAX_VALUE_CHARS, out)
        case Press(selector=selector, key=key):
            _check_selector(prefix, selector, out)
            if not key.strip():
                out.append(FieldViolation(f"{prefix}.key", "must not be empty"))
            _check_text(f"{prefix}.key", key, MAX_KEY_CHARS, out)
        case WaitForSelector(selector=selector, state=state):
            _check_selector(prefix, selector, out)
            _check_choice(f"{prefix}.state", state, SELECTOR_STATES, out)
        case WaitForLoadState(state=state):
            _check_choice(f"{prefix}.state", state, LOAD_STATES, out)
        case Evaluate(expression=expression, arg_json=arg_json):
            if not expression.strip():
                out.append(FieldViolation(f"{prefix}.expression", "must not be empty"))
            _check_text(f"{prefix}.expression", expression, MAX_SCRIPT_CHARS, out)
            if arg_json:
                _check_text(f"{prefix}.arg_json", arg_json, MAX_VALUE_CHARS, out)
                depth = json_depth(arg_json)
                if depth > MAX_JSON_DEPTH:
                    out.append(
                        FieldViolation(
                            f"{prefix}.arg_json", f"nested deeper than {MAX_JSON_DEPTH} levels"
                        )
                    )
                else:
                    try:
                        json.loads(arg_json)
                    except ValueError as exc:
                        out.append(
                            FieldViolation(f"{prefix}.arg_json", f"is not valid JSON: {exc}")
                        )
        case GetAttribute(selector=selector, name=name):
            _check_selector(prefix, selector, out)
            if not name.strip():
                out.append(FieldViolation(f"{prefix}.name", "must not be empty"))
        case GetContent() | Screenshot() | Pdf():
            pass
    return out
