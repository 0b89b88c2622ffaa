"""The attach edge's place in the daemon: its WebSocket server (wss:// with the gRPC port's
certificate when TLS is on), the base of the connect URLs, and its port kept from the pages.

Client certificates are not asked for on it: the connect URL's attach token is the credential
(CDP clients such as Playwright's connect_over_cdp present none)."""

from __future__ import annotations

import logging
import ssl

from broker.attach.server import AttachServer
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker

log = logging.getLogger("broker.server")

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


async def start_attach_edge(settings: Settings, broker: Broker) -> AttachServer | None:
    if not settings.attach_listen:
        return None
    host, _, port = settings.attach_listen.rpartition(":")
    context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    server = AttachServer(
        broker.attach.resolve,
        host.strip("[]") or "0.0.0.0",
        int(port),
        settings.attach_limits(),
        context,
        draining=lambda: broker.leases.draining,
    )
    bound = await server.start()
    if broker.egress is not None:
        broker.egress.add_own_port(bound)  # pages never reach it
    scheme = "wss" if context is not None else "ws"
    named = "127.0.0.1" if host in _WILDCARDS else host
    if host in _WILDCARDS and not settings.attach_public_url:
        log.warning(
            "attach_listen binds every address but attach_public_url is empty: connect URLs "
            "name 127.0.0.1"
        )
    broker.attach.base_url = settings.attach_public_url or f"{scheme}://{named}:{bound}"
    log.info("attach edge listening", extra={"port": bound, "tls": context is not None})
    return server
