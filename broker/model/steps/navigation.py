"""Steps that navigate the page: to a URL, back and forward in its history, reloading it."""

from __future__ import annotations

from dataclasses import dataclass

from broker.common.urls import CanonicalUrl, UrlError, canonical
from broker.errors import FieldViolation
from broker.model.steps.base import Action, StepBounds, Target, step_kind
from broker.model.steps.checks import WAIT_UNTIL, check_choice, parse_url


@step_kind("goto", Target.PAGE, lingers=True, navigates=True)
@dataclass(frozen=True)
class Goto(Action):
    url: str
    wait_until: str = "load"

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        url = parse_url(f"{prefix}.url", self.url, out)
        check_choice(f"{prefix}.wait_until", self.wait_until, WAIT_UNTIL, out)
        if url is not None:
            _check_local_url(f"{prefix}.url", url, bounds, out)

    @property
    def href(self) -> str:
        """The URL the browser is sent to: the canonical form of the one judged in `validate`,
        so the browser opens exactly what was checked."""
        try:
            return canonical(self.url).href
        except UrlError:
            return self.url  # not validated (a unit test's fake): the browser refuses it too


def _check_local_url(
    field_name: str, url: CanonicalUrl, bounds: StepBounds, out: list[FieldViolation]
) -> None:
    """Schemes that reach no network, judged as the browser parses the URL: file: only where
    the operator allows it, and no about: page but about:blank."""
    if url.scheme == "file" and not bounds.allow_file_urls:
        out.append(FieldViolation(field_name, "file: URLs are not allowed on this broker"))
    elif url.scheme == "about" and url.path != "blank":
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
