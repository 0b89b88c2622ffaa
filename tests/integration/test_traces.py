"""Lease traces on real Chromium and Firefox: recorded for a lease that asks, fetched by its owner
after release as a Playwright trace zip; nobody else gets it, and the bounds hold."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from browserbroker import (
    AsyncBrokerClient,
    BrokerClient,
    ContextOptions,
    LeaseNotFoundError,
    PermissionDeniedError,
    steps,
)
from browserbroker._requests import LeaseGrant
from browserbroker.aio import AsyncLease
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import SDK_ENGINE, start
from tests.support import BrokerProcess

pytestmark = pytest.mark.browser

TOKENS = {"alpha": "alpha-token-0123456789", "beta": "beta-token-0123456789"}
TENANTS = [
    {"name": name, "token_sha256": [hashlib.sha256(token.encode()).hexdigest()]}
    for name, token in TOKENS.items()
]


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_a_failing_runs_trace_is_fetched_by_its_owner_only(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str, tmp_path: Path
) -> None:
    running = await start(broker_factory, engine, tenants=TENANTS, data_dir=tmp_path)
    alpha = AsyncBrokerClient(running.address, token=TOKENS["alpha"])
    beta = AsyncBrokerClient(running.address, token=TOKENS["beta"])
    try:
        lease = await alpha.acquire(engine=SDK_ENGINE[engine], context=ContextOptions(trace=True))
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.fill("#name", "Ada"),
            steps.click("#missing", timeout_s=1),
            timeout=30,
        )
        assert not result.ok and result[2].error_kind == "timeout"
        with pytest.raises(LeaseNotFoundError):
            await lease.trace()  # written when the lease ends
        await lease.release()
        data = await lease.trace()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            events = [
                json.loads(line) for line in archive.read("trace.trace").decode().splitlines()
            ]
        # What `playwright show-trace` reads: the action log, the network log, resources.
        assert "trace.trace" in names and "trace.network" in names
        assert any(name.startswith("resources/") for name in names)
        methods = [e.get("method") or e.get("apiName") for e in events if e.get("type") == "before"]
        assert {"goto", "fill", "click"} <= {str(m).split(".")[-1].lower() for m in methods}
        assert any(e.get("type") == "after" and e.get("error") for e in events)  # the failed click
        assert any(e.get("type") == "frame-snapshot" for e in events)
        # Another tenant with the same id and token learns nothing; a wrong token is refused.
        stolen = AsyncLease(beta, lease.grant)
        with pytest.raises(LeaseNotFoundError):
            await stolen.trace()
        forged = AsyncLease(alpha, _with_token(lease.grant, "not-the-token"))
        with pytest.raises(PermissionDeniedError):
            await forged.trace()
        # A lease that did not ask for a trace has none.
        plain = await alpha.acquire(engine=SDK_ENGINE[engine])
        await plain.release()
        with pytest.raises(LeaseNotFoundError):
            await plain.trace()
        assert [p.name for p in (tmp_path / "traces").iterdir()] == [f"{lease.id}.zip"]
    finally:
        await alpha.close()
        await beta.close()


async def test_traces_are_bounded_and_expire(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, tmp_path: Path
) -> None:
    running = await broker_factory(data_dir=tmp_path, max_trace_bytes=1000)
    client = running.client
    lease = await client.acquire(context=ContextOptions(trace=True))
    await lease.run(steps.goto(fixture_server.url("form.html")), steps.screenshot(), timeout=30)
    await lease.release()
    with pytest.raises(LeaseNotFoundError):  # over max_trace_bytes: dropped
        await lease.trace()
    assert list((tmp_path / "traces").iterdir()) == []
    kept = await broker_factory(data_dir=tmp_path / "b", trace_retention_s=0)
    lease = await kept.client.acquire(context=ContextOptions(trace=True))
    await lease.release()
    with pytest.raises(LeaseNotFoundError):  # retention 0: deleted as soon as asked for
        await lease.trace()
    assert list((tmp_path / "b" / "traces").iterdir()) == []


def _with_token(grant: LeaseGrant, token: str) -> LeaseGrant:
    from dataclasses import replace

    return replace(grant, token=token)


def test_the_blocking_client_fetches_a_trace_from_a_served_broker(
    fixture_server: FixtureSite, tmp_path: Path
) -> None:
    """`browser-broker serve` with data_dir from the environment; the blocking SDK."""
    process = BrokerProcess(env={"BROKER_DATA_DIR": str(tmp_path)}).start()
    try:
        with BrokerClient(process.address) as client:
            lease = client.acquire(context=ContextOptions(trace=True))
            lease.run(steps.goto(fixture_server.url("form.html")), timeout=30).raise_for_failure()
            lease.release()
            data = lease.trace()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert "trace.trace" in archive.namelist()
        assert (tmp_path / "traces" / f"{lease.id}.zip").is_file()
    finally:
        process.stop()
