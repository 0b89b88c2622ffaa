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
# The engines each protocol is served on. Camoufox is served over Playwright's protocol as its
# own server mode serves it: a launchServer of the firefox (Juggler) type, per-browser options.
ENGINES = {
    AttachProtocol.CDP: (EngineName.CHROMIUM,),
    AttachProtocol.PLAYWRIGHT: (EngineName.CHROMIUM, EngineName.FIREFOX, EngineName.CAMOUFOX),
    AttachProtocol.BIDI: (EngineName.FIREFOX,),  # stock Firefox; attach-only (model.attach)
}
# Why an engine serves no WebDriver BiDi, for the answer that refuses it.
NO_BIDI = {
    EngineName.CHROMIUM: (
        "Chromium here serves no WebDriver BiDi: Puppeteer's BiDi for Chromium is the "
        "chromium-bidi mapper, run on the client's side over CDP (use ATTACH_PROTOCOL_CDP)"
    ),
    EngineName.CAMOUFOX: "Camoufox speaks Juggler, not WebDriver BiDi",
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
    if not settings.attach_listen:
        out.append(FieldViolation("attach", "attached clients are off on this broker"))
    if engine not in (served_on := ENGINES.get(protocol, ())):
        names = " or ".join(e.value for e in served_on)
        why = f"attach protocol {protocol.value} needs {names}, not {engine.value}"
        if protocol is AttachProtocol.BIDI and engine in NO_BIDI:
            why += f" ({NO_BIDI[engine]})"
        out.append(FieldViolation("engine", why))
    if protocol is AttachProtocol.BIDI and request.HasField("context"):
        out.append(
            FieldViolation(
                "context",
                "a bidi lease is attach-only: the broker opens no context in it, its client "
                "creates its own (browser.createUserContext)",
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
