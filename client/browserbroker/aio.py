"""The asyncio client: `async with AsyncBrokerClient(target) as client: async with client.lease() ...`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import grpc
from grpc import aio

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

# Release on the way out of `lease()` gets this long even when the body was cancelled.
RELEASE_TIMEOUT_S = 10.0


class AsyncLease:
    """A granted lease. Use it inside `client.lease(...)`, which releases it on exit."""

    def __init__(self, client: AsyncBrokerClient, grant: LeaseGrant) -> None:
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

    async def stream(
        self,
        *steps: pb.Step,
        timeout: float | None = None,
        on_cancel: OnCancel = OnCancel.KEEP_LEASE,
        continue_on_error: bool = False,
    ) -> AsyncIterator[StepResult]:
        """Step results as each step completes."""
        request = req.run_request(self.grant, steps, on_cancel, continue_on_error)
        call = self._client.stub.Run(
            request, timeout=timeout, metadata=self._client.connection.metadata()
        )
        try:
            async for message in call:
                yield StepResult.from_pb(message.step)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # no-op when finished; stops the browser work if we are abandoned

    async def run(
        self,
        *steps: pb.Step,
        timeout: float | None = None,
        on_cancel: OnCancel = OnCancel.KEEP_LEASE,
        continue_on_error: bool = False,
    ) -> RunResult:
        """Run the steps and collect every result (check `.ok` or call `.raise_for_failure()`)."""
        results = [
            r
            async for r in self.stream(
                *steps, timeout=timeout, on_cancel=on_cancel, continue_on_error=continue_on_error
            )
        ]
        return RunResult(results)

    async def keep_alive(self, ttl: float | None = None, timeout: float | None = 10.0) -> datetime:
        response = await self._client._call(
            self._client.stub.KeepAlive, req.keep_alive_request(self.grant, ttl), timeout
        )
        self.grant = _with_expiry(self.grant, response.expires_at.ToDatetime())
        return self.grant.expires_at

    async def release(self, timeout: float | None = RELEASE_TIMEOUT_S) -> ReleaseResult:
        """End the lease. Safe to call again: later calls report the original outcome."""
        response = await self._client._call(
            self._client.stub.Release, req.release_request(self.grant), timeout
        )
        return ReleaseResult.from_pb(response)

    async def trace(self, timeout: float | None = 60.0) -> bytes:
        """The lease's Playwright trace zip (open it with `playwright show-trace`), once the
        lease has ended; only for a lease acquired with ContextOptions(trace=True)."""
        call = self._client.stub.GetTrace(
            req.trace_request(self.grant),
            timeout=timeout,
            metadata=self._client.connection.metadata(),
        )
        try:
            return b"".join([message.chunk async for message in call])
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None


def _with_expiry(grant: LeaseGrant, expires_at: datetime) -> LeaseGrant:
    from dataclasses import replace

    return replace(grant, expires_at=expires_at)


class AsyncBrokerClient:
    """A connection to a broker. `target` is "host:port"; pass `channel` to bring your own."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_certificate: PemSource | None = None,
        client_key: PemSource | None = None,
        channel: aio.Channel | None = None,
    ) -> None:
        """`token`: the tenant's bearer token. TLS is on with `tls=True` or any certificate:
        `root_certificates` is the CA of the broker's certificate (the system's roots when
        omitted), `client_certificate` and `client_key` this client's for mutual TLS. Each
        takes PEM bytes or a file path. Pass `channel` to bring your own (`token` still
        applies)."""
        self.connection = Connection(tls, root_certificates, client_certificate, client_key, token)
        self.channel = channel or self.connection.aio_channel(target)
        self.stub = broker_pb2_grpc.BrowserBrokerServiceStub(self.channel)

    async def __aenter__(self) -> AsyncBrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def _call(
        self, method: aio.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout: float | None
    ) -> Resp:
        try:
            return await method(request, timeout=timeout, metadata=self.connection.metadata())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def acquire(
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
    ) -> AsyncLease:
        """Acquire a lease; waits in the broker's queue for at most `timeout` seconds."""
        request = req.acquire_request(
            engine, isolation, ttl, idle_timeout, context, labels, camoufox, attach, on_disconnect
        )
        response = await self._call(self.stub.Acquire, request, timeout)
        return AsyncLease(self, LeaseGrant.from_pb(response))

    @contextlib.asynccontextmanager
    async def lease(
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
    ) -> AsyncIterator[AsyncLease]:
        """Acquire a lease for the `async with` body; released on exit, even on error or cancel."""
        lease = await self.acquire(
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
        keeper = None
        if keep_alive_every:
            keeper = asyncio.get_running_loop().create_task(
                _keep_alive_loop(lease, keep_alive_every)
            )
        try:
            yield lease
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await keeper
            # Shielded: a cancelled body must still give the browser back.
            release = asyncio.ensure_future(lease.release())
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(release, RELEASE_TIMEOUT_S)
                raise

    async def status(self, timeout: float | None = 10.0) -> pb.GetStatusResponse:
        return await self._call(self.stub.GetStatus, pb.GetStatusRequest(), timeout)


async def _keep_alive_loop(lease: AsyncLease, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await lease.keep_alive()
