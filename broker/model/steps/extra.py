"""The steps real sites need beyond the basic ones: more input, history, waits on URLs, responses
and conditions, files in and out, the lease's pages, cookies and storage. Engine-neutral, with
the validation every request passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.errors import FieldViolation
from broker.model.steps.checks import (
    MAX_URL_CHARS,
    check_choice,
    check_glob,
    check_json_arg,
    check_script,
    check_selector,
    check_text,
    validate_url,
)

MAX_SELECT_VALUES = 64
MAX_TYPE_CHARS = 64 * 1024
MAX_TYPE_DELAY_S = 1.0
MAX_SCROLL_PX = 1_000_000
MAX_FILES = 16
MAX_FILE_NAME_CHARS = 255
MAX_MIME_CHARS = 255
MAX_PAGE_ID_CHARS = 64
MAX_COOKIE_URLS = 64
MAX_ADD_COOKIES = 1000
MAX_COOKIE_NAME_CHARS = 256
MAX_COOKIE_VALUE_CHARS = 4096
MAX_COOKIE_DOMAIN_CHARS = 256
SAME_SITE = frozenset({"", "Strict", "Lax", "None"})
HISTORY_WAIT_UNTIL = frozenset({"load", "domcontentloaded", "networkidle", "commit"})


@dataclass(frozen=True)
class Hover:
    selector: str


@dataclass(frozen=True)
class Check:
    selector: str


@dataclass(frozen=True)
class Uncheck:
    selector: str


@dataclass(frozen=True)
class SelectOption:
    selector: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Type:
    selector: str
    text: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Scroll:
    selector: str = ""  # into view; empty: by delta_x/delta_y
    delta_x: int = 0
    delta_y: int = 0


@dataclass(frozen=True)
class GoBack:
    wait_until: str = "load"


@dataclass(frozen=True)
class GoForward:
    wait_until: str = "load"


@dataclass(frozen=True)
class Reload:
    wait_until: str = "load"


@dataclass(frozen=True)
class WaitForUrl:
    url: str  # a glob or the exact URL
    wait_until: str = "load"


@dataclass(frozen=True)
class WaitForResponse:
    url: str  # a glob


@dataclass(frozen=True)
class WaitForFunction:
    expression: str
    arg_json: str = ""


@dataclass(frozen=True)
class InputFile:
    name: str
    mime_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class SetInputFiles:
    selector: str
    files: tuple[InputFile, ...]


@dataclass(frozen=True)
class Download:
    selector: str


@dataclass(frozen=True)
class ListPages:
    pass


@dataclass(frozen=True)
class SwitchPage:
    page_id: str = ""
    url: str = ""  # a glob


@dataclass(frozen=True)
class ClosePage:
    page_id: str = ""


@dataclass(frozen=True)
class StorageState:
    pass


@dataclass(frozen=True)
class GetCookies:
    urls: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class AddCookies:
    cookies: tuple[Cookie, ...]


@dataclass(frozen=True)
class ClearCookies:
    pass


MoreAction = (
    Hover
    | Check
    | Uncheck
    | SelectOption
    | Type
    | Scroll
    | GoBack
    | GoForward
    | Reload
    | WaitForUrl
    | WaitForResponse
    | WaitForFunction
    | SetInputFiles
    | Download
    | ListPages
    | SwitchPage
    | ClosePage
    | StorageState
    | GetCookies
    | AddCookies
    | ClearCookies
)

# (Keyed by type[Any]: the steps module merges it into its own table of every action.)
MORE_ACTION_NAMES: dict[type[Any], str] = {
    Hover: "hover",
    Check: "check",
    Uncheck: "uncheck",
    SelectOption: "select_option",
    Type: "type",
    Scroll: "scroll",
    GoBack: "go_back",
    GoForward: "go_forward",
    Reload: "reload",
    WaitForUrl: "wait_for_url",
    WaitForResponse: "wait_for_response",
    WaitForFunction: "wait_for_function",
    SetInputFiles: "set_input_files",
    Download: "download",
    ListPages: "list_pages",
    SwitchPage: "switch_page",
    ClosePage: "close_page",
    StorageState: "storage_state",
    GetCookies: "get_cookies",
    AddCookies: "add_cookies",
    ClearCookies: "clear_cookies",
}

# Steps that act on a page as a whole or on the context: a frame_selector means nothing to them.
PAGE_LEVEL = frozenset(
    {
        "goto",
        "go_back",
        "go_forward",
        "reload",
        "wait_for_url",
        "wait_for_response",
        "screenshot",
        "pdf",
        "list_pages",
        "switch_page",
        "close_page",
        "storage_state",
        "get_cookies",
        "add_cookies",
        "clear_cookies",
    }
)


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


def check_page_id(field_name: str, page_id: str, out: list[FieldViolation]) -> None:
    if len(page_id) > MAX_PAGE_ID_CHARS or not page_id.isprintable():
        out.append(FieldViolation(field_name, f"not a page id (1..{MAX_PAGE_ID_CHARS} characters)"))


def validate_more(prefix: str, action: MoreAction, max_upload_bytes: int) -> list[FieldViolation]:
    """Every violation of one of these steps' fields, with paths like `steps[2].hover.selector`."""
    out: list[FieldViolation] = []
    match action:
        case Hover(selector=s) | Check(selector=s) | Uncheck(selector=s) | Download(selector=s):
            check_selector(prefix, s, out)
        case SelectOption(selector=selector, values=values):
            check_selector(prefix, selector, out)
            if not 1 <= len(values) <= MAX_SELECT_VALUES:
                out.append(FieldViolation(f"{prefix}.values", f"1..{MAX_SELECT_VALUES} values"))
            for i, value in enumerate(values):
                check_text(f"{prefix}.values[{i}]", value, MAX_URL_CHARS, out)
        case Type(selector=selector, text=text, delay_s=delay_s):
            check_selector(prefix, selector, out)
            check_text(f"{prefix}.text", text, MAX_TYPE_CHARS, out)
            if not 0 <= delay_s <= MAX_TYPE_DELAY_S:
                out.append(
                    FieldViolation(f"{prefix}.delay", f"must be within 0..{MAX_TYPE_DELAY_S:g}s")
                )
        case Scroll(selector=selector, delta_x=dx, delta_y=dy):
            if selector:
                check_selector(prefix, selector, out)
            elif dx == 0 and dy == 0:
                out.append(FieldViolation(prefix, "set a selector or a non-zero delta"))
            for name, delta in (("delta_x", dx), ("delta_y", dy)):
                if abs(delta) > MAX_SCROLL_PX:
                    out.append(FieldViolation(f"{prefix}.{name}", f"beyond ±{MAX_SCROLL_PX}"))
        case GoBack(wait_until=w) | GoForward(wait_until=w) | Reload(wait_until=w):
            check_choice(f"{prefix}.wait_until", w, HISTORY_WAIT_UNTIL, out)
        case WaitForUrl(url=url, wait_until=wait_until):
            check_glob(f"{prefix}.url", url, out)
            check_choice(f"{prefix}.wait_until", wait_until, HISTORY_WAIT_UNTIL, out)
        case WaitForResponse(url=url):
            check_glob(f"{prefix}.url", url, out)
        case WaitForFunction(expression=expression, arg_json=arg_json):
            check_script(f"{prefix}.expression", expression, out)
            check_json_arg(f"{prefix}.arg_json", arg_json, out)
        case SetInputFiles(selector=selector, files=files):
            check_selector(prefix, selector, out)
            _check_files(prefix, files, max_upload_bytes, out)
        case SwitchPage(page_id=page_id, url=url):
            if bool(page_id) == bool(url):
                out.append(FieldViolation(prefix, "set exactly one of page_id and url"))
            elif page_id:
                check_page_id(f"{prefix}.page_id", page_id, out)
            else:
                check_glob(f"{prefix}.url", url, out)
        case ClosePage(page_id=page_id):
            if page_id:
                check_page_id(f"{prefix}.page_id", page_id, out)
        case GetCookies(urls=urls):
            if len(urls) > MAX_COOKIE_URLS:
                out.append(FieldViolation(f"{prefix}.urls", f"at most {MAX_COOKIE_URLS} URLs"))
            for i, url in enumerate(urls):
                _check_http_url(f"{prefix}.urls[{i}]", url, out)
        case AddCookies(cookies=cookies):
            if not 1 <= len(cookies) <= MAX_ADD_COOKIES:
                out.append(FieldViolation(f"{prefix}.cookies", f"1..{MAX_ADD_COOKIES} cookies"))
            for i, cookie in enumerate(cookies[:MAX_ADD_COOKIES]):
                _check_cookie(f"{prefix}.cookies[{i}]", cookie, out)
        case ListPages() | StorageState() | ClearCookies():
            pass
    return out


def _check_http_url(field_name: str, url: str, out: list[FieldViolation]) -> None:
    bad = validate_url(field_name, url)
    if bad is not None:
        out.append(bad)
    elif not url.startswith(("http://", "https://")):
        out.append(FieldViolation(field_name, "must be an http(s) URL"))


def _check_files(
    prefix: str, files: tuple[InputFile, ...], max_bytes: int, out: list[FieldViolation]
) -> None:
    if len(files) > MAX_FILES:
        out.append(FieldViolation(f"{prefix}.files", f"at most {MAX_FILES} files"))
    total = sum(len(f.data) for f in files)
    if total > max_bytes:
        out.append(
            FieldViolation(
                f"{prefix}.files", f"{total} bytes in all; the limit is {max_bytes} (too large)"
            )
        )
    for i, f in enumerate(files[:MAX_FILES]):
        name_field = f"{prefix}.files[{i}].name"
        if not 1 <= len(f.name) <= MAX_FILE_NAME_CHARS:
            out.append(FieldViolation(name_field, f"1..{MAX_FILE_NAME_CHARS} characters"))
        elif "/" in f.name or "\\" in f.name or f.name in {".", ".."} or "\x00" in f.name:
            out.append(FieldViolation(name_field, "must be a base name, without a path"))
        check_text(f"{prefix}.files[{i}].mime_type", f.mime_type, MAX_MIME_CHARS, out)


def _check_cookie(prefix: str, cookie: Cookie, out: list[FieldViolation]) -> None:
    if not 1 <= len(cookie.name) <= MAX_COOKIE_NAME_CHARS:
        out.append(FieldViolation(f"{prefix}.name", f"1..{MAX_COOKIE_NAME_CHARS} characters"))
    check_text(f"{prefix}.value", cookie.value, MAX_COOKIE_VALUE_CHARS, out)
    for name, value in (("name", cookie.name), ("value", cookie.value)):
        if any(ch in value for ch in ";\r\n\x00"):
            out.append(FieldViolation(f"{prefix}.{name}", "contains ';', a newline or NUL"))
    if cookie.url:
        if cookie.domain or cookie.path:
            out.append(FieldViolation(f"{prefix}.url", "set either url or domain and path"))
        _check_http_url(f"{prefix}.url", cookie.url, out)
    elif not cookie.domain or not cookie.path:
        out.append(FieldViolation(f"{prefix}.domain", "set either url or domain and path"))
    check_text(f"{prefix}.domain", cookie.domain, MAX_COOKIE_DOMAIN_CHARS, out)
    check_text(f"{prefix}.path", cookie.path, MAX_URL_CHARS, out)
    if cookie.expires < 0:
        out.append(FieldViolation(f"{prefix}.expires", "must not be negative"))
    check_choice(f"{prefix}.same_site", cookie.same_site, SAME_SITE, out)
