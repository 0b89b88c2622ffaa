"""Steps that read the page: a script's value, its HTML, an element's text or attribute, an
image or PDF of it, a file it downloads."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import FieldViolation
from broker.model.steps.base import (
    Action,
    ElementAction,
    ScriptAction,
    StepBounds,
    Target,
    step_kind,
)
from broker.model.steps.checks import check_not_blank, check_selector


@step_kind("evaluate", Target.FRAME, lingers=True, runs_script=True)
@dataclass(frozen=True)
class Evaluate(ScriptAction):
    pass


@step_kind("get_content", Target.FRAME, lingers=True)
@dataclass(frozen=True)
class GetContent(Action):
    pass


@step_kind("get_text", Target.FRAME, lingers=True)
@dataclass(frozen=True)
class GetText(ElementAction):
    pass


@step_kind("get_attribute", Target.FRAME)
@dataclass(frozen=True)
class GetAttribute(Action):
    selector: str
    name: str

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        check_not_blank(f"{prefix}.name", self.name, out)


@step_kind("screenshot", Target.PAGE, lingers=True)
@dataclass(frozen=True)
class Screenshot(Action):
    full_page: bool = False


@step_kind("pdf", Target.PAGE, lingers=True)
@dataclass(frozen=True)
class Pdf(Action):
    pass


@step_kind("download", Target.FRAME, lingers=True)
@dataclass(frozen=True)
class Download(ElementAction):
    pass
