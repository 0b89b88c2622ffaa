"""The egress policy holds in the browser, whatever channel a page uses.

The fixture site on 127.0.0.1 is the one address the test policy allows; 127.0.0.2 stands for a
private host (it is loopback, denied by default like every private range). A recorder on
127.0.0.2 proves from the target's side that nothing got through; the broker's observers show
each refusal, with its rule, as it reaches metrics and the lease's trace.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from broker.egress.proxy import Blocked
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease
from broker.model.options import EngineName
from browserbroker import AsyncLease, Engine, InvalidArgumentError, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite


class Target:
    """An HTTP server on 127.0.0.2 that records every request it gets (there must be none)."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"secret")

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    found = Target()
    yield found
    found.server.shutdown()
    found.server.server_close()


class Refusals(LeaseObserver):
    def __init__(self) -> None:
        self.seen: list[Blocked] = []
        self.changed = asyncio.Event()

    def egress_blocked(self, lease: Lease, blocked: Blocked) -> None:
        self.seen.append(blocked)
        self.changed.set()

    async def wait_for(self, target: str, timeout_s: float = 15.0) -> Blocked:
        async with asyncio.timeout(timeout_s):
            while True:
                for blocked in self.seen:
                    if blocked.target == target:
                        return blocked
                self.changed.clear()
                await self.changed.wait()


async def _blocked_step(lease: AsyncLease, step: object, rule: str) -> None:
    result = (await lease.run(step, timeout=30))[0]  # type: ignore[arg-type]
    assert not result.ok and result.error_kind == "blocked", result
    assert f"egress rule {rule!r}" in result.error_message, result.error_message


@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_every_channel_to_a_denied_host_is_blocked(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, target: Target, engine: Engine
) -> None:
    running = await broker_factory(engines=[EngineName.CHROMIUM, EngineName.FIREFOX])
    refusals = Refusals()
    running.broker.observers.add(refusals)
    grpc_port = int(running.address.rpartition(":")[2])
    secret = f"http://127.0.0.2:{target.port}/secret"
    host = f"127.0.0.2:{target.port}"
    async with running.client.lease(engine=engine) as lease:
        # An allowed host works.
        allowed = await lease.run(
            steps.goto(fixture_server.url("form.html")), steps.text("#title"), timeout=30
        )
        assert allowed.ok and allowed[1].text == "Fixture"

        # A navigation, however the address is spelled.
        await _blocked_step(lease, steps.goto(secret), "loopback")
        for spelling in ("2130706434", "0x7f.0.0.2", "127.2", "[::ffff:127.0.0.2]"):
            await _blocked_step(lease, steps.goto(f"http://{spelling}:{target.port}/"), "loopback")
        # A redirect from an allowed page.
        await _blocked_step(
            lease, steps.goto(fixture_server.url(f"redirect?to={quote(secret)}")), "loopback"
        )
        # fetch() from a script.
        await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
        await _blocked_step(
            lease, steps.evaluate(f"fetch('{secret}').then(r => r.status)"), "loopback"
        )
        # Cloud metadata, private networks, and the broker's own port (even on the allowed
        # address): refused before any connection is made.
        await _blocked_step(
            lease, steps.goto("http://169.254.169.254/latest/meta-data/"), "cloud_metadata"
        )
        await _blocked_step(lease, steps.goto("http://10.11.12.13/"), "private")
        await _blocked_step(lease, steps.goto(f"http://127.0.0.1:{grpc_port}/"), "broker_port")

        # Channels that do not fail a step: the page loads, the request is refused and reported.
        for page, src in (
            ("iframe", f"{secret}?via=iframe"),
            ("image", f"{secret}?via=image"),
            ("popup", f"{secret}?via=popup"),
        ):
            refusals.seen.clear()
            loaded = await lease.run(
                steps.goto(fixture_server.url(f"{page}?src={quote(src)}")), timeout=30
            )
            assert loaded.ok, loaded[0]
            assert (await refusals.wait_for(host)).rule == "loopback"
        refusals.seen.clear()
        socket = await lease.run(
            steps.goto(fixture_server.url(f"websocket?src={quote(f'ws://{host}/')}")),
            steps.evaluate("window.outcome"),
            timeout=30,
        )
        assert socket.ok and socket[1].value == "error"
        assert (await refusals.wait_for(host)).rule == "loopback"
    assert target.hits == [], f"requests reached the denied host: {target.hits}"


async def test_file_urls_and_unsafe_options_are_refused(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    from browserbroker import ContextOptions, Proxy

    running = await broker_factory()
    async with running.client.lease() as lease:
        for url in ("file:///etc/passwd", "about:config"):
            with pytest.raises(InvalidArgumentError) as refused:
                await lease.run(steps.goto(url))
            assert refused.value.violations[0].field == "steps[0].goto.url"
        # A page cannot open a file either, by link, frame or fetch.
        await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
        read = await lease.run(
            steps.evaluate("fetch('file:///etc/passwd').then(r => r.text(), e => 'refused')"),
            timeout=30,
        )
        assert read[0].ok is False or read[0].value == "refused"
        assert "root:" not in (read[0].json or "")
    for options, field in (
        (ContextOptions(extra_http_headers={"Metadata-Flavor": "Google"}), "extra_http_headers"),
        (ContextOptions(proxy=Proxy(server="http://10.0.0.1:3128")), "context.proxy"),
    ):
        with pytest.raises(InvalidArgumentError) as bad:
            await running.client.acquire(context=options)
        assert field in bad.value.violations[0].field
    assert running.broker.leases.active_count == 0
