"""Peer benchmark: the broker beside direct Playwright, Playwright's run-server and Selenium Grid.

    scripts/selenium.sh build   # once: the Grid's jars and chromium-driver (scripts/test does it)
    .venv/bin/python -m bench.peers [--out bench-results] [--clients 1,4,16] [--quick | --smoke]

Every system does the same work per session (open an isolated session, go to a tiny page served
over HTTP on loopback, read its h1, end the session) with the same Chromium, in one run:

- the broker with a warm pool, through the Python SDK and through a raw gRPC stub;
- Playwright in this process, a new context per session, and on a page opened beforehand;
- `playwright run-server`, `connect` per session;
- Selenium Grid 4 standalone (`scripts/selenium.sh build` fetches it first), Debian's ChromeDriver.

Sweeps: 1 client (sequential, with a pause so pools refill as they would between requests),
then 4 and 16 clients looping. Systems run one after the other at each level, in an order that
rotates from level to level. Also measured against the broker: the gRPC health-check round trip
and the warm Acquire beside it (1 client), the broker process's CPU seconds per lease cycle, and
the browsers' PSS per concurrent lease at 1, 10 and 25 leases. Writes JSON and a markdown table
(medians, p90, p99, the machine and the versions) to --out, and prints the table. A peer that
cannot start fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
from playwright.async_api import async_playwright

from bench.engines import Bench as EngineBench
from bench.engines import measure_memory
from bench.peer_systems import (
    BrokerRawStub,
    BrokerSdk,
    DirectPlaywright,
    PageServer,
    PlaywrightRunServer,
    SeleniumGrid,
    System,
)
from broker.engines.discovery import find_browser, playwright_managed
from browserbroker import Engine, Isolation
from tests.support import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent
POOL = 4
CAPACITY = 32
PAUSE_S = 0.25  # between sequential sessions: the broker's pool refills, as between requests
SESSIONS = {1: 40, 4: 60, 16: 96}  # per level, split evenly over the clients
QUICK_SESSIONS = {1: 6, 4: 8, 16: 16}
# --smoke: does every peer start and give its rows? A session or two each, no figures to quote.
SMOKE_SESSIONS = {1: 2, 4: 4, 16: 16}


@dataclass
class LevelResult:
    clients: int
    sessions: int
    wall_s: float
    times_s: list[float]
    errors: list[str] = field(default_factory=list)
    broker_cpu_s: float | None = None  # the broker's Python process, over the level

    @property
    def per_s(self) -> float:
        return len(self.times_s) / self.wall_s if self.wall_s else 0.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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

    cpu_before = cpu_seconds(broker_pid)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    if clients == 1:
        wall -= PAUSE_S * per_client  # the pause is not the system's time
    cpu_after = cpu_seconds(broker_pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return LevelResult(clients, per_client * clients, wall, times, errors, cpu)


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
        for _ in range(400):  # the pool refills after the previous lease
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
    }


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


async def run(
    levels: list[int], sessions: dict[int, int], out: Path, memory: bool, warmups: int
) -> str:
    executable = find_browser("chromium", None, playwright_managed("chromium")).path
    jars = grid_jars()
    info = {"machine": machine(), "versions": versions(executable)}
    pages = PageServer().start()
    broker = BrokerProcess(
        args=["--warm-pool-size", str(POOL), "--capacity", str(CAPACITY)]
    ).start()
    results: dict[str, dict[int, LevelResult]] = {}
    floors: dict[str, list[float]] = {}
    memory_rows: dict[int, float] = {}
    try:
        async with async_playwright() as playwright:
            sdk = BrokerSdk(broker, pages.url)
            systems: list[System] = [
                sdk,
                BrokerRawStub(broker, pages.url),
                DirectPlaywright(playwright, executable, pages.url, warm_page=False),
                DirectPlaywright(playwright, executable, pages.url, warm_page=True),
                PlaywrightRunServer(playwright, executable, pages.url),
                SeleniumGrid(jars, executable, pages.url, max(levels)),
            ]
            for system in systems:
                await system.start()
            try:
                for system in systems:  # warm-up: first launches, first renders, JIT
                    for _ in range(warmups):
                        await system.prepare()
                        await system.session()
                for turn, clients in enumerate(levels):
                    order = systems[turn % len(systems) :] + systems[: turn % len(systems)]
                    for system in order:
                        pid = broker.proc.pid if system in systems[:2] and broker.proc else None
                        result = await run_level(system, clients, sessions[clients], pid)
                        results.setdefault(system.name, {})[clients] = result
                        print(f"  {system.name}, {clients} clients: {summary(result)}", flush=True)
                floors = await floor_and_warm_acquire(sdk, sessions.get(1, 20))
                if memory:
                    memory_rows = await broker_memory(broker)
            finally:
                for system in systems:
                    await system.stop()
    finally:
        broker.stop()
        pages.stop()
    report = {
        **info,
        "settings": {"pool": POOL, "capacity": CAPACITY, "pause_s": PAUSE_S, "sessions": sessions},
        "results": {
            name: {str(c): asdict(r) | {"per_s": r.per_s} for c, r in by_level.items()}
            for name, by_level in results.items()
        },
        "floor": floors,
        "pss_per_lease_mb": memory_rows,
    }
    table = markdown(report, results, floors, memory_rows, levels)
    write_report(out, report, table)
    failures = [
        f"{name} at {c} clients: {r.errors[0]} ({len(r.errors)} errors)"
        for name, by_level in results.items()
        for c, r in by_level.items()
        if r.errors
    ]
    if failures:
        raise RuntimeError("sessions failed:\n" + "\n".join(failures))
    return table


def write_report(out: Path, report: dict[str, object], table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(report, indent=2))
    (out / "peers.md").write_text(table + "\n")


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


def summary(result: LevelResult) -> str:
    if not result.times_s:
        return f"no session completed; {result.errors[:1]}"
    return (
        f"p50 {statistics.median(result.times_s) * 1000:.0f} ms, "
        f"{result.per_s:.2f} sessions/s, {len(result.errors)} errors"
    )


def markdown(
    report: dict[str, object],
    results: dict[str, dict[int, LevelResult]],
    floors: dict[str, list[float]],
    memory_rows: dict[int, float],
    levels: list[int],
) -> str:
    ms = 1000.0
    lines = [
        "| system | clients | sessions | p50 ms | p90 ms | p99 ms | sessions/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_level in results.items():
        for clients in levels:
            r = by_level[clients]
            if not r.times_s:
                lines.append(f"| {name} | {clients} | 0 | | | | |")
                continue
            lines.append(
                f"| {name} | {clients} | {len(r.times_s)} "
                f"| {statistics.median(r.times_s) * ms:.0f} | {quantile(r.times_s, 0.9) * ms:.0f} "
                f"| {quantile(r.times_s, 0.99) * ms:.0f} | {r.per_s:.2f} |"
            )
    sdk = results[BrokerSdk.name]
    lines += ["", "| broker figure | value |", "|---|---:|"]
    if floors:
        health = statistics.median(floors["health_check"])
        warm = statistics.median(floors["warm_acquire"])
        lines.append(f"| health-check round trip p50 | {health * ms:.2f} ms |")
        lines.append(f"| warm Acquire p50 | {warm * ms:.2f} ms ({warm / health:.2f}x the floor) |")
    for clients in levels:
        r = sdk[clients]
        if r.broker_cpu_s is not None and r.times_s:
            cpu_ms = r.broker_cpu_s / len(r.times_s) * ms
            lines.append(f"| broker CPU per lease cycle, {clients} clients | {cpu_ms:.1f} ms |")
    for level, mb in memory_rows.items():
        lines.append(f"| browsers' PSS per Chromium context lease, {level} held | {mb:.1f} MB |")
    lines += ["", *ratio_lines(results, levels)]
    machine_info = report["machine"]
    versions_info = report["versions"]
    assert isinstance(machine_info, dict) and isinstance(versions_info, dict)
    lines += [
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info.items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions_info.items()),
    ]
    return "\n".join(lines)


def ratio_lines(results: dict[str, dict[int, LevelResult]], levels: list[int]) -> list[str]:
    """The issue's targets, as ratios of figures from this run."""
    sdk = results[BrokerSdk.name]
    new_context = results["Playwright, new context per session"]
    warm_page = results["Playwright, warm page (opened beforehand)"]
    run_server = results[PlaywrightRunServer.name]
    grid = results[SeleniumGrid.name]

    def p50(r: LevelResult) -> float:
        return statistics.median(r.times_s) if r.times_s else float("nan")

    lines = ["| comparison (this run) | ratio |", "|---|---:|"]
    one = levels[0]
    lines.append(
        f"| broker cycle p50 / Playwright warm-page p50, {one} client "
        f"| {p50(sdk[one]) / p50(warm_page[one]):.2f} |"
    )
    for clients in levels:
        lines.append(
            f"| broker sessions/s / Playwright new-context sessions/s, {clients} clients "
            f"| {sdk[clients].per_s / new_context[clients].per_s:.2f} |"
        )
    lines.append(
        f"| run-server p50 / broker p50, {one} client | {p50(run_server[one]) / p50(sdk[one]):.2f} |"
    )
    lines.append(
        f"| Selenium Grid p50 / broker p50, {one} client | {p50(grid[one]) / p50(sdk[one]):.2f} |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="few sessions: rough figures")
    size.add_argument("--smoke", action="store_true", help="a session or two: rows, no figures")
    parser.add_argument("--no-memory", action="store_true", help="skip the PSS levels")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    base = SMOKE_SESSIONS if args.smoke else QUICK_SESSIONS if args.quick else SESSIONS
    sessions = {c: base.get(c, 6 * c) for c in levels}
    warmups = 1 if args.smoke else 2
    try:
        print(asyncio.run(run(levels, sessions, args.out, not args.no_memory, warmups)))
    except RuntimeError as exc:
        print(f"bench.peers failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
