"""An Acquire to a LeaseSpec (engine, isolation, lifetimes, context, labels), and the lease
reference every later request carries. Every bad field is named."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from broker.api.decode.attach import attach_options
from broker.api.decode.camoufox import camoufox_options
from broker.api.decode.context import context_options
from broker.api.decode.durations import bounded_duration
from broker.errors import FieldViolation, InvalidArgument
from broker.leases.lease import LeaseSpec
from broker.leases.tenants import OPERATOR, Tenant
from broker.model.options import EngineName, Isolation
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

E = TypeVar("E")

MAX_LABELS = 16
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")

ENGINE_FROM_PB = {
    pb.ENGINE_CHROMIUM: EngineName.CHROMIUM,
    pb.ENGINE_FIREFOX: EngineName.FIREFOX,
    pb.ENGINE_CAMOUFOX: EngineName.CAMOUFOX,
}
ISOLATION_FROM_PB = {
    pb.ISOLATION_CONTEXT: Isolation.CONTEXT,
    pb.ISOLATION_BROWSER: Isolation.BROWSER,
}


def lease_spec(
    request: pb.AcquireRequest, settings: Settings, tenant: Tenant = OPERATOR
) -> LeaseSpec:
    out: list[FieldViolation] = []
    engine = _enum("engine", request.engine, ENGINE_FROM_PB, settings.default_engine, out)
    isolation = _enum(
        "isolation", request.isolation, ISOLATION_FROM_PB, settings.default_isolation, out
    )
    ttl_s = bounded_duration("ttl", request.ttl, settings.default_ttl_s, settings.max_ttl_s, out)
    idle_s = bounded_duration(
        "idle_timeout",
        request.idle_timeout,
        settings.default_idle_timeout_s,
        settings.max_idle_timeout_s,
        out,
    )
    context = context_options(request.context, settings, out)
    camoufox = None
    if request.HasField("camoufox"):
        camoufox = camoufox_options(request.camoufox, out)
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
    attach, isolation = attach_options(request, engine, isolation, settings, out)
    _check_labels(request, out)
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
        attach=attach,
    )


def _enum(
    field_name: str, value: int, known: dict[Any, E], default: E, out: list[FieldViolation]
) -> E:
    """A proto enum's value as ours; unspecified (0) is the broker's default."""
    if value == 0:
        return default
    if value not in known:
        out.append(FieldViolation(field_name, f"unknown {field_name} value {value}"))
        return default
    return known[value]


def _check_labels(request: pb.AcquireRequest, out: list[FieldViolation]) -> None:
    if len(request.labels) > MAX_LABELS:
        out.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
    for key, value in request.labels.items():
        if not _LABEL_KEY.match(key):
            out.append(
                FieldViolation(f"labels[{key[:64]!r}]", "key must be 1-63 of [A-Za-z0-9._/-]")
            )
        if len(value) > 256:
            out.append(FieldViolation(f"labels[{key[:64]!r}]", "value longer than 256 characters"))


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
