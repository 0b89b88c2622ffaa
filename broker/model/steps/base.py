"""What every browser step shares, engine-neutral: the registry of step kinds, a Run's steps and
their outcomes, and the one pass that validates a step.

Each kind of step is declared once, beside its dataclass (navigation.py, input.py, reading.py,
waits.py, pages.py, storage.py), with `@step_kind`: its name on the wire, where it acts, and how
its failures and timeouts are treated. Its `validate` method checks its fields. The decoder, the
engines and the Run read these, never a list of step names of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypeVar

from broker.errors import FieldViolation
from broker.model.steps.checks import (
    check_json_arg,
    check_page_id,
    check_script,
    check_selector,
    check_selector_field,
)


class Target(StrEnum):
    """What a step acts on."""

    # The document of the page, or of an <iframe> of it (Step.frame_selector).
    FRAME = "frame"
    # The page as a whole: navigation, URL and response waits, screenshots, PDFs.
    PAGE = "page"
    # The lease's context and its pages (cookies, storage, listing and switching pages); a
    # step of this kind ignores Step.page_id.
    LEASE = "lease"


@dataclass(frozen=True)
class StepKind:
    """One kind of step, as every layer sees it."""

    name: str  # the field of the proto's Step.action oneof
    type: type[Action]
    target: Target
    # Its work can go on in the browser after the step timed out (a navigation still loading,
    # a script still running): a timeout resets the page. A wait for an element leaves no work
    # behind and keeps the page.
    lingers: bool = False
    # It navigates the page: a network failure is a NAVIGATION error.
    navigates: bool = False
    # It runs the caller's script: any error the browser reports is a SCRIPT_ERROR.
    runs_script: bool = False


# Every step kind by its name on the wire. The package's __init__ imports every module that
# declares one, so the table is complete wherever a step can be made.
KINDS_BY_NAME: dict[str, StepKind] = {}

A = TypeVar("A", bound="type[Action]")


def step_kind(
    name: str,
    target: Target,
    *,
    lingers: bool = False,
    navigates: bool = False,
    runs_script: bool = False,
) -> Callable[[A], A]:
    """Declares the dataclass it decorates as the step kind `name`."""

    def register(cls: A) -> A:
        if name in KINDS_BY_NAME:
            raise ValueError(f"two step kinds are named {name!r}")
        kind = StepKind(name, cls, target, lingers, navigates, runs_script)
        cls.kind = kind
        KINDS_BY_NAME[name] = kind
        return cls

    return register


@dataclass(frozen=True)
class StepBounds:
    """What the broker allows that a step's own fields cannot say."""

    max_upload_bytes: int  # uploaded files of one set_input_files step, in all
    allow_file_urls: bool  # goto may open file: URLs


@dataclass(frozen=True)
class Action:
    """What a step does; each kind is a frozen dataclass declared with `@step_kind`."""

    kind: ClassVar[StepKind]

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        """Appends every violation of this action's fields, with paths under `prefix`
        (`steps[2].goto`). An action without fields has none."""


@dataclass(frozen=True)
class ElementAction(Action):
    """An action on the first element `selector` matches, with no other fields."""

    selector: str

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)


@dataclass(frozen=True)
class ScriptAction(Action):
    """An action that runs a JavaScript expression or function, with an optional JSON
    argument."""

    expression: str
    arg_json: str = ""

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_script(f"{prefix}.expression", self.expression, out)
        check_json_arg(f"{prefix}.arg_json", self.arg_json, out)


def kind_of(action: Action) -> StepKind:
    return type(action).kind


@dataclass(frozen=True)
class Step:
    action: Action
    timeout_s: float  # 0: the broker default
    page_id: str = ""  # the lease's page it acts in; empty: the current page
    frame_selector: str = ""  # an <iframe> of that page whose document it acts in

    @property
    def kind(self) -> StepKind:
        return kind_of(self.action)

    @property
    def name(self) -> str:
        return self.kind.name


def validate_step(prefix: str, step: Step, bounds: StepBounds) -> list[FieldViolation]:
    """Every violation of one step, with field paths like `steps[2].goto.url`: its action's
    fields, the page it names, and a frame only where the step acts in one."""
    kind = step.kind
    out: list[FieldViolation] = []
    step.action.validate(f"{prefix}.{kind.name}", bounds, out)
    if step.page_id:
        check_page_id(f"{prefix}.page_id", step.page_id, out)
    if step.frame_selector:
        if kind.target is Target.FRAME:
            check_selector_field(f"{prefix}.frame_selector", step.frame_selector, out)
        else:
            out.append(FieldViolation(f"{prefix}.frame_selector", f"not for {kind.name}"))
    return out


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


@dataclass(frozen=True)
class PageInfo:
    """One open page of a lease, as list_pages reports it."""

    id: str
    url: str
    title: str
    current: bool
    opener_id: str = ""


@dataclass(frozen=True)
class PageEvent:
    """What a page said while a step ran: a console error or warning, or an uncaught error."""

    kind: str  # "console.error", "console.warning" or "page.error"
    text: str
    page_id: str


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
