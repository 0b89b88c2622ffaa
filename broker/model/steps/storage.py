"""Steps on what the lease's context stores: its storage state and its cookies."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.errors import FieldViolation
from broker.model.steps.base import Action, StepBounds, Target, step_kind
from broker.model.steps.checks import MAX_URL_CHARS, check_choice, check_http_url, check_text

MAX_COOKIE_URLS = 64
MAX_ADD_COOKIES = 1000
MAX_COOKIE_NAME_CHARS = 256
MAX_COOKIE_VALUE_CHARS = 4096
MAX_COOKIE_DOMAIN_CHARS = 256
SAME_SITE = frozenset({"", "Strict", "Lax", "None"})


@step_kind("storage_state", Target.LEASE)
@dataclass(frozen=True)
class StorageState(Action):
    pass


@step_kind("get_cookies", Target.LEASE)
@dataclass(frozen=True)
class GetCookies(Action):
    urls: tuple[str, ...] = ()

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        if len(self.urls) > MAX_COOKIE_URLS:
            out.append(FieldViolation(f"{prefix}.urls", f"at most {MAX_COOKIE_URLS} URLs"))
        for i, url in enumerate(self.urls):
            check_http_url(f"{prefix}.urls[{i}]", url, out)


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str = field(repr=False)
    url: str = ""
    domain: str = ""
    path: str = ""
    expires: float = 0.0
    http_only: bool = False
    secure: bool = False
    same_site: str = ""

    def validate(self, prefix: str, out: list[FieldViolation]) -> None:
        if not 1 <= len(self.name) <= MAX_COOKIE_NAME_CHARS:
            out.append(FieldViolation(f"{prefix}.name", f"1..{MAX_COOKIE_NAME_CHARS} characters"))
        check_text(f"{prefix}.value", self.value, MAX_COOKIE_VALUE_CHARS, out)
        for name, value in (("name", self.name), ("value", self.value)):
            if any(ch in value for ch in ";\r\n\x00"):
                out.append(FieldViolation(f"{prefix}.{name}", "contains ';', a newline or NUL"))
        if self.url:
            if self.domain or self.path:
                out.append(FieldViolation(f"{prefix}.url", "set either url or domain and path"))
            check_http_url(f"{prefix}.url", self.url, out)
        elif not self.domain or not self.path:
            out.append(FieldViolation(f"{prefix}.domain", "set either url or domain and path"))
        check_text(f"{prefix}.domain", self.domain, MAX_COOKIE_DOMAIN_CHARS, out)
        check_text(f"{prefix}.path", self.path, MAX_URL_CHARS, out)
        if self.expires < 0:
            out.append(FieldViolation(f"{prefix}.expires", "must not be negative"))
        check_choice(f"{prefix}.same_site", self.same_site, SAME_SITE, out)


@step_kind("add_cookies", Target.LEASE)
@dataclass(frozen=True)
class AddCookies(Action):
    cookies: tuple[Cookie, ...]

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        if not 1 <= len(self.cookies) <= MAX_ADD_COOKIES:
            out.append(FieldViolation(f"{prefix}.cookies", f"1..{MAX_ADD_COOKIES} cookies"))
        for i, cookie in enumerate(self.cookies[:MAX_ADD_COOKIES]):
            cookie.validate(f"{prefix}.cookies[{i}]", out)


@step_kind("clear_cookies", Target.LEASE)
@dataclass(frozen=True)
class ClearCookies(Action):
    pass
