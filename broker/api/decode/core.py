"""Requests to domain objects, validating every field on the way in (each bad field named)."""

from __future__ import annotations

import re

from google.protobuf.duration_pb2 import Duration

from broker.api.decode.extra import more_action, page_shaping
from broker.egress.policy import METADATA_HEADERS
from broker.errors import FieldViolation, InvalidArgument
from broker.leases.lease import LeaseSpec
from broker.leases.tenants import OPERATOR, Tenant
from broker.model.options import (
    CAMOUFOX_OS_NAMES,
    CamoufoxOptions,
    ContextOptions,
    EngineName,
    Isolation,
    ProxySettings,
    Viewport,
)
from broker.model.steps.base import (
    Action,
    Click,
    Evaluate,
    Fill,
    GetAttribute,
    GetContent,
    GetText,
    Goto,
    OnCancel,
    Pdf,
    Press,
    RunOptions,
    Screenshot,
    Step,
    WaitForLoadState,
    WaitForSelector,
    validate_action,
)
from broker.model.steps.checks import check_selector
from broker.model.steps.extra import PAGE_LEVEL, check_page_id
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

MAX_LABELS = 16
# Headers a lease may not add to every request: cloud metadata services trust them, and the
# proxy hop must not be steered.
FORBIDDEN_HEADERS = METADATA_HEADERS | {"proxy-authorization", "proxy-connection", "host"}
MAX_HEADERS = 64
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")

ENGINE_FROM_PB = {
    pb.ENGINE_CHROMIUM: EngineName.CHROMIUM,
    pb.ENGINE_FIREFOX: EngineName.FIREFOX,
    pb.ENGINE_CAMOUFOX: EngineName.CAMOUFOX,
}
ISOLATION_FROM_PB = {
    pb.ISOLATION_CONTEXT: Isolation.CONTEXT,
    pb.ISOLATION_BROWSER: Isolation.BROWSER,
}


def seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _bounded_duration(
    field_name: str, value: Duration, default_s: float, max_s: float, out: list[FieldViolation]
) -> float:
    if value.seconds < 0 or value.nanos < 0:
        out.append(FieldViolation(field_name, "must not be negative"))
        return default_s
    value_s = seconds(value)
    if value_s == 0:
        return default_s
    if value_s > max_s:
        out.append(FieldViolation(field_name, f"{value_s:g}s exceeds the maximum of {max_s:g}s"))
    elif value_s < 1:
        out.append(FieldViolation(field_name, f"{value_s:g}s is below the minimum of 1s"))
    return value_s


def lease_spec(
    request: pb.AcquireRequest, settings: Settings, tenant: Tenant = OPERATOR
) -> LeaseSpec:
    out: list[FieldViolation] = []
    if request.engine == pb.ENGINE_UNSPECIFIED:
        engine = settings.default_engine
    elif request.engine in ENGINE_FROM_PB:
        engine = ENGINE_FROM_PB[request.engine]
    else:
        out.append(FieldViolation("engine", f"unknown engine value {request.engine}"))
        engine = settings.default_engine
    if request.isolation == pb.ISOLATION_UNSPECIFIED:
        isolation = settings.default_isolation
    elif request.isolation in ISOLATION_FROM_PB:
        isolation = ISOLATION_FROM_PB[request.isolation]
    else:
        out.append(FieldViolation("isolation", f"unknown isolation value {request.isolation}"))
        isolation = settings.default_isolation
    ttl_s = _bounded_duration("ttl", request.ttl, settings.default_ttl_s, settings.max_ttl_s, out)
    idle_s = _bounded_duration(
        "idle_timeout",
        request.idle_timeout,
        settings.default_idle_timeout_s,
        settings.max_idle_timeout_s,
        out,
    )
    context = _context_options(request.context, settings, out)
    camoufox = None
    if request.HasField("camoufox"):
        camoufox = _camoufox_options(request.camoufox, out)
        if engine is not EngineName.CAMOUFOX:
            out.append(
                FieldViolation(
                    "camoufox", f"camoufox options need engine camoufox, not {engine.value}"
                )
            )
        # A fingerprint is drawn for a whole browser process: the options need one of their own.
        if request.isolation == pb.ISOLATION_UNSPECIFIED:
            isolation = Isolation.BROWSER
        elif isolation is not Isolation.BROWSER:
            out.append(
                FieldViolation(
                    "isolation",
                    "camoufox options need ISOLATION_BROWSER (a fingerprint belongs to a browser)",
                )
            )
    if len(request.labels) > MAX_LABELS:
        out.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
    for key, value in request.labels.items():
        if not _LABEL_KEY.match(key):
            out.append(
                FieldViolation(f"labels[{key[:64]!r}]", "key must be 1-63 of [A-Za-z0-9._/-]")
            )
        if len(value) > 256:
            out.append(FieldViolation(f"labels[{key[:64]!r}]", "value longer than 256 characters"))
    if out:
        raise InvalidArgument(out)
    return LeaseSpec(
        engine=engine,
        isolation=isolation,
        ttl_s=ttl_s,
        idle_timeout_s=idle_s,
        context=context,
        labels=tuple(sorted(request.labels.items())),
        camoufox=camoufox,
        tenant=tenant,
    )


def _context_options(
    msg: pb.ContextOptions, settings: Settings, out: list[FieldViolation]
) -> ContextOptions:
    viewport = None
    if msg.HasField("viewport"):
        w, h = msg.viewport.width, msg.viewport.height
        if not (1 <= w <= 10_000 and 1 <= h <= 10_000):
            out.append(FieldViolation("context.viewport", f"{w}x{h} is outside 1..10000"))
        viewport = Viewport(w, h)
    if len(msg.user_agent) > 1024:
        out.append(FieldViolation("context.user_agent", "longer than 1024 characters"))
    if msg.locale and not re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", msg.locale):
        out.append(FieldViolation("context.locale", f"{msg.locale!r} is not a BCP 47 tag"))
    if msg.timezone_id and not _valid_timezone(msg.timezone_id):
        out.append(
            FieldViolation("context.timezone_id", f"{msg.timezone_id!r} is not an IANA zone")
        )
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
    proxy = None
    if msg.HasField("proxy") and not settings.allow_client_proxies:
        out.append(
            FieldViolation(
                "context.proxy",
                "this broker sends page traffic through its egress policy; client proxies are "
                "off (allow_client_proxies)",
            )
        )
    if msg.HasField("proxy"):
        for key, limit in (("username", 256), ("password", 1024), ("bypass", 1024)):
            if len(getattr(msg.proxy, key)) > limit:
                out.append(
                    FieldViolation(f"context.proxy.{key}", f"longer than {limit} characters")
                )
        if not re.fullmatch(r"(https?|socks5)://[^\s/]+(:\d+)?/?", msg.proxy.server):
            out.append(
                FieldViolation(
                    "context.proxy.server", f"{msg.proxy.server!r} is not scheme://host:port"
                )
            )
        proxy = ProxySettings(
            msg.proxy.server, msg.proxy.username, msg.proxy.password, msg.proxy.bypass
        )
    shaping = page_shaping(msg, settings.max_storage_state_bytes, out)
    return ContextOptions(
        viewport=viewport,
        user_agent=msg.user_agent,
        locale=msg.locale,
        timezone_id=msg.timezone_id,
        extra_http_headers=tuple(sorted(msg.extra_http_headers.items())),
        proxy=proxy,
        ignore_https_errors=msg.ignore_https_errors,
        java_script_disabled=msg.java_script_disabled,
        storage_state=shaping.storage_state,
        block_resource_types=shaping.block_resource_types,
        block_url_patterns=shaping.block_url_patterns,
        color_scheme=shaping.color_scheme,
        media=shaping.media,
        geolocation=shaping.geolocation,
        permissions=shaping.permissions,
        trace=msg.trace,
    )


MAX_CAMOUFOX_LOCALES = 8
MAX_HUMANIZE_S = 10.0
_BCP47 = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


def _camoufox_options(msg: pb.CamoufoxOptions, out: list[FieldViolation]) -> CamoufoxOptions:
    for i, name in enumerate(msg.os):
        if name not in CAMOUFOX_OS_NAMES:
            out.append(
                FieldViolation(
                    f"camoufox.os[{i}]",
                    f"{name[:32]!r} is not one of {', '.join(CAMOUFOX_OS_NAMES)}",
                )
            )
        elif name in msg.os[:i]:
            out.append(FieldViolation(f"camoufox.os[{i}]", f"{name!r} is listed twice"))
    humanize_max_s = 0.0
    if msg.HasField("humanize_max"):
        if msg.humanize_max.seconds < 0 or msg.humanize_max.nanos < 0:
            out.append(FieldViolation("camoufox.humanize_max", "must not be negative"))
        else:
            humanize_max_s = seconds(msg.humanize_max)
            if humanize_max_s > MAX_HUMANIZE_S:
                out.append(
                    FieldViolation(
                        "camoufox.humanize_max",
                        f"{humanize_max_s:g}s exceeds the maximum of {MAX_HUMANIZE_S:g}s",
                    )
                )
            elif humanize_max_s and not msg.humanize:
                out.append(FieldViolation("camoufox.humanize_max", "set only with humanize"))
    if len(msg.locales) > MAX_CAMOUFOX_LOCALES:
        out.append(FieldViolation("camoufox.locales", f"at most {MAX_CAMOUFOX_LOCALES} locales"))
    for i, locale in enumerate(msg.locales):
        if not _BCP47.fullmatch(locale):
            out.append(
                FieldViolation(f"camoufox.locales[{i}]", f"{locale[:32]!r} is not a BCP 47 tag")
            )
    window = None
    if msg.HasField("window"):
        w, h = msg.window.width, msg.window.height
        if not (1 <= w <= 10_000 and 1 <= h <= 10_000):
            out.append(FieldViolation("camoufox.window", f"{w}x{h} is outside 1..10000"))
        window = Viewport(w, h)
    return CamoufoxOptions(
        os=tuple(msg.os),
        humanize=msg.humanize,
        humanize_max_s=humanize_max_s,
        block_images=msg.block_images,
        block_webrtc=msg.block_webrtc,
        block_webgl=msg.block_webgl,
        geoip=msg.geoip,
        locales=tuple(msg.locales),
        window=window,
    )


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _action(step: pb.Step) -> Action | None:
    kind = step.WhichOneof("action")
    if kind == "goto":
        return Goto(step.goto.url, step.goto.wait_until or "load")
    if kind == "click":
        return Click(step.click.selector)
    if kind == "fill":
        return Fill(step.fill.selector, step.fill.value)
    if kind == "press":
        return Press(step.press.selector, step.press.key)
    if kind == "wait_for_selector":
        return WaitForSelector(
            step.wait_for_selector.selector, step.wait_for_selector.state or "visible"
        )
    if kind == "wait_for_load_state":
        return WaitForLoadState(step.wait_for_load_state.state or "load")
    if kind == "evaluate":
        return Evaluate(step.evaluate.expression, step.evaluate.arg_json)
    if kind == "get_content":
        return GetContent()
    if kind == "get_text":
        return GetText(step.get_text.selector)
    if kind == "get_attribute":
        return GetAttribute(step.get_attribute.selector, step.get_attribute.name)
    if kind == "screenshot":
        return Screenshot(step.screenshot.full_page)
    if kind == "pdf":
        return Pdf()
    return more_action(step, kind)


def run_options(request: pb.RunRequest, settings: Settings) -> RunOptions:
    out: list[FieldViolation] = []
    out += lease_ref_violations(request.lease_id, request.token)
    if not request.steps:
        out.append(FieldViolation("steps", "must hold at least one step"))
    if len(request.steps) > settings.max_steps_per_run:
        out.append(
            FieldViolation(
                "steps",
                f"{len(request.steps)} steps exceed the limit of {settings.max_steps_per_run}",
            )
        )
    steps: list[Step] = []
    for i, step_pb in enumerate(request.steps):
        action = _action(step_pb)
        if action is None:
            out.append(
                FieldViolation(f"steps[{i}]", "no action set (unknown or missing step kind)")
            )
            continue
        name = step_pb.WhichOneof("action")
        out.extend(validate_action(f"steps[{i}].{name}", action, settings.max_upload_bytes))
        if isinstance(action, Goto):
            out.extend(_goto_policy(f"steps[{i}].{name}.url", action.url, settings))
        timeout_s = _bounded_duration(
            f"steps[{i}].timeout", step_pb.timeout, 0.0, settings.max_run_timeout_s, out
        )
        if step_pb.page_id:
            check_page_id(f"steps[{i}].page_id", step_pb.page_id, out)
        if step_pb.frame_selector:
            if name in PAGE_LEVEL:
                out.append(FieldViolation(f"steps[{i}].frame_selector", f"not for {name}"))
            else:
                bad: list[FieldViolation] = []
                check_selector("", step_pb.frame_selector, bad)
                field_name = f"steps[{i}].frame_selector"
                out += [FieldViolation(field_name, v.description) for v in bad]
        steps.append(Step(action, timeout_s, step_pb.page_id, step_pb.frame_selector))
    if request.on_cancel not in (
        pb.ON_CANCEL_UNSPECIFIED,
        pb.ON_CANCEL_KEEP_LEASE,
        pb.ON_CANCEL_RELEASE_LEASE,
    ):
        out.append(FieldViolation("on_cancel", f"unknown value {request.on_cancel}"))
    if out:
        raise InvalidArgument(out)
    on_cancel = (
        OnCancel.RELEASE_LEASE
        if request.on_cancel == pb.ON_CANCEL_RELEASE_LEASE
        else OnCancel.KEEP_LEASE
    )
    return RunOptions(tuple(steps), on_cancel, request.continue_on_error)


def _goto_policy(field_name: str, url: str, settings: Settings) -> list[FieldViolation]:
    """Schemes that reach no network: file: only where the operator allows it, about:blank."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "file" and not settings.allow_file_urls:
        return [FieldViolation(field_name, "file: URLs are not allowed on this broker")]
    if scheme == "about" and rest.split("#", 1)[0].split("?", 1)[0] != "blank":
        return [FieldViolation(field_name, "the only about: URL allowed is about:blank")]
    return []


def check_lease_ref(lease_id: str, token: str) -> None:
    out = lease_ref_violations(lease_id, token)
    if out:
        raise InvalidArgument(out)


def lease_ref_violations(lease_id: str, token: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not lease_id:
        out.append(FieldViolation("lease_id", "must not be empty"))
    elif len(lease_id) > 128:
        out.append(FieldViolation("lease_id", "longer than 128 characters"))
    if not token:
        out.append(FieldViolation("token", "must not be empty"))
    elif len(token) > 256:
        out.append(FieldViolation("token", "longer than 256 characters"))
    return out
