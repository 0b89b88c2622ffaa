"""Steps that wait: for an element, a load state, a URL, a response, a script's condition."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import FieldViolation
from broker.model.steps.base import Action, ScriptAction, StepBounds, Target, step_kind
from broker.model.steps.checks import WAIT_UNTIL, check_choice, check_glob, check_selector

LOAD_STATES = frozenset({"load", "domcontentloaded", "networkidle"})
SELECTOR_STATES = frozenset({"visible", "attached", "detached", "hidden"})


@step_kind("wait_for_selector", Target.FRAME)
@dataclass(frozen=True)
class WaitForSelector(Action):
    selector: str
    state: str = "visible"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        check_choice(f"{prefix}.state", self.state, SELECTOR_STATES, out)


@step_kind("wait_for_load_state", Target.FRAME, lingers=True)
@dataclass(frozen=True)
class WaitForLoadState(Action):
    state: str = "load"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_choice(f"{prefix}.state", self.state, LOAD_STATES, out)


@step_kind("wait_for_url", Target.PAGE)
@dataclass(frozen=True)
class WaitForUrl(Action):
    url: str  # a glob or the exact URL
    wait_until: str = "load"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_glob(f"{prefix}.url", self.url, out)
        check_choice(f"{prefix}.wait_until", self.wait_until, WAIT_UNTIL, out)


@step_kind("wait_for_response", Target.PAGE)
@dataclass(frozen=True)
class WaitForResponse(Action):
    url: str  # a glob

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_glob(f"{prefix}.url", self.url, out)


@step_kind("wait_for_function", Target.FRAME, lingers=True, runs_script=True)
@dataclass(frozen=True)
class WaitForFunction(ScriptAction):
    pass
