"""Steps that navigate the page: to a URL, back and forward in its history, reloading it."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import FieldViolation
from broker.model.steps.base import Action, StepBounds, Target, step_kind
from broker.model.steps.checks import WAIT_UNTIL, check_choice, validate_url


@step_kind("goto", Target.PAGE, lingers=True, navigates=True)
@dataclass(frozen=True)
class Goto(Action):
    url: str
    wait_until: str = "load"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        bad_url = validate_url(f"{prefix}.url", self.url)
        if bad_url:
            out.append(bad_url)
        check_choice(f"{prefix}.wait_until", self.wait_until, WAIT_UNTIL, out)
        _check_local_url(f"{prefix}.url", self.url, bounds, out)


def _check_local_url(
    field_name: str, url: str, bounds: StepBounds, out: list[FieldViolation]
) -> None:
    """Schemes that reach no network: file: only where the operator allows it, about:blank."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "file" and not bounds.allow_file_urls:
        out.append(FieldViolation(field_name, "file: URLs are not allowed on this broker"))
    elif scheme == "about" and rest.split("#", 1)[0].split("?", 1)[0] != "blank":
        out.append(FieldViolation(field_name, "the only about: URL allowed is about:blank"))


@dataclass(frozen=True)
class HistoryStep(Action):
    """A navigation through the page's history, waiting as goto does."""

    wait_until: str = "load"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_choice(f"{prefix}.wait_until", self.wait_until, WAIT_UNTIL, out)


@step_kind("go_back", Target.PAGE, lingers=True, navigates=True)
@dataclass(frozen=True)
class GoBack(HistoryStep):
    pass


@step_kind("go_forward", Target.PAGE, lingers=True, navigates=True)
@dataclass(frozen=True)
class GoForward(HistoryStep):
    pass


@step_kind("reload", Target.PAGE, lingers=True, navigates=True)
@dataclass(frozen=True)
class Reload(HistoryStep):
    pass
