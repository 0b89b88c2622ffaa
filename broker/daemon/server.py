"""The daemon: gRPC server with health and reflection, and graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from broker.api import tracing as rpc_tracing
from broker.api.auth import Authenticator, Credentials
from broker.api.errors import tolerant
from broker.api.forwarding import Forwarder, channel_credentials
from broker.api.service import BrokerService
from broker.cluster.routing import Router
from broker.daemon import diagnostics
from broker.daemon.attach_edge import start_attach_edge
from broker.daemon.tls import CertificateFiles
from broker.observe import otel
from broker.observe.attach_telemetry import ConnectionSpans
from broker.observe.lease_telemetry import LeaseTelemetry
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from browserbroker.v1 import broker_pb2

log = logging.getLogger("broker.server")

SERVICE_NAME = broker_pb2.DESCRIPTOR.services_by_name["BrowserBrokerService"].full_name


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    broker: Broker | None = None,
) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT), then drain and exit cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Outside the main thread (tests) this fails, and the caller sets `stop` instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, diagnostics.log_tasks)

    setup = otel.configure(settings.prometheus_port, settings.prometheus_host)
    async with broker or Broker(settings) as running:
        interceptors: list[aio.ServerInterceptor] = []  # type: ignore[type-arg]
        if setup.tracing or setup.metrics:
            lease_telemetry = LeaseTelemetry(
                gauges=running.gauges,
                redact_urls=settings.redact_urls,
                pools=running.pool_statuses,
                nodes=running.cluster_nodes,
            )
            running.observers.add(lease_telemetry)
            running.attach.watch = ConnectionSpans(lease_telemetry.lease_span).opened
            if setup.tracing:
                interceptors.append(rpc_tracing.TracingInterceptor(lease_telemetry))
        server = aio.server(
            interceptors=interceptors,
            # More RPCs than this at once are answered RESOURCE_EXHAUSTED by gRPC itself.
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
            ],
        )
        edge = build_edge(running.settings, running)  # (the settings the broker runs with)
        add_broker_service(edge.service, server)
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        if running.egress is not None:
            # Pages must never reach the broker's own ports, whatever the lists allow.
            for own in (settings.prometheus_port,):
                if own:
                    running.egress.add_own_port(own)
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            certificates = CertificateFiles(
                settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
            )
            port = server.add_secure_port(settings.listen, certificates.server_credentials())
            log.info("TLS on", extra={"mutual": certificates.mutual})
        else:
            port = server.add_insecure_port(settings.listen)
        if port and running.egress is not None:
            running.egress.add_own_port(port)
        if not settings.auth_enabled:
            log.warning(
                "authentication is off: every caller is the operator"
                + (
                    ""
                    if settings.listens_on_loopback
                    else " (and this port is reachable from other machines)"
                )
            )
        if port == 0:
            raise OSError(f"could not bind {settings.listen}")
        await server.start()
        attach_edge = await start_attach_edge(settings, running)
        await running.join_cluster(port)
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        host = settings.listen.rpartition(":")[0]
        log.info("broker listening", extra={"address": f"{host}:{port}", "port": port})
        if on_ready is not None:
            on_ready(port)
        try:
            await stop.wait()
        finally:
            log.info(
                "shutting down",
                extra={
                    "drain_timeout_s": settings.drain_timeout_s,
                    "grace_s": settings.shutdown_grace_s,
                },
            )
            # Health first, so load balancers stop sending; then drain leases (the server goes
            # on answering for them, and placing Acquires on other nodes); then the server.
            await health_servicer.enter_graceful_shutdown()
            await running.shutdown(settings.shutdown_grace_s, settings.drain_timeout_s)
            if attach_edge is not None:  # (every lease has ended: its sockets are closed)
                await attach_edge.close()
            await server.stop(grace=1.0)
            await edge.close()  # (no call is left that could use its channels)
            setup.shutdown()  # flushes spans and metrics still buffered
            log.info("stopped")


@dataclass(frozen=True)
class Edge:
    """The gRPC edge over a broker: the servicer, and the channels it opens to other nodes."""

    service: BrokerService
    forwarder: Forwarder | None

    async def close(self) -> None:
        """Close every client channel the edge opened (after the server has stopped)."""
        if self.forwarder is not None:
            await self.forwarder.close()


def build_edge(settings: Settings, broker: Broker) -> Edge:
    """The one place the edge is wired: who is calling (tokens, certificates, the cluster's
    secret), where a call goes in cluster mode, and the servicer over both."""
    secret = settings.cluster_secret
    cluster_secret = secret.get_secret_value() if secret is not None else None
    auth = Authenticator(
        [
            Credentials(
                t.tenant(),
                tuple(bytes.fromhex(d) for d in t.token_sha256),
                tuple(t.client_cert_names),
            )
            for t in settings.tenants
        ],
        cluster=broker.cluster is not None,
        cluster_secret=cluster_secret,
        previous_secrets=[s.get_secret_value() for s in settings.cluster_previous_secrets],
        node_id=_node_id(broker),
    )
    forwarder = None
    if broker.cluster is not None:
        forwarder = Forwarder(
            Router(broker.cluster, broker.leases, settings.queue_limit),
            cluster_secret,
            settings.max_message_bytes,
            channel_credentials(
                settings.tls_cert_file is not None,
                settings.cluster_ca_file,
                settings.cluster_client_cert_file,
                settings.cluster_client_key_file,
            ),
            settings.cluster_tls_server_name,
        )
    return Edge(BrokerService(broker, auth, forwarder), forwarder)


def _node_id(broker: Broker) -> Callable[[], str]:
    """This node's id as it is now (a node declared dead rejoins under a new one)."""
    cluster = broker.cluster
    return (lambda: cluster.node_id) if cluster is not None else (lambda: "")


def add_broker_service(service: BrokerService, server: aio.Server) -> None:
    """The generated registration, except that undecodable request bytes reach the handler as
    `Malformed` (answered INVALID_ARGUMENT) instead of failing inside gRPC (UNKNOWN)."""
    descriptor = broker_pb2.DESCRIPTOR.services_by_name["BrowserBrokerService"]
    handlers = {}
    for method in descriptor.methods:
        request_cls = getattr(broker_pb2, method.input_type.name)
        response_cls = getattr(broker_pb2, method.output_type.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(service, method.name),
            request_deserializer=tolerant(request_cls.FromString, method.input_type.full_name),
            response_serializer=response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    # The faster lookup that generated code uses too (the stubs do not know it yet).
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]


def write_port_file(path: Path) -> Callable[[int], None]:
    def write(port: int) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(path)

    return write
