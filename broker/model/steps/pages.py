"""Steps on the lease's pages: listing them, making one current, closing one, bringing one to
the front."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import FieldViolation
from broker.model.steps.base import Action, StepBounds, Target, step_kind
from broker.model.steps.checks import check_glob, check_page_id


@step_kind("list_pages", Target.LEASE)
@dataclass(frozen=True)
class ListPages(Action):
    pass


@step_kind("switch_page", Target.LEASE)
@dataclass(frozen=True)
class SwitchPage(Action):
    page_id: str = ""
    url: str = ""  # a glob

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        if bool(self.page_id) == bool(self.url):
            out.append(FieldViolation(prefix, "set exactly one of page_id and url"))
        elif self.page_id:
            check_page_id(f"{prefix}.page_id", self.page_id, out)
        else:
            check_glob(f"{prefix}.url", self.url, out)


@step_kind("close_page", Target.LEASE)
@dataclass(frozen=True)
class ClosePage(Action):
    page_id: str = ""

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        if self.page_id:
            check_page_id(f"{prefix}.page_id", self.page_id, out)


@step_kind("bring_to_front", Target.PAGE)
@dataclass(frozen=True)
class BringToFront(Action):
    pass
