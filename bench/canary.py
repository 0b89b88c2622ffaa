"""Event-loop canary: one tenant's Run latency and the health check, idle and while another tenant
sends the worst inputs it may.

    .venv/bin/python -m bench.canary [--samples 40] [--busy] [--engine chromium]

One broker subprocess (tenants `canary` and `hostile`, capacity 6, the hostile tenant at most 3
leases and 2 queued Acquires, GetStatus at its default rate limit) and a local fixture site. The
canary holds one lease and runs `goto` + `text` on a small page, one Run after another; beside it
the gRPC health check is called back to back. Each condition measures both, in the same run:

- `idle`: nothing else;
- `attack`: the hostile tenant (`bench.hostile_tenant`, a process of its own, holding its whole
  quota) sends the worst inputs the edge lets through, all at once and in a loop: 64 worst-case
  globs in `block_url_patterns` with a page requesting 8 KiB URLs; the same globs in
  `wait_for_url`, `wait_for_response` and `switch_page` at an 8 KiB URL; Runs of the most steps
  with 64-deep `arg_json` filling the largest message; scripts of the longest size; `evaluate`
  results of the largest size; 4 KiB selectors; GetStatus floods; Acquires past its quota.

`--busy` adds both conditions again with one core kept busy by `stress-ng --cpu 1` (or a Python
spinner when stress-ng is missing). Prints p50, p99 and max per condition.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.hostile_tenant import Tally
from browserbroker import AsyncBrokerClient, AsyncLease, Engine, steps
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess

TOKENS = {"canary": "canary-token-0123456789", "hostile": "hostile-token-0123456789"}
HOSTILE_MAX_LEASES = 3
ENGINES = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}
WARMUP_S = 3.0
ROOT = Path(__file__).resolve().parent.parent


def tenants() -> list[dict[str, Any]]:
    digests = {name: hashlib.sha256(token.encode()).hexdigest() for name, token in TOKENS.items()}
    return [
        {"name": "canary", "token_sha256": [digests["canary"]]},
        {
            "name": "hostile",
            "token_sha256": [digests["hostile"]],
            "max_leases": HOSTILE_MAX_LEASES,
            "max_queued": 2,
        },
    ]


def start_broker(engine: str) -> BrokerProcess:
    return BrokerProcess(
        args=[
            *("--warm-pool-size", "0", "--capacity", "6"),
            *("--engines", engine, "--default-engine", engine),
        ],
        env={"BROKER_TENANTS": json.dumps(tenants()), "BROKER_STATUS_REQUESTS_PER_S": "20"},
    ).start()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Figures:
    """One condition's samples, seconds."""

    condition: str
    runs: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    failed_runs: int = 0

    def row(self) -> str:
        def cells(values: list[float]) -> str:
            ms = [v * 1000 for v in values]
            return (
                f"{len(ms)} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.99):.0f} "
                f"| {max(ms):.0f}"
            )

        return (
            f"| {self.condition} | {cells(self.runs)} | {cells(self.health)} | {self.failed_runs} |"
        )


TABLE_HEAD = [
    "| condition | canary Runs | Run p50 ms | Run p99 ms | Run max ms "
    "| health checks | health p50 ms | health p99 ms | health max ms | failed Runs |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


async def health_loop(client: AsyncBrokerClient, out: list[float], stop: asyncio.Event) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    while not stop.is_set():
        started = time.monotonic()
        with contextlib.suppress(Exception):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=60)
        out.append(time.monotonic() - started)
        await asyncio.sleep(0.05)


async def measure(
    condition: str, lease: AsyncLease, client: AsyncBrokerClient, site: FixtureSite, samples: int
) -> Figures:
    """The canary's Runs, one after another, with the health check called beside them."""
    figures = Figures(condition)
    stop = asyncio.Event()
    checker = asyncio.create_task(health_loop(client, figures.health, stop))
    try:
        for _ in range(samples):
            started = time.monotonic()
            result = await lease.run(
                steps.goto(site.url("form.html")), steps.text("#title"), timeout=60
            )
            figures.runs.append(time.monotonic() - started)
            figures.failed_runs += not result.ok
    finally:
        stop.set()
        await checker
    return figures


# ------------------------------------------------------------------------------ conditions


def busy_core() -> subprocess.Popen[bytes]:
    """One core kept busy until killed."""
    if shutil.which("stress-ng"):
        return subprocess.Popen(
            ["stress-ng", "--cpu", "1", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


class HostileTenant:
    """`bench.hostile_tenant` as a child process: started, ready (its leases held), stopped."""

    def __init__(self, address: str, site: FixtureSite, engine: str) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.hostile_tenant"),
                *(address, TOKENS["hostile"], site.url("")),
                *("--engine", engine, "--leases", str(HOSTILE_MAX_LEASES)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self, timeout_s: float = 120) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout_s)
        if line.strip() != "ready":
            raise RuntimeError(f"the hostile tenant did not start: {line!r}")

    def stop(self) -> Tally:
        """Its tally of outcomes, once it has released its leases."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {}
        last = out.strip().splitlines()[-1:] or ["{}"]
        tally: Tally = json.loads(last[0])
        return tally


async def run_conditions(
    address: str, site: FixtureSite, engine: str, samples: int, loads: list[str]
) -> tuple[list[Figures], Tally]:
    """Every condition against one broker, in one run: for each load, idle then attack."""
    results: list[Figures] = []
    tally: Tally = {}
    async with (
        AsyncBrokerClient(address, token=TOKENS["canary"]) as canary,
        canary.lease(engine=ENGINES[engine], ttl=3600, idle_timeout=600) as lease,
    ):
        await lease.run(steps.goto(site.url("form.html")))  # the first page load is not counted
        for load in loads:
            spinner = busy_core() if load == "busy" else None
            suffix = "" if load == "quiet" else ", one core busy"
            try:
                results.append(await measure(f"idle{suffix}", lease, canary, site, samples))
                hostile = HostileTenant(address, site, engine)
                try:
                    await hostile.ready()
                    await asyncio.sleep(WARMUP_S)  # every attack under way
                    results.append(await measure(f"attack{suffix}", lease, canary, site, samples))
                finally:
                    for name, counts in (await asyncio.to_thread(hostile.stop)).items():
                        mine = tally.setdefault(name, {})
                        for outcome, n in counts.items():
                            mine[outcome] = mine.get(outcome, 0) + n
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    return results, tally


def table(engine: str, samples: int, results: list[Figures], tally: Tally) -> str:
    lines = [f"{engine}, {samples} canary Runs per condition.", "", *TABLE_HEAD]
    lines += [r.row() for r in results]
    lines += ["", "The hostile tenant's calls, over its conditions (outcome: count):", ""]
    for name, counts in sorted(tally.items()):
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


async def run(samples: int, loads: list[str], engine: str) -> str:
    site = FixtureSite().start()
    broker = start_broker(engine)
    try:
        results, tally = await run_conditions(broker.address, site, engine, samples, loads)
    finally:
        broker.stop()
        site.stop()
    return table(engine, samples, results, tally)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.canary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=40, help="canary Runs per condition")
    parser.add_argument("--busy", action="store_true", help="also with one core kept busy")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="chromium")
    args = parser.parse_args()
    loads = ["quiet", "busy"] if args.busy else ["quiet"]
    print(asyncio.run(run(args.samples, loads, args.engine)))


if __name__ == "__main__":
    main()
