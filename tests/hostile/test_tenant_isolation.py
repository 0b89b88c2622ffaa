"""Tenants never share a browser process (issue 22, finding 3).

A headless browser's clipboard belongs to its process. When context leases of two tenants shared
one browser, tenant A's page copied a secret and tenant B pasted it into its own page. Each tenant
now gets a shared browser of its own: B pastes nothing, in both directions, on both engines,
while two leases of one tenant still share a browser (and a clipboard) as before.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import pytest

from browserbroker import AsyncBrokerClient, Isolation, steps
from browserbroker.aio import AsyncLease
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import ENGINES, SDK_ENGINE, engine_of, start

pytestmark = pytest.mark.browser

TOKENS = {"alpha": "alpha-token-0123456789", "beta": "beta-token-0123456789"}
TENANTS = [
    {"name": name, "token_sha256": [hashlib.sha256(token.encode()).hexdigest()]}
    for name, token in TOKENS.items()
]
# Read a moment after the keystroke: Firefox inserts a paste asynchronously.
PASTED = (
    "new Promise((done) => setTimeout(() => done(document.getElementById('typed').value), 300))"
)


async def copy_secret(lease: AsyncLease, page: str, secret: str) -> None:
    """The page selects a secret in an input and copies it the way a user would (Ctrl+C).
    Firefox sends the shortcut to the focused window: the page is brought to the front first."""
    result = await lease.run(
        steps.goto(page),
        steps.bring_to_front(),
        steps.fill("#typed", secret),
        steps.evaluate("document.getElementById('typed').select()"),
        steps.press("#typed", "Control+C"),
        timeout=30,
    )
    result.raise_for_failure()


async def paste(lease: AsyncLease, page: str) -> object:
    """What a Ctrl+V into an empty input of the lease's page receives."""
    result = await lease.run(
        steps.goto(page),
        steps.bring_to_front(),
        steps.click("#typed"),
        steps.press("#typed", "Control+V"),
        steps.evaluate(PASTED),
        timeout=30,
    )
    return result.raise_for_failure()[4].value


@contextlib.asynccontextmanager
async def context_leases(
    address: str, engine: str, *tenants: str
) -> AsyncIterator[list[AsyncLease]]:
    """One ISOLATION_CONTEXT lease per name in `tenants`, each acquired with that tenant's token;
    released (and their clients closed) on the way out."""
    clients = {name: AsyncBrokerClient(address, token=TOKENS[name]) for name in set(tenants)}
    leases: list[AsyncLease] = []
    try:
        for name in tenants:
            leases.append(
                await clients[name].acquire(engine=SDK_ENGINE[engine], isolation=Isolation.CONTEXT)
            )
        yield leases
    finally:
        for lease in leases:
            await lease.release()
        for client in clients.values():
            await client.close()


@ENGINES
async def test_a_tenant_cannot_paste_what_another_tenant_copied(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await start(broker_factory, engine, tenants=TENANTS)
    page = fixture_server.url("controls.html")
    async with context_leases(running.address, engine, "alpha", "beta") as (a, b):
        # Alpha copies, beta pastes; then the other way round. Each reads only what it copied
        # itself (nothing, before it has copied).
        await copy_secret(a, page, "alpha-secret-4711")
        beta_read = await paste(b, page)
        await copy_secret(b, page, "beta-secret-0815")
        alpha_read = await paste(a, page)
        assert (beta_read, alpha_read) == ("", "alpha-secret-4711")
        assert await paste(b, page) == "beta-secret-0815"
        # Each tenant's leases live in a browser of its own: two browser processes.
        assert len(engine_of(running, engine).census().browser_pids) == 2


@ENGINES
async def test_one_tenants_context_leases_still_share_a_browser(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    """The same tenant's leases share a browser as before: its own clipboard is its own."""
    running = await start(broker_factory, engine, tenants=TENANTS)
    page = fixture_server.url("controls.html")
    async with context_leases(running.address, engine, "alpha", "alpha") as (first, second):
        await copy_secret(first, page, "alpha-note-42")
        assert await paste(second, page) == "alpha-note-42"
        assert len(engine_of(running, engine).census().browser_pids) == 1
