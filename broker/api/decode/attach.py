"""AcquireRequest.attach: which protocol an attached client speaks, on which engine, and what
its leaving does to the lease. Every impossible pairing is refused here, naming the field."""

from __future__ import annotations

from broker.errors import FieldViolation
from broker.model.attach import AttachOptions, AttachProtocol, OnDisconnect
from broker.model.options import EngineName, Isolation
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

PROTOCOL_FROM_PB = {
    pb.ATTACH_PROTOCOL_CDP: AttachProtocol.CDP,
    pb.ATTACH_PROTOCOL_PLAYWRIGHT: AttachProtocol.PLAYWRIGHT,
    pb.ATTACH_PROTOCOL_BIDI: AttachProtocol.BIDI,
}
ON_DISCONNECT_FROM_PB = {
    pb.ON_DISCONNECT_UNSPECIFIED: OnDisconnect.KEEP,
    pb.ON_DISCONNECT_KEEP: OnDisconnect.KEEP,
    pb.ON_DISCONNECT_END: OnDisconnect.END,
}
NOT_YET = (AttachProtocol.BIDI,)
# The engines each protocol is served on. Camoufox speaks Playwright's protocol too (Juggler),
# but its launch (a fingerprint drawn per browser) is not served over launchServer: refused.
ENGINES = {
    AttachProtocol.CDP: (EngineName.CHROMIUM,),
    AttachProtocol.PLAYWRIGHT: (EngineName.CHROMIUM, EngineName.FIREFOX),
}


def attach_options(
    request: pb.AcquireRequest,
    engine: EngineName,
    isolation: Isolation,
    settings: Settings,
    out: list[FieldViolation],
) -> tuple[AttachOptions | None, Isolation]:
    """The lease's attach options (None: none asked for) and the isolation they imply: CDP's
    Target domain sees every context of a browser, so only a browser of its own keeps an
    attached client away from other leases (ISOLATION_UNSPECIFIED is read as
    ISOLATION_BROWSER; ISOLATION_CONTEXT is refused)."""
    if not request.HasField("attach"):
        return None, isolation
    attach = request.attach
    protocol = PROTOCOL_FROM_PB.get(attach.protocol)
    on_disconnect = ON_DISCONNECT_FROM_PB.get(attach.on_disconnect)
    if on_disconnect is None:
        out.append(FieldViolation("attach.on_disconnect", f"unknown value {attach.on_disconnect}"))
    if protocol is None:
        why = "must be set" if attach.protocol == 0 else f"unknown value {attach.protocol}"
        out.append(FieldViolation("attach.protocol", why))
        return None, isolation
    if protocol in NOT_YET:
        out.append(
            FieldViolation(
                "attach.protocol",
                f"{protocol.value} is not supported yet (ATTACH_PROTOCOL_CDP and "
                "ATTACH_PROTOCOL_PLAYWRIGHT are served)",
            )
        )
        return None, isolation
    if not settings.attach_listen:
        out.append(FieldViolation("attach", "attached clients are off on this broker"))
    if engine not in (served_on := ENGINES.get(protocol, ())):
        names = " or ".join(e.value for e in served_on)
        out.append(
            FieldViolation(
                "engine", f"attach protocol {protocol.value} needs {names}, not {engine.value}"
            )
        )
    if request.context.HasField("proxy"):
        # A context the client opens would have no proxy at all: only the route is a wall.
        out.append(
            FieldViolation(
                "context.proxy", "an attachable lease cannot have a proxy of its own yet"
            )
        )
    if request.isolation == pb.ISOLATION_UNSPECIFIED:
        isolation = Isolation.BROWSER
    elif isolation is not Isolation.BROWSER:
        out.append(
            FieldViolation(
                "isolation",
                "an attachable lease needs ISOLATION_BROWSER (CDP sees every context of its "
                "browser; a Playwright server serves a browser of its own)",
            )
        )
    return AttachOptions(protocol, on_disconnect or OnDisconnect.KEEP), isolation
