"""A Run's steps to RunOptions: each step's action is decoded by its kind, looked up by the
name of the proto's Step.action oneof field, and validated in one pass by the model.

Most kinds decode generically: the proto message's fields are copied into the same-named
fields of the kind's dataclass (an empty string means the dataclass's default, a repeated field
becomes a tuple, a Duration seconds). A kind whose shape differs has a decoder in EXPLICIT.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor

from broker.api.decode.durations import bounded_duration, seconds
from broker.api.decode.leases import lease_ref_violations
from broker.errors import FieldViolation, InvalidArgument
from broker.model.steps.base import (
    KINDS_BY_NAME,
    Action,
    OnCancel,
    RunOptions,
    Step,
    StepBounds,
    StepKind,
    validate_step,
)
from broker.model.steps.input import InputFile, SetInputFiles, Type
from broker.model.steps.storage import AddCookies, Cookie
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

Decoder = Callable[[Any], Action]  # the oneof field's message to the kind's action
_DURATION = "google.protobuf.Duration"
# The message of each field of the proto's Step.action oneof, by the field's name.
ACTION_MESSAGES: dict[str, Descriptor] = {
    f.name: f.message_type
    for f in pb.Step.DESCRIPTOR.oneofs_by_name["action"].fields
    if f.message_type is not None
}


def _type(msg: pb.Type) -> Type:
    return Type(msg.selector, msg.text, seconds(msg.delay))


def _set_input_files(msg: pb.SetInputFiles) -> SetInputFiles:
    files = tuple(InputFile(f.name, f.mime_type, f.data) for f in msg.files)
    return SetInputFiles(msg.selector, files)


def _add_cookies(msg: pb.AddCookies) -> AddCookies:
    return AddCookies(tuple(_cookie(c) for c in msg.cookies))


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


EXPLICIT: dict[str, Decoder] = {
    "type": _type,
    "set_input_files": _set_input_files,
    "add_cookies": _add_cookies,
}


def generic_misfits(kind: StepKind, message: Descriptor) -> list[str]:
    """Why `message` cannot be copied into `kind`'s dataclass field by field (none: it can)."""
    ours = {f.name for f in dataclasses.fields(kind.type)}
    theirs = set(message.fields_by_name)
    misfits = [f"{kind.name}.{n}: not in the proto" for n in sorted(ours - theirs)]
    misfits += [f"{kind.name}.{n}: not in the dataclass" for n in sorted(theirs - ours)]
    for name in sorted(ours & theirs):
        field = message.fields_by_name[name]
        if field.message_type is not None and (
            field.is_repeated or field.message_type.full_name != _DURATION
        ):
            misfits.append(f"{kind.name}.{name}: a message field, copied by no rule")
    return misfits


def _generic(kind: StepKind, message: Descriptor) -> Decoder:
    misfits = generic_misfits(kind, message)
    if misfits:
        raise TypeError(f"step {kind.name!r} needs a decoder in EXPLICIT: {'; '.join(misfits)}")
    converters: list[tuple[str, Callable[[Any], Any], bool]] = []
    for f in dataclasses.fields(kind.type):
        proto_field = message.fields_by_name[f.name]
        if proto_field.message_type is not None:
            convert: Callable[[Any], Any] = seconds
        elif proto_field.is_repeated:
            convert = tuple
        else:
            convert = _same
        # proto3 cannot tell an empty string from an unset one: both mean the default.
        empty_is_default = proto_field.type == proto_field.TYPE_STRING and (
            f.default is not dataclasses.MISSING
        )
        converters.append((f.name, convert, empty_is_default))
    make: Callable[..., Action] = kind.type

    def decode(msg: Any) -> Action:
        values: dict[str, Any] = {}
        for name, convert, empty_is_default in converters:
            value = getattr(msg, name)
            if not (empty_is_default and value == ""):
                values[name] = convert(value)
        return make(**values)

    return decode


def _same(value: Any) -> Any:
    return value


def _decoders() -> dict[str, Decoder]:
    decoders: dict[str, Decoder] = {}
    for name, kind in KINDS_BY_NAME.items():
        message = ACTION_MESSAGES.get(name)
        if message is None:
            raise TypeError(f"step {name!r} is not a field of the proto's Step.action")
        decoders[name] = EXPLICIT.get(name) or _generic(kind, message)
    return decoders


# Every registered step kind's decoder, by the oneof field's name.
DECODERS = _decoders()


# A Run larger than this is decoded in a worker thread: its JSON arguments alone may be
# max_message_bytes to parse and check, which must not hold the event loop.
INLINE_DECODE_BYTES = 64 * 1024


async def run_options_off_loop(request: pb.RunRequest, settings: Settings) -> RunOptions:
    if request.ByteSize() <= INLINE_DECODE_BYTES:
        return run_options(request, settings)
    return await asyncio.to_thread(run_options, request, settings)


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
    bounds = StepBounds(settings.max_upload_bytes, settings.allow_file_urls)
    steps: list[Step] = []
    for i, step_pb in enumerate(request.steps):
        name = step_pb.WhichOneof("action")
        decoder = DECODERS.get(name) if name else None
        if name is None or decoder is None:
            out.append(
                FieldViolation(f"steps[{i}]", "no action set (unknown or missing step kind)")
            )
            continue
        action = decoder(getattr(step_pb, name))
        timeout_s = bounded_duration(
            f"steps[{i}].timeout", step_pb.timeout, 0.0, settings.max_run_timeout_s, out
        )
        step = Step(action, timeout_s, step_pb.page_id, step_pb.frame_selector)
        out += validate_step(f"steps[{i}]", step, bounds)
        steps.append(step)
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
