"""Requests to domain objects for the steps beyond the basic ones and the context options that
shape a lease's pages (storage state, blocking, emulation); every bad field is named."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from broker.errors import FieldViolation
from broker.model.options import Geolocation
from broker.model.steps.checks import check_glob
from broker.model.steps.extra import (
    AddCookies,
    Check,
    ClearCookies,
    ClosePage,
    Cookie,
    Download,
    GetCookies,
    GoBack,
    GoForward,
    Hover,
    InputFile,
    ListPages,
    MoreAction,
    Reload,
    Scroll,
    SelectOption,
    SetInputFiles,
    StorageState,
    SwitchPage,
    Type,
    Uncheck,
    WaitForFunction,
    WaitForResponse,
    WaitForUrl,
)
from browserbroker.v1 import broker_pb2 as pb

RESOURCE_TYPES = frozenset(
    {
        "stylesheet",
        "image",
        "media",
        "font",
        "script",
        "texttrack",
        "xhr",
        "fetch",
        "eventsource",
        "websocket",
        "manifest",
        "other",
    }
)
MAX_BLOCK_PATTERNS = 64
COLOR_SCHEMES = frozenset({"light", "dark", "no-preference"})
MEDIA_TYPES = frozenset({"screen", "print"})
PERMISSIONS = frozenset(
    {
        "geolocation",
        "midi",
        "midi-sysex",
        "notifications",
        "camera",
        "microphone",
        "background-sync",
        "ambient-light-sensor",
        "accelerometer",
        "gyroscope",
        "magnetometer",
        "clipboard-read",
        "clipboard-write",
        "payment-handler",
        "storage-access",
        "local-fonts",
    }
)
MAX_STATE_COOKIES = 3000
MAX_STATE_ORIGINS = 200


def more_action(step: pb.Step, kind: str | None) -> MoreAction | None:
    """The action of a step kind added after the basic ones; None for any other kind."""
    match kind:
        case "hover":
            return Hover(step.hover.selector)
        case "check":
            return Check(step.check.selector)
        case "uncheck":
            return Uncheck(step.uncheck.selector)
        case "select_option":
            return SelectOption(step.select_option.selector, tuple(step.select_option.values))
        case "type":
            delay = step.type.delay
            return Type(step.type.selector, step.type.text, delay.seconds + delay.nanos / 1e9)
        case "scroll":
            return Scroll(step.scroll.selector, step.scroll.delta_x, step.scroll.delta_y)
        case "go_back":
            return GoBack(step.go_back.wait_until or "load")
        case "go_forward":
            return GoForward(step.go_forward.wait_until or "load")
        case "reload":
            return Reload(step.reload.wait_until or "load")
        case "wait_for_url":
            return WaitForUrl(step.wait_for_url.url, step.wait_for_url.wait_until or "load")
        case "wait_for_response":
            return WaitForResponse(step.wait_for_response.url)
        case "wait_for_function":
            msg = step.wait_for_function
            return WaitForFunction(msg.expression, msg.arg_json)
        case "set_input_files":
            files = tuple(
                InputFile(f.name, f.mime_type, f.data) for f in step.set_input_files.files
            )
            return SetInputFiles(step.set_input_files.selector, files)
        case "download":
            return Download(step.download.selector)
        case "list_pages":
            return ListPages()
        case "switch_page":
            return SwitchPage(step.switch_page.page_id, step.switch_page.url)
        case "close_page":
            return ClosePage(step.close_page.page_id)
        case "storage_state":
            return StorageState()
        case "get_cookies":
            return GetCookies(tuple(step.get_cookies.urls))
        case "add_cookies":
            return AddCookies(tuple(_cookie(c) for c in step.add_cookies.cookies))
        case "clear_cookies":
            return ClearCookies()
    return None


def _cookie(msg: pb.Cookie) -> Cookie:
    return Cookie(
        name=msg.name,
        value=msg.value,
        url=msg.url,
        domain=msg.domain,
        path=msg.path,
        expires=msg.expires,
        http_only=msg.http_only,
        secure=msg.secure,
        same_site=msg.same_site,
    )


@dataclass(frozen=True)
class PageShaping:
    """The context options that shape a lease's pages: where it starts, what it blocks, what
    it emulates."""

    storage_state: bytes = b""
    block_resource_types: tuple[str, ...] = ()
    block_url_patterns: tuple[str, ...] = ()
    color_scheme: str = ""
    media: str = ""
    geolocation: Geolocation | None = None
    permissions: tuple[str, ...] = ()


def page_shaping(
    msg: pb.ContextOptions, max_state_bytes: int, out: list[FieldViolation]
) -> PageShaping:
    for i, kind in enumerate(msg.block_resource_types):
        if kind not in RESOURCE_TYPES:
            out.append(
                FieldViolation(
                    f"context.block_resource_types[{i}]",
                    f"{kind[:32]!r} is not one of {', '.join(sorted(RESOURCE_TYPES))}",
                )
            )
    if len(msg.block_url_patterns) > MAX_BLOCK_PATTERNS:
        out.append(
            FieldViolation("context.block_url_patterns", f"at most {MAX_BLOCK_PATTERNS} patterns")
        )
    for i, pattern in enumerate(msg.block_url_patterns[:MAX_BLOCK_PATTERNS]):
        check_glob(f"context.block_url_patterns[{i}]", pattern, out)
    if msg.color_scheme and msg.color_scheme not in COLOR_SCHEMES:
        out.append(
            FieldViolation("context.color_scheme", f"not one of {', '.join(sorted(COLOR_SCHEMES))}")
        )
    if msg.media and msg.media not in MEDIA_TYPES:
        out.append(FieldViolation("context.media", "not one of print, screen"))
    geolocation = None
    if msg.HasField("geolocation"):
        g = msg.geolocation
        if not (-90 <= g.latitude <= 90 and -180 <= g.longitude <= 180 and g.accuracy >= 0):
            out.append(
                FieldViolation(
                    "context.geolocation",
                    "latitude -90..90, longitude -180..180 and accuracy >= 0",
                )
            )
        geolocation = Geolocation(g.latitude, g.longitude, g.accuracy)
    for i, name in enumerate(msg.permissions):
        if name not in PERMISSIONS:
            out.append(
                FieldViolation(f"context.permissions[{i}]", f"{name[:32]!r} is not a permission")
            )
    if msg.storage_state:
        _check_storage_state(msg.storage_state, max_state_bytes, out)
    return PageShaping(
        storage_state=msg.storage_state,
        block_resource_types=tuple(sorted(set(msg.block_resource_types))),
        block_url_patterns=tuple(msg.block_url_patterns),
        color_scheme=msg.color_scheme,
        media=msg.media,
        geolocation=geolocation,
        permissions=tuple(sorted(set(msg.permissions))),
    )


def _check_storage_state(data: bytes, limit: int, out: list[FieldViolation]) -> None:
    """The shape Playwright's storage_state has; a malformed one is refused before any launch."""
    name = "context.storage_state"
    if len(data) > limit:
        out.append(FieldViolation(name, f"{len(data)} bytes; the limit is {limit} (too large)"))
        return
    try:
        state = json.loads(data)
    except ValueError as exc:
        out.append(FieldViolation(name, f"is not valid JSON: {exc}"))
        return
    if not isinstance(state, dict):
        out.append(FieldViolation(name, "must be a JSON object with cookies and origins"))
        return
    cookies, origins = state.get("cookies", []), state.get("origins", [])
    if not isinstance(cookies, list) or len(cookies) > MAX_STATE_COOKIES:
        out.append(FieldViolation(f"{name}.cookies", f"a list of at most {MAX_STATE_COOKIES}"))
    elif not all(_is_cookie(c) for c in cookies):
        out.append(
            FieldViolation(f"{name}.cookies", "each needs string name, value, domain and path")
        )
    if not isinstance(origins, list) or len(origins) > MAX_STATE_ORIGINS:
        out.append(FieldViolation(f"{name}.origins", f"a list of at most {MAX_STATE_ORIGINS}"))
    elif not all(_is_origin(o) for o in origins):
        out.append(
            FieldViolation(f"{name}.origins", "each needs a string origin and a localStorage list")
        )


def _is_cookie(cookie: Any) -> bool:
    if not isinstance(cookie, dict):
        return False
    if not all(isinstance(cookie.get(k), str) for k in ("name", "value", "domain", "path")):
        return False
    expires = cookie.get("expires", -1)
    return isinstance(expires, (int, float)) and math.isfinite(expires)


def _is_origin(origin: Any) -> bool:
    if not isinstance(origin, dict) or not isinstance(origin.get("origin"), str):
        return False
    items = origin.get("localStorage", [])
    return isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("value"), str)
        for i in items
    )
