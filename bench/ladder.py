"""The ladder: direct Playwright built up to the broker one difference at a time.

    .venv/bin/python -m bench.ladder [--clients 1,4,16] [--seconds 30]

Every rung does the same work per session: open an isolated session (a new context and page),
go to a tiny page served over HTTP on loopback by a separate process (bench.peer_systems'
PageServer), read its h1, end the session. Each rung adds one difference to the rung before:

0. direct Playwright, one browser, a new context per session: Debian's Chromium with
   Playwright's default launch options (plus `--no-sandbox` when run as root, which Chromium
   needs without a browser user);
1. + the broker's launch flags (broker/engines/chromium.py SERVER_ARGS), launched by the
   broker's own Chromium launcher;
2. + the sandbox plan the broker makes by default (broker/engines/sandbox.py `plan`: the
   renderer sandbox, the launcher that drops to the browser user, the filesystem jail "auto");
3. + a per-context proxy through the broker's egress route: an EgressGateway in this process,
   as broker/runtime/wiring.py builds it (loopback 127.0.0.1/32 allowed, as the tests do), one
   route opened and closed per session;
4. + the CDP interrupter session on each page (ChromiumEngine.page_interrupter), which also
   sends the h1 read through CDP as the broker does;
5. the broker's engine in this process: PlaywrightEngine.open_session / execute(goto,
   get_text) / close_session, with the same sandbox plan and gateway, no gRPC, no lease table;
6. the full broker over gRPC: a broker subprocess (warm pool and capacity as bench.peers sets
   them, egress route, sandbox, browser user and jail on by default), through the Python SDK.

At each client count, every rung runs for `--seconds` with that many clients looping (no pause
between sessions, at 1 client too), one rung after the other in an order that rotates from
level to level. A client starts no session after the deadline; the rung's wall time runs until
its last session ends. Prints, per rung and level, sessions, p50, sessions/s and the ratio of
sessions/s to rung 0 at that level. Any failed session fails the run.

Not built yet: listeners (lease observers) and warm pre-opened sessions as rungs of their own
between 5 and 6, and the other direction (the broker taken apart with settings or test hooks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import psutil
from playwright.async_api import Browser, Playwright, async_playwright

from bench.peer_systems import AS_ROOT_ARGS, EXPECTED, BrokerSdk, PageServer, System, visit
from bench.peers import CAPACITY, POOL, LevelResult, machine, summary
from broker.egress.policy import EgressPolicy, EgressRules, local_addresses
from broker.egress.proxy import EgressGateway
from broker.engines import chromium, sandbox
from broker.engines.discovery import find_browser, playwright_managed
from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.options import ContextOptions, Isolation
from broker.model.steps.base import Step
from broker.model.steps.navigation import Goto
from broker.model.steps.reading import GetText
from tests.support import BrokerProcess

Launch = Callable[[Playwright], Awaitable[Browser]]
STEP_TIMEOUT_S = 30.0


class DirectRung:
    """Playwright in this process, one browser, a new context and page per session, with the
    broker's pieces this rung adds: its egress route per context, its CDP interrupter."""

    def __init__(
        self,
        name: str,
        playwright: Playwright,
        launch: Launch,
        url: str,
        gateway: EgressGateway | None = None,
        interrupter: PlaywrightEngine | None = None,
    ) -> None:
        self.name = name
        self.playwright = playwright
        self.launch = launch
        self.url = url
        self.gateway = gateway
        self.interrupter = interrupter
        self.browser: Browser | None = None

    async def start(self) -> None:
        self.browser = await self.launch(self.playwright)

    async def prepare(self) -> None:
        pass

    async def session(self) -> float:
        assert self.browser is not None
        started = time.perf_counter()
        route = await self.gateway.open_route() if self.gateway is not None else None
        try:
            proxy = {"proxy": {"server": route.server_url}} if route is not None else {}
            context = await self.browser.new_context(**proxy)  # type: ignore[arg-type]
            try:
                page = await context.new_page()
                attach = self.interrupter
                if attach is not None and await attach.page_interrupter(context, page) is None:
                    raise RuntimeError(f"{self.name}: the interrupter did not attach")
                await visit(page, self.url, self.name)
            finally:
                await context.close()
        finally:
            if route is not None and self.gateway is not None:
                await self.gateway.close_route(route)
        return time.perf_counter() - started

    async def stop(self) -> None:
        if self.browser is not None:
            await self.browser.close()


class EngineRung:
    """The broker's engine in this process: open_session, two steps, close_session."""

    name = "5. broker engine in-process (no gRPC)"

    def __init__(self, engine: PlaywrightEngine, url: str) -> None:
        self.engine = engine
        self.steps = [
            Step(Goto(url=url), STEP_TIMEOUT_S),
            Step(GetText(selector="h1"), STEP_TIMEOUT_S),
        ]

    async def start(self) -> None:
        pass

    async def prepare(self) -> None:
        pass

    async def session(self) -> float:
        started = time.perf_counter()
        session = await self.engine.open_session(Isolation.CONTEXT, ContextOptions())
        try:
            outcomes = [
                await session.execute(i, step, STEP_TIMEOUT_S) for i, step in enumerate(self.steps)
            ]
        finally:
            await self.engine.close_session(session)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"{self.name}: {failed[0].error_kind} {failed[0].error_message}")
        if outcomes[-1].text != EXPECTED:
            raise RuntimeError(f"{self.name} read {outcomes[-1].text!r}")
        return time.perf_counter() - started

    async def stop(self) -> None:
        await self.engine.close()


class BrokerRung(BrokerSdk):
    name = "6. full broker over gRPC (SDK)"


async def run_for(system: System, clients: int, seconds: float) -> LevelResult:
    times: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            try:
                times.append(await system.session())
            except Exception as exc:  # counted and shown; the run fails if any
                errors.append(f"{type(exc).__name__}: {exc}"[:300])

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return LevelResult(clients, len(times), time.perf_counter() - started, times, errors)


def gateway() -> EgressGateway:
    """The broker's gateway (wiring.py), with the page server's loopback address allowed."""
    rules = EgressRules(allow_cidrs=(ipaddress.ip_network("127.0.0.1/32"),), allow_loopback=True)
    return EgressGateway(EgressPolicy(rules, own_addresses=local_addresses()))


def rungs(playwright: Playwright, executable: str, url: str, broker: BrokerProcess) -> list[System]:
    root = os.geteuid() == 0

    async def defaults(pw: Playwright) -> Browser:
        return await pw.chromium.launch(executable_path=executable, args=AS_ROOT_ARGS)

    flags_only = chromium.create(executable, [], True, sandbox.Sandbox(enabled=not root))
    plan = sandbox.plan(True, "browser-broker", "auto")
    jailed = chromium.create(executable, [], True, plan)
    assert jailed.availability().available, jailed.availability().detail
    engine = chromium.create(executable, [], True, plan)
    engine.use_egress(gateway())
    route = gateway()
    return [
        DirectRung("0. direct Playwright, defaults", playwright, defaults, url),
        DirectRung("1. + broker launch flags", playwright, flags_only._launcher, url),
        DirectRung("2. + sandbox, browser user, jail", playwright, jailed._launcher, url),
        DirectRung("3. + egress route per context", playwright, jailed._launcher, url, route),
        DirectRung(
            "4. + CDP interrupter per page", playwright, jailed._launcher, url, route, jailed
        ),
        EngineRung(engine, url),
        BrokerRung(broker, url),
    ]


async def run(levels: list[int], seconds: float, warmups: int) -> str:
    executable = find_browser("chromium", None, playwright_managed("chromium")).path
    results: dict[str, dict[int, LevelResult]] = {}
    loads: list[float] = []
    async with contextlib.AsyncExitStack() as stack:  # stops what started, in reverse
        pages = PageServer().start()
        stack.callback(pages.stop)
        broker = BrokerProcess(
            args=["--warm-pool-size", str(POOL), "--capacity", str(CAPACITY)]
        ).start()
        stack.callback(broker.stop)
        playwright = await stack.enter_async_context(async_playwright())
        systems = rungs(playwright, executable, pages.url, broker)
        for system in systems:
            await system.start()
            stack.push_async_callback(system.stop)
        for system in systems:  # first launches, first renders, JIT
            for _ in range(warmups):
                await system.session()
        for turn, clients in enumerate(levels):
            order = systems[turn % len(systems) :] + systems[: turn % len(systems)]
            for system in order:
                result = await run_for(system, clients, seconds)
                loads.append(psutil.getloadavg()[0])
                results.setdefault(system.name, {})[clients] = result
                print(f"  {system.name}, {clients} clients: {summary(result)}", flush=True)
                if result.errors:  # any failed session fails the run
                    raise RuntimeError(f"{system.name} at {clients} clients: {result.errors[0]}")
    return table(results, levels, seconds, loads)


def table(
    results: dict[str, dict[int, LevelResult]],
    levels: list[int],
    seconds: float,
    loads: list[float],
) -> str:
    base = next(iter(sorted(results)))
    lines = [
        "| rung | "
        + " | ".join(f"{c} cl. sessions/s (ratio)" for c in levels)
        + " | "
        + " | ".join(f"{c} cl. p50 ms" for c in levels)
        + " |",
        "|---|" + "---:|" * (2 * len(levels)),
    ]
    for name in sorted(results):
        by_level = results[name]
        rates = [
            f"{by_level[c].per_s:.2f} ({by_level[c].per_s / results[base][c].per_s:.2f}x)"
            for c in levels
        ]
        p50s = [f"{statistics.median(by_level[c].times_s) * 1000:.0f}" for c in levels]
        lines.append(f"| {name} | " + " | ".join(rates + p50s) + " |")
    info = machine()
    lines += [
        "",
        f"{seconds:g} s per rung and level; load average (1 min) after each rung: "
        f"{min(loads):.2f} to {max(loads):.2f}. Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ladder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=30.0, help="per rung and level")
    parser.add_argument("--warmups", type=int, default=2, help="untimed sessions per rung")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    try:
        print(asyncio.run(run(levels, args.seconds, args.warmups)))
    except RuntimeError as exc:
        print(f"bench.ladder failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
