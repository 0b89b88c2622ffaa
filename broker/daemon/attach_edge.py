"""The attach edge's place in the daemon: its WebSocket server (wss:// with the gRPC port's
certificate when TLS is on), the base of the connect URLs, and its port kept from the pages.

Client certificates are not asked for on it: the connect URL's attach token is the credential
(CDP clients such as Playwright's connect_over_cdp present none)."""

from __future__ import annotations

import logging
import ssl

from broker.attach.server import AttachServer
from broker.common.hosts import WILDCARD_HOSTS
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker

log = logging.getLogger("broker.server")


async def start_attach_edge(settings: Settings, broker: Broker) -> AttachServer | None:
    if settings.attach_off_reason:
        log.warning("attached clients are off: %s", settings.attach_off_reason)
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
    # In a cluster the URL names this node, the lease's holder, whichever node granted it.
    advertise = settings.advertised(settings.listen) if settings.cluster_url else None
    base = settings.connect_base(bound, context is not None, advertise)
    if host in WILDCARD_HOSTS and not settings.attach_public_url and advertise is None:
        log.warning(
            "attach_listen binds every address but attach_public_url is empty: connect URLs "
            "name 127.0.0.1"
        )
    broker.attach.base_url = base
    log.info("attach edge listening", extra={"port": bound, "tls": context is not None})
    return server
