"""Nothing a tenant sends can take the broker's event loop (issue 22, finding 2).

A hostile tenant's glob, in `block_url_patterns` or in a wait step, is matched against a URL its
own page controls; a backtracking matcher stalls the loop that serves every tenant. Each glob
test runs the hostile input against a broker subprocess while the health check is called in a
loop, and holds the health check's latency within a bound. The canary test does the same with
every kind of worst-case input at once (`bench.canary` at a small scale): a canary tenant's Run
p99 and the health check's p99 stay within bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest

from bench.canary import TOKENS, health_loop, percentile, run_conditions, start_broker
from browserbroker import AsyncBrokerClient, BrokerError, RunResult, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess

# The health check's latency while an attack runs, and the canary's Run p99 under every attack at
# once. With one core kept busy by stress-ng (`bench.canary --busy`, docs/benchmarks.md; the
# machine's two cores shared with other work), the health check's p99 under attack was up to
# HEALTH_P99_BUSY_S and the canary's Run p99 up to RUN_P99_BUSY_S (one slow Run among 30). The
# bounds keep 3x and 2x headroom; a stalled loop (13-27 s per glob match before RE2) is past them.
HEALTH_P99_BUSY_S = 1.0
RUN_P99_BUSY_S = 19.5
HEALTH_BOUND_S = 3 * HEALTH_P99_BUSY_S
RUN_BOUND_S = 2 * RUN_P99_BUSY_S


def hostile_glob(repeats: int) -> str:
    """Issue 22's glob: `"**a" * 8 + "**b"` took 79 s to match a 79-character URL."""
    return "**a" * repeats + "**b"


def hostile_url(site: FixtureSite, length: int) -> str:
    """A URL of `length` characters, all `a` after the origin: it never matches the glob."""
    base = site.url("")
    return base + "a" * (length - len(base))


# (repeats, URL length): the issue's own size, and a smaller one that stalls a backtracking
# matcher for seconds rather than minutes (to see the attack succeed against such a matcher).
SIZES = [pytest.param(8, 79, id="issue-size"), pytest.param(6, 88, id="seconds-size")]


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    served = FixtureSite().start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    process = start_broker("chromium")
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def client_for(broker: BrokerProcess, tenant: str) -> AsyncIterator[AsyncBrokerClient]:
    async with AsyncBrokerClient(broker.address, token=TOKENS[tenant]) as client:
        yield client


async def while_health_checked(broker: BrokerProcess, attack: Awaitable[object]) -> float:
    """Runs `attack` while the health check is called; the slowest health check, seconds."""
    stop = asyncio.Event()
    latencies: list[float] = []
    async with client_for(broker, "canary") as client:
        checker = asyncio.create_task(health_loop(client, latencies, stop))
        await asyncio.sleep(0.2)
        try:
            with contextlib.suppress(BrokerError):
                await attack
        finally:
            await asyncio.sleep(0.2)
            stop.set()
            await checker
    assert latencies
    return max(latencies)


@pytest.mark.parametrize(("repeats", "length"), SIZES)
async def test_hostile_glob_in_block_url_patterns(
    broker: BrokerProcess, site: FixtureSite, repeats: int, length: int
) -> None:
    """The glob blocks requests of the hostile tenant's own context; its page then requests a
    URL that makes a backtracking matcher explode."""
    url = hostile_url(site, length)
    context = pb.ContextOptions(block_url_patterns=[hostile_glob(repeats)])

    async def attack() -> None:
        async with client_for(broker, "hostile") as client, client.lease(context=context) as lease:
            (await lease.run(steps.goto(url))).raise_for_failure()

    slowest = await while_health_checked(broker, attack())
    assert slowest < HEALTH_BOUND_S, f"health check took {slowest:.2f} s"


@pytest.mark.parametrize(("repeats", "length"), SIZES)
@pytest.mark.parametrize("kind", ["wait_for_url", "wait_for_response", "switch_page"])
async def test_hostile_glob_in_a_wait(
    broker: BrokerProcess, site: FixtureSite, kind: str, repeats: int, length: int
) -> None:
    """The same glob in each step that waits on a URL: the page's URL, a response's URL, a
    page's URL to switch to. The wait times out (the URL never matches); the loop stays free."""
    url, glob = hostile_url(site, length), hostile_glob(repeats)
    wait = {
        "wait_for_url": steps.wait_for_url(glob, timeout_s=2),
        "wait_for_response": steps.wait_for_response(glob, timeout_s=2),
        "switch_page": steps.switch_page(url=glob, timeout_s=2),
    }[kind]

    async def attack() -> None:
        async with client_for(broker, "hostile") as client, client.lease() as lease:
            (await lease.run(steps.goto(url))).raise_for_failure()
            (waited,) = await lease.run(wait)
            assert waited.error_kind == "timeout", waited.error_message

    slowest = await while_health_checked(broker, attack())
    assert slowest < HEALTH_BOUND_S, f"health check took {slowest:.2f} s"


async def test_canary_holds_under_every_attack(site: FixtureSite) -> None:
    """A canary tenant's Runs and the health check, idle and while a hostile tenant sends the
    worst inputs of every kind at once (bench.hostile_tenant): both p99s stay within bounds."""
    broker = start_broker("chromium")
    try:
        figures, tally = await run_conditions(broker.address, site, "chromium", 8, ["quiet"])
    finally:
        broker.stop()
    idle, attack = figures
    assert (idle.condition, attack.condition) == ("idle", "attack")
    report = "\n".join(f.row() for f in figures)
    assert attack.failed_runs == 0, report
    assert p99(attack.health) < HEALTH_BOUND_S, report
    assert p99(attack.runs) < RUN_BOUND_S, report
    # Every attack was under way while the canary was measured.
    assert all(counts.get("sent", 0) > 0 for counts in tally.values()), tally
    assert len(tally) >= 7, tally


def p99(values: list[float]) -> float:
    return percentile(values, 0.99)


async def test_console_flood_is_muted_past_the_step_events(
    broker: BrokerProcess, site: FixtureSite
) -> None:
    """A page that floods its console with large messages: the step keeps its 32 events and the
    broker stops listening to the console until the next step (Playwright parses every message
    on the event loop), which hears the console again."""
    flood = (
        "new Promise(r => { const end = Date.now() + 3000; (function f() {"
        " for (let i = 0; i < 200; i++) console.error('x'.repeat(100000));"
        " if (Date.now() < end) setTimeout(f, 0); else r(1); })(); })"
    )
    after = "console.error('after the flood'); 1"
    results: list[RunResult] = []

    async def attack() -> None:
        async with client_for(broker, "hostile") as client, client.lease() as lease:
            results.append(
                await lease.run(
                    steps.goto(site.url("form.html")),
                    steps.evaluate(flood, timeout_s=30),
                    steps.evaluate(after),
                    timeout=60,
                )
            )

    slowest = await while_health_checked(broker, attack())
    (result,) = results
    result.raise_for_failure()
    assert len(result[1].page_events) == 32
    assert [e.text for e in result[2].page_events] == ["after the flood"]
    assert slowest < HEALTH_BOUND_S, f"health check took {slowest:.2f} s"
