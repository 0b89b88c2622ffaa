"""An Acquire's context options to ContextOptions: the viewport and identity of its pages, its
headers and proxy, and what shapes its pages (where they start, what they block, what they
emulate). Every bad field is named."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from broker.common.urls import proxy_server
from broker.egress.policy import METADATA_HEADERS
from broker.errors import FieldViolation
from broker.model.options import ContextOptions, Geolocation, ProxySettings, Viewport
from broker.model.steps.checks import check_glob
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

# Headers a lease may not add to every request: cloud metadata services trust them, and the
# proxy hop must not be steered.
FORBIDDEN_HEADERS = METADATA_HEADERS | {"proxy-authorization", "proxy-connection", "host"}
MAX_HEADERS = 64
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_BCP47 = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MAX_WINDOW_PX = 10_000

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


def is_bcp47(tag: str) -> bool:
    """A language tag's shape (`en`, `de-CH`, `zh-Hant-TW`)."""
    return _BCP47.fullmatch(tag) is not None


def window_size(field_name: str, msg: pb.Viewport, out: list[FieldViolation]) -> Viewport:
    """A viewport or window size, 1..10000 pixels each way."""
    w, h = msg.width, msg.height
    if not (1 <= w <= MAX_WINDOW_PX and 1 <= h <= MAX_WINDOW_PX):
        out.append(FieldViolation(field_name, f"{w}x{h} is outside 1..{MAX_WINDOW_PX}"))
    return Viewport(w, h)


def context_options(
    msg: pb.ContextOptions, settings: Settings, out: list[FieldViolation]
) -> ContextOptions:
    viewport = (
        window_size("context.viewport", msg.viewport, out) if msg.HasField("viewport") else None
    )
    if len(msg.user_agent) > 1024:
        out.append(FieldViolation("context.user_agent", "longer than 1024 characters"))
    if msg.locale and not is_bcp47(msg.locale):
        out.append(FieldViolation("context.locale", f"{msg.locale!r} is not a BCP 47 tag"))
    if msg.timezone_id and not _valid_timezone(msg.timezone_id):
        out.append(
            FieldViolation("context.timezone_id", f"{msg.timezone_id!r} is not an IANA zone")
        )
    _check_headers(msg, out)
    proxy = _proxy(msg, settings, out)
    _check_blocking(msg, out)
    _check_emulation(msg, out)
    geolocation = _geolocation(msg, out)
    _check_permissions(msg, out)
    if msg.storage_state:
        _check_storage_state(msg.storage_state, settings.max_storage_state_bytes, out)
    return ContextOptions(
        viewport=viewport,
        user_agent=msg.user_agent,
        locale=msg.locale,
        timezone_id=msg.timezone_id,
        extra_http_headers=tuple(sorted(msg.extra_http_headers.items())),
        proxy=proxy,
        ignore_https_errors=msg.ignore_https_errors,
        java_script_disabled=msg.java_script_disabled,
        storage_state=msg.storage_state,
        block_resource_types=tuple(sorted(set(msg.block_resource_types))),
        block_url_patterns=tuple(msg.block_url_patterns),
        color_scheme=msg.color_scheme,
        media=msg.media,
        geolocation=geolocation,
        permissions=tuple(sorted(set(msg.permissions))),
        trace=msg.trace,
    )


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_headers(msg: pb.ContextOptions, out: list[FieldViolation]) -> None:
    if len(msg.extra_http_headers) > MAX_HEADERS:
        out.append(FieldViolation("context.extra_http_headers", f"at most {MAX_HEADERS} headers"))
    for name, value in msg.extra_http_headers.items():
        field_name = f"context.extra_http_headers[{name[:64]!r}]"
        if not _HEADER_NAME.match(name) or "\n" in value or "\r" in value or len(value) > 8192:
            out.append(FieldViolation(field_name, "invalid header"))
        elif name.lower() in FORBIDDEN_HEADERS:
            out.append(
                FieldViolation(
                    field_name,
                    "not allowed: cloud metadata services and proxies trust this header",
                )
            )


def _proxy(
    msg: pb.ContextOptions, settings: Settings, out: list[FieldViolation]
) -> ProxySettings | None:
    if not msg.HasField("proxy"):
        return None
    if not settings.allow_client_proxies:
        out.append(
            FieldViolation(
                "context.proxy",
                "this broker sends page traffic through its egress policy; client proxies are "
                "off (allow_client_proxies)",
            )
        )
    for key, limit in (("username", 256), ("password", 1024)):
        if len(getattr(msg.proxy, key)) > limit:
            out.append(FieldViolation(f"context.proxy.{key}", f"longer than {limit} characters"))
    if msg.proxy.bypass:
        # Hosts on a bypass list are reached directly, past the proxy the policy vetted.
        out.append(
            FieldViolation(
                "context.proxy.bypass",
                "not allowed: every request of the lease goes through its vetted proxy",
            )
        )
    server = proxy_server(msg.proxy.server)
    if server is None:
        out.append(
            FieldViolation(
                "context.proxy.server",
                f"{msg.proxy.server[:200]!r} is not scheme://host[:port] with scheme http, "
                "https or socks5",
            )
        )
    url = server.url if server is not None else ""
    return ProxySettings(url, msg.proxy.username, msg.proxy.password, "")


def _check_blocking(msg: pb.ContextOptions, out: list[FieldViolation]) -> None:
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


def _check_emulation(msg: pb.ContextOptions, out: list[FieldViolation]) -> None:
    if msg.color_scheme and msg.color_scheme not in COLOR_SCHEMES:
        out.append(
            FieldViolation("context.color_scheme", f"not one of {', '.join(sorted(COLOR_SCHEMES))}")
        )
    if msg.media and msg.media not in MEDIA_TYPES:
        out.append(FieldViolation("context.media", "not one of print, screen"))


def _geolocation(msg: pb.ContextOptions, out: list[FieldViolation]) -> Geolocation | None:
    if not msg.HasField("geolocation"):
        return None
    g = msg.geolocation
    if not (-90 <= g.latitude <= 90 and -180 <= g.longitude <= 180 and g.accuracy >= 0):
        out.append(
            FieldViolation(
                "context.geolocation", "latitude -90..90, longitude -180..180 and accuracy >= 0"
            )
        )
    return Geolocation(g.latitude, g.longitude, g.accuracy)


def _check_permissions(msg: pb.ContextOptions, out: list[FieldViolation]) -> None:
    for i, name in enumerate(msg.permissions):
        if name not in PERMISSIONS:
            out.append(
                FieldViolation(f"context.permissions[{i}]", f"{name[:32]!r} is not a permission")
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
