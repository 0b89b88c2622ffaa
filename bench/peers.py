"""Peer benchmark: the broker beside direct Playwright, Playwright's run-server, Selenium Grid and
Browserless.

    scripts/selenium.sh build   # once: the Grid's jars and chromium-driver (scripts/test does it)
    scripts/polyglot.sh         # once: Browserless, pinned in bench/browserless (scripts/test too)
    .venv/bin/python -m bench.peers [--out bench-results] [--levels 1,4,16,50] [--quick | --smoke]
        [--only all | attach | warm-attach | KEY,...]

Every system does the same work per session (open an isolated session, go to a tiny page served
over HTTP on loopback, read its h1, end the session) with the same Chromium, in one run:

- the broker with a warm pool, through the Python SDK and through a raw gRPC stub;
- the broker's attachable lease over CDP: Acquire(attach=cdp), connect_over_cdp, goto, read,
  disconnect, Release (an "attach cycle"); the same over Playwright's own protocol
  (attach=playwright, browser_type.connect); and both cycles warm, each on a broker of its own
  with an attachable warm pool of the level's client count (bench/peer_warm_attach.py);
- Playwright in this process, a new context per session, and on a page opened beforehand;
- `playwright run-server`, `connect` per session;
- Selenium Grid 4 standalone (`scripts/selenium.sh build` fetches it first), Debian's ChromeDriver;
- Browserless, through its REST API (POST /function) and over CDP (connect_over_cdp per session),
  its CONCURRENT and QUEUED set to each level's client count.

Levels: 1 client (sequential, with a pause so pools refill as they would between requests),
then 4, 16 and 50 clients looping. The systems that launch a browser per session (run-server,
the Grid, Browserless, the attach cycles) run only up to 16 clients: 50 browsers at once would not
fit the machine beside the rest. Systems run one after the other at each level, in an order that
rotates from level to level. Also measured against the broker: the gRPC health-check round trip
and the warm Acquire beside it (1 client); a CDP round trip through the attach socket beside the
same command sent straight to a Chromium's DevTools port; the broker process's CPU seconds per
lease cycle; and the browsers' PSS per concurrent lease at 1, 10 and 25 leases. Writes JSON and
a markdown table (medians, p90, p99, the machine and the versions) to --out, and prints the
table. A peer that cannot start fails the run. `--only` measures some rows (keys and groups in
bench/peer_select.py; `--only warm-attach`: the warm attach cycles, run-server and Browserless
over CDP, a few minutes with --quick); the broker figures need `sdk`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial
from importlib import metadata
from pathlib import Path

import psutil
from playwright.async_api import Playwright, async_playwright

from bench.engines import Bench as EngineBench
from bench.engines import measure_memory
from bench.peer_attach import BrokerAttachCdp, BrokerAttachPlaywright, cdp_round_trips
from bench.peer_browserless import (
    BrowserlessCdp,
    BrowserlessFunction,
    BrowserlessServer,
    Resizable,
    browserless_version,
)

# Re-exported: bench.ladder imports LevelResult and summary from here.
from bench.peer_report import LevelResult as LevelResult
from bench.peer_report import markdown, write_report
from bench.peer_report import summary as summary
from bench.peer_select import KEYS, MAIN_BROKER, parse_only
from bench.peer_systems import (
    BrokerRawStub,
    BrokerSdk,
    DirectPlaywright,
    PageServer,
    PlaywrightRunServer,
    SeleniumGrid,
    System,
)
from bench.peer_warm_attach import WARM_PROTOCOLS, BrokerWarmAttach, Pooled
from broker.engines.discovery import find_browser, playwright_managed
from browserbroker import Engine, Isolation
from tests.support import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent
POOL = 4
CAPACITY = 64  # the 50-client level's leases, with room for the warm pool
PAUSE_S = 0.25  # between sequential sessions: the broker's pool refills, as between requests
LEVELS = "1,4,16,50"
SESSIONS = {1: 40, 4: 60, 16: 96, 50: 200}  # per level, split evenly over the clients
QUICK_SESSIONS = {1: 6, 4: 8, 16: 16, 50: 50}
# --smoke: does every peer start and give its rows? A session or two each, no figures to quote.
SMOKE_SESSIONS = {1: 2, 4: 4, 16: 16, 50: 50}
ROUND_TRIPS = {"default": 400, "quick": 100, "smoke": 10}  # CDP round trips, each way
# Peers that launch a browser for every session (or lease) run only up to this many clients.
BROWSER_PER_SESSION_MAX_CLIENTS = 16
BROWSER_PER_SESSION = (
    BrokerAttachCdp,
    BrokerWarmAttach,
    PlaywrightRunServer,
    SeleniumGrid,
    BrowserlessFunction,
    BrowserlessCdp,
)


async def run_level(
    system: System, clients: int, sessions: int, broker_pid: int | None
) -> LevelResult:
    per_client = max(1, sessions // clients)
    times: list[float] = []
    errors: list[str] = []

    async def client() -> None:
        for _ in range(per_client):
            await system.prepare()
            try:
                times.append(await system.session())
            except Exception as exc:  # counted and shown; the run fails if any
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            if clients == 1:
                await asyncio.sleep(PAUSE_S)

    warm_before = system.warm_leases if isinstance(system, Pooled) else None
    cpu_before = cpu_seconds(broker_pid)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    if clients == 1:
        wall -= PAUSE_S * per_client  # the pause is not the system's time
    cpu_after = cpu_seconds(broker_pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    warm = None
    if warm_before is not None and isinstance(system, Pooled):
        warm = system.warm_leases - warm_before
    return LevelResult(clients, per_client * clients, wall, times, errors, cpu, warm)


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def floor_and_warm_acquire(sdk: BrokerSdk, samples: int) -> dict[str, list[float]]:
    """The gRPC health check and the warm Acquire, alternated sample by sample."""
    client = sdk.client
    assert client is not None
    health: list[float] = []
    warm: list[float] = []
    for _ in range(samples):
        health.append(await sdk.health_check())
        for _ in range(4800):  # the pool refills after the previous lease (a busy machine: 2 min)
            if (await client.status()).warm_pool_size >= POOL:
                break
            await asyncio.sleep(0.025)
        started = time.perf_counter()
        lease = await client.acquire(timeout=60)
        warm.append(time.perf_counter() - started)
        await lease.release()
        if not lease.grant.warm:
            raise RuntimeError("the warm Acquire probe got a cold session")
    return {"health_check": health, "warm_acquire": warm}


def versions(chromium: str) -> dict[str, str]:
    def out(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable ({exc})"
        return (done.stdout or done.stderr).strip().splitlines()[0]

    return {
        "python": platform.python_version(),
        "playwright": metadata.version("playwright"),
        "grpcio": metadata.version("grpcio"),
        "browser-broker": metadata.version("browser-broker"),
        "chromium": out([chromium, "--version"]),
        "chromedriver": out(["chromedriver", "--version"]),
        "java": out(["java", "-version"]),
        "selenium-grid": "4.38.0",
        "browserless": browserless_or_why(),
        "node": out(["node", "--version"]),
    }


def browserless_or_why() -> str:
    try:
        return browserless_version()
    except RuntimeError as exc:  # fails the run only if a Browserless row was chosen
        return f"unavailable ({exc})"


def machine() -> dict[str, str | int | float]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": psutil.cpu_count() or 0,
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "load_avg_1m_at_start": round(psutil.getloadavg()[0], 2),
    }


def grid_jars() -> Path:
    """The Grid's jars, fetched beforehand by `scripts/selenium.sh build` (never from here)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "selenium.sh"), "path"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return Path(done.stdout.strip().splitlines()[-1])


def build_systems(
    only: list[str],
    broker: BrokerProcess,
    playwright: Playwright,
    executable: str,
    url: str,
    per_browser_max: int,
) -> dict[str, System]:
    """The chosen rows (keys of bench.peer_select), built only if chosen: a row's peer (the Grid's
    jars, Browserless) is looked for only then."""
    browserless: list[BrowserlessServer] = []  # one process for both of its rows

    def server() -> BrowserlessServer:
        if not browserless:
            browserless.append(BrowserlessServer(executable))
        return browserless[0]

    build: dict[str, Callable[[], System]] = {
        "sdk": lambda: BrokerSdk(broker, url),
        "stub": lambda: BrokerRawStub(broker, url),
        "attach-cdp": lambda: BrokerAttachCdp(broker, playwright, url),
        "attach-playwright": lambda: BrokerAttachPlaywright(broker, playwright, url),
        **{
            f"warm-attach-{protocol}": partial(
                BrokerWarmAttach, playwright, url, protocol, CAPACITY
            )
            for protocol in WARM_PROTOCOLS
        },
        "playwright": lambda: DirectPlaywright(playwright, executable, url, warm_page=False),
        "playwright-warm-page": lambda: DirectPlaywright(
            playwright, executable, url, warm_page=True
        ),
        "run-server": lambda: PlaywrightRunServer(playwright, executable, url),
        "grid": lambda: SeleniumGrid(grid_jars(), executable, url, per_browser_max),
        "browserless-function": lambda: BrowserlessFunction(server(), url),
        "browserless-cdp": lambda: BrowserlessCdp(server(), playwright, url),
    }
    assert set(build) == set(KEYS)
    return {key: build[key]() for key in only}


async def run(
    levels: list[int],
    sessions: dict[int, int],
    out: Path,
    memory: bool,
    warmups: int,
    round_trips: int,
    only: list[str],
) -> str:
    executable = find_browser("chromium", None, playwright_managed("chromium")).path
    info = {"machine": machine(), "versions": versions(executable)}
    per_browser_max = min(max(levels), BROWSER_PER_SESSION_MAX_CLIENTS)
    # Peers called from threads (the Grid, Browserless's REST API) get one thread per client.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max(levels) + 8))
    pages = PageServer().start()
    broker = BrokerProcess(args=["--warm-pool-size", str(POOL), "--capacity", str(CAPACITY)])
    if MAIN_BROKER.intersection(only):
        broker.start()
    results: dict[str, dict[int, LevelResult]] = {}
    later_error = ""
    floors: dict[str, list[float]] = {}
    memory_rows: dict[int, float] = {}
    try:
        async with async_playwright() as playwright:
            chosen = build_systems(only, broker, playwright, executable, pages.url, per_browser_max)
            systems = list(chosen.values())
            brokers = [chosen[key] for key in MAIN_BROKER.intersection(chosen)]
            try:
                for system in systems:
                    await system.start()
                for system in systems:  # warm-up: first launches, first renders, JIT
                    await warm_up(system, warmups)
                    if isinstance(system, Pooled):
                        await system.park()  # its browsers idle and refill beside no one
                for turn, clients in enumerate(levels):
                    order = systems[turn % len(systems) :] + systems[: turn % len(systems)]
                    for system in order:
                        if clients > per_browser_max and isinstance(system, BROWSER_PER_SESSION):
                            continue
                        if isinstance(system, Resizable) and await system.resize(clients):
                            await warm_up(system, warmups)  # restarted with this level's limits
                        if isinstance(system, Pooled):
                            await system.settle()  # the level begins on a full pool
                        pid = broker.proc.pid if system in brokers and broker.proc else None
                        result = await run_level(system, clients, sessions[clients], pid)
                        if isinstance(system, Pooled):
                            await system.park()
                        results.setdefault(system.name, {})[clients] = result
                        print(f"  {system.name}, {clients} clients: {summary(result)}", flush=True)
                try:  # a failure here still leaves the levels' figures written
                    if "sdk" in chosen:
                        sdk = chosen["sdk"]
                        assert isinstance(sdk, BrokerSdk)
                        floors = await floor_and_warm_acquire(sdk, sessions.get(1, 20))
                    if {"sdk", "attach-cdp"} & set(chosen):
                        floors |= await cdp_round_trips(broker, executable, round_trips)
                    if memory and "sdk" in chosen:
                        memory_rows = await broker_memory(broker)
                except Exception as exc:  # reported below, and the run fails
                    later_error = f"after the levels: {type(exc).__name__}: {exc}"[:500]
            finally:
                for system in systems:
                    await system.stop()
    finally:
        broker.stop()
        pages.stop()
    settings = {"pool": POOL, "capacity": CAPACITY, "pause_s": PAUSE_S, "sessions": sessions}
    report = {
        **info,
        "settings": settings
        | {
            "browser_per_session_max_clients": per_browser_max,
            "browserless_concurrent_and_queued": "the level's client count",
            "cdp_round_trips": round_trips,
            "only": only,
            "warm_attach_pool": "chromium/browser+<protocol>, the level's client count",
        },
        "results": {
            name: {str(c): asdict(r) | {"per_s": r.per_s} for c, r in by_level.items()}
            for name, by_level in results.items()
        },
        "floor": floors,
        "error_after_levels": later_error,
        "pss_per_lease_mb": memory_rows,
    }
    table = markdown(report, results, floors, memory_rows, levels)
    write_report(out, report, table)
    failures = [
        f"{name} at {c} clients: {r.errors[0]} ({len(r.errors)} errors)"
        for name, by_level in results.items()
        for c, r in by_level.items()
        if r.errors
    ] + ([later_error] if later_error else [])
    if failures:
        raise RuntimeError("sessions failed:\n" + "\n".join(failures))
    return table


async def warm_up(system: System, sessions: int) -> None:
    """Untimed sessions: first launches, first renders, JIT."""
    for _ in range(sessions):
        await system.prepare()
        await system.session()


async def broker_memory(broker: BrokerProcess) -> dict[int, float]:
    bench = EngineBench(broker)
    try:
        result = await measure_memory(bench, Engine.CHROMIUM, Isolation.CONTEXT)
    finally:
        await bench.client.close()
    rows = {}
    for level, row in result.levels.items():
        if row.error or row.per_lease_mb is None:
            raise RuntimeError(f"memory at {level} leases: {row.error}")
        rows[level] = row.per_lease_mb
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--levels",
        "--clients",
        dest="levels",
        default=LEVELS,
        help=f"comma-separated client counts (default {LEVELS})",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="few sessions: rough figures")
    size.add_argument("--smoke", action="store_true", help="a session or two: rows, no figures")
    parser.add_argument("--no-memory", action="store_true", help="skip the PSS levels")
    parser.add_argument(
        "--only",
        default="all",
        help="comma-separated rows or groups to measure (default all; groups: attach, "
        f"warm-attach; rows: {', '.join(KEYS)})",
    )
    args = parser.parse_args()
    try:
        only = parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    levels = [int(c) for c in args.levels.split(",")]
    size_name = "smoke" if args.smoke else "quick" if args.quick else "default"
    base = {"smoke": SMOKE_SESSIONS, "quick": QUICK_SESSIONS, "default": SESSIONS}[size_name]
    sessions = {c: base.get(c, 6 * c) for c in levels}
    warmups = 1 if args.smoke else 2
    round_trips = ROUND_TRIPS[size_name]
    try:
        print(
            asyncio.run(
                run(levels, sessions, args.out, not args.no_memory, warmups, round_trips, only)
            )
        )
    except RuntimeError as exc:
        print(f"bench.peers failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
