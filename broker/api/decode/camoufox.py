"""An Acquire's Camoufox options to CamoufoxOptions: the fingerprint's OS, humanized input,
what the browser blocks, its locales and window."""

from __future__ import annotations

from broker.api.decode.context import is_bcp47, window_size
from broker.api.decode.durations import seconds
from broker.errors import FieldViolation
from broker.model.options import CAMOUFOX_OS_NAMES, CamoufoxOptions
from browserbroker.v1 import broker_pb2 as pb

MAX_CAMOUFOX_LOCALES = 8
MAX_HUMANIZE_S = 10.0


def camoufox_options(msg: pb.CamoufoxOptions, out: list[FieldViolation]) -> CamoufoxOptions:
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
    humanize_max_s = _humanize_max(msg, out)
    if len(msg.locales) > MAX_CAMOUFOX_LOCALES:
        out.append(FieldViolation("camoufox.locales", f"at most {MAX_CAMOUFOX_LOCALES} locales"))
    for i, locale in enumerate(msg.locales):
        if not is_bcp47(locale):
            out.append(
                FieldViolation(f"camoufox.locales[{i}]", f"{locale[:32]!r} is not a BCP 47 tag")
            )
    window = window_size("camoufox.window", msg.window, out) if msg.HasField("window") else None
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


def _humanize_max(msg: pb.CamoufoxOptions, out: list[FieldViolation]) -> float:
    if not msg.HasField("humanize_max"):
        return 0.0
    if msg.humanize_max.seconds < 0 or msg.humanize_max.nanos < 0:
        out.append(FieldViolation("camoufox.humanize_max", "must not be negative"))
        return 0.0
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
    return humanize_max_s
