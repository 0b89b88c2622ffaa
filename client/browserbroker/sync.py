"""The blocking client: `with BrokerClient(target) as client: with client.lease() as lease: ...`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import grpc

from browserbroker import _requests as req
from browserbroker._connection import Connection, PemSource
from browserbroker._requests import LeaseGrant
from browserbroker.errors import from_rpc_error
from browserbroker.models import (
    AttachProtocol,
    Engine,
    Isolation,
    OnCancel,
    OnDisconnect,
    ReleaseResult,
    RunResult,
    StepResult,
)
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")

RELEASE_TIMEOUT_S = 10.0


class Lease:
    """A granted lease. Use it inside `client.lease(...)`, which releases it on exit."""

    def __init__(self, client: BrokerClient, grant: LeaseGrant) -> None:
        self._client = client
        self.grant = grant

    @property
    def id(self) -> str:
        return self.grant.lease_id

    @property
    def expires_at(self) -> datetime:
        return self.grant.expires_at

    @property
    def connect_url(self) -> str:
        """An attachable lease's connect URL (empty otherwise): give it to
        `chromium.connect_over_cdp`, `puppeteer.connect` or chromedp. It is a secret."""
        return self.grant.connect_url

    def stream(
        self,
        *steps: pb.Step,
        timeout: float | None = None,
        on_cancel: OnCancel = OnCancel.KEEP_LEASE,
        continue_on_error: bool = False,
    ) -> Iterator[StepResult]:
        request = req.run_request(self.grant, steps, on_cancel, continue_on_error)
        call = self._client.stub.Run(
            request, timeout=timeout, metadata=self._client.connection.metadata()
        )
        try:
            for message in call:
                yield StepResult.from_pb(message.step)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # stops the browser work if the iterator is abandoned

    def run(
        self,
        *steps: pb.Step,
        timeout: float | None = None,
        on_cancel: OnCancel = OnCancel.KEEP_LEASE,
        continue_on_error: bool = False,
    ) -> RunResult:
        return RunResult(
            list(
                self.stream(
                    *steps,
                    timeout=timeout,
                    on_cancel=on_cancel,
                    continue_on_error=continue_on_error,
                )
            )
        )

    def keep_alive(self, ttl: float | None = None, timeout: float | None = 10.0) -> datetime:
        response = self._client._call(
            self._client.stub.KeepAlive, req.keep_alive_request(self.grant, ttl), timeout
        )
        self.grant = replace(self.grant, expires_at=response.expires_at.ToDatetime())
        return self.grant.expires_at

    def release(self, timeout: float | None = RELEASE_TIMEOUT_S) -> ReleaseResult:
        response = self._client._call(
            self._client.stub.Release, req.release_request(self.grant), timeout
        )
        return ReleaseResult.from_pb(response)

    def trace(self, timeout: float | None = 60.0) -> bytes:
        """The lease's Playwright trace zip, once the lease has ended (see AsyncLease.trace)."""
        call = self._client.stub.GetTrace(
            req.trace_request(self.grant),
            timeout=timeout,
            metadata=self._client.connection.metadata(),
        )
        try:
            return b"".join(message.chunk for message in call)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None


class BrokerClient:
    """A blocking connection to a broker. `target` is "host:port"."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_certificate: PemSource | None = None,
        client_key: PemSource | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        """`token`: the tenant's bearer token. TLS is on with `tls=True` or any certificate:
        `root_certificates` is the CA of the broker's certificate (the system's roots when
        omitted), `client_certificate` and `client_key` this client's for mutual TLS. Each
        takes PEM bytes or a file path. Pass `channel` to bring your own (`token` still
        applies)."""
        self.connection = Connection(tls, root_certificates, client_certificate, client_key, token)
        self.channel = channel or self.connection.channel(target)
        self.stub = broker_pb2_grpc.BrowserBrokerServiceStub(self.channel)

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout: float | None
    ) -> Resp:
        try:
            return method(request, timeout=timeout, metadata=self.connection.metadata())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def acquire(
        self,
        *,
        engine: Engine = Engine.DEFAULT,
        isolation: Isolation = Isolation.DEFAULT,
        ttl: float | None = None,
        idle_timeout: float | None = None,
        context: pb.ContextOptions | None = None,
        labels: Mapping[str, str] | None = None,
        camoufox: pb.CamoufoxOptions | None = None,
        attach: AttachProtocol | str | None = None,
        on_disconnect: OnDisconnect = OnDisconnect.KEEP,
        timeout: float | None = 60.0,
    ) -> Lease:
        request = req.acquire_request(
            engine, isolation, ttl, idle_timeout, context, labels, camoufox, attach, on_disconnect
        )
        return Lease(self, LeaseGrant.from_pb(self._call(self.stub.Acquire, request, timeout)))

    @contextlib.contextmanager
    def lease(
        self,
        *,
        engine: Engine = Engine.DEFAULT,
        isolation: Isolation = Isolation.DEFAULT,
        ttl: float | None = None,
        idle_timeout: float | None = None,
        context: pb.ContextOptions | None = None,
        labels: Mapping[str, str] | None = None,
        camoufox: pb.CamoufoxOptions | None = None,
        attach: AttachProtocol | str | None = None,
        on_disconnect: OnDisconnect = OnDisconnect.KEEP,
        timeout: float | None = 60.0,
        keep_alive_every: float | None = None,
    ) -> Iterator[Lease]:
        """Acquire a lease for the `with` body; released on exit, even when the body raises."""
        lease = self.acquire(
            engine=engine,
            isolation=isolation,
            ttl=ttl,
            idle_timeout=idle_timeout,
            context=context,
            labels=labels,
            camoufox=camoufox,
            attach=attach,
            on_disconnect=on_disconnect,
            timeout=timeout,
        )
        stop = threading.Event()
        keeper = None
        if keep_alive_every:
            keeper = threading.Thread(
                target=_keep_alive_loop, args=(lease, keep_alive_every, stop), daemon=True
            )
            keeper.start()
        try:
            yield lease
        finally:
            stop.set()
            if keeper is not None:
                keeper.join()
            lease.release()

    def status(self, timeout: float | None = 10.0) -> pb.GetStatusResponse:
        return self._call(self.stub.GetStatus, pb.GetStatusRequest(), timeout)


def _keep_alive_loop(lease: Lease, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            lease.keep_alive()
        except Exception:
            return
