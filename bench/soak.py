"""Chaos soak: many lease cycles from concurrent clients against a real Chromium broker, with faults.

    .venv/bin/python -m bench.soak --cycles 2000 --clients 8 --capacity 6 [--recycle-after 100]

Faults injected at random: short deadlines, client cancels, dropped channels, double and
concurrent releases, forged and unknown lease ids, abandoned leases left to their TTL, SIGKILL of
the browser, renderer crashes. The shared browser is also recycled every `--recycle-after`
sessions, so leases keep running on a retiring browser while new ones go to a fresh one. At the
end (and sampled throughout) it checks the broker's own view against reality and prints a table:
leaked leases/contexts/pages/processes, drift repairs, leases released more or less than once
(from the broker's structured release log), RSS growth. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil

from browserbroker import AsyncBrokerClient, AsyncLease, BrokerError, OnCancel, steps
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess

SCENARIOS = {
    "normal": 38,
    "short_deadline": 10,
    "client_cancel": 10,
    "dropped_channel": 6,
    "double_release": 10,
    "forged_ids": 6,
    "abandoned": 5,
    "tiny_acquire_deadline": 8,
    "renderer_crash": 4,
    "browser_kill": 3,
}


@dataclass
class SoakReport:
    cycles: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unexpected: list[str] = field(default_factory=list)
    granted: set[str] = field(default_factory=set)
    samples: list[dict[str, float]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        f = self.figures
        return (
            not self.unexpected
            and f.get("leaked leases") == 0
            and f.get("leaked contexts") == 0
            and f.get("leaked pages") == 0
            and f.get("leaked browser processes") == 0
            and f.get("drift repairs") == 0
            and f.get("leases not released exactly once") == 0
        )

    def table(self) -> str:
        rows = [("cycles", str(self.cycles))]
        rows += [(k, str(v)) for k, v in self.figures.items()]
        rows += [
            (f"scenario {k}", f"{v} (mean {self.seconds[k] / v:.2f}s)")
            for k, v in sorted(self.scenarios.items())
        ]
        rows += [(f"outcome {k}", str(v)) for k, v in sorted(self.outcomes.items())]
        rows.append(("unexpected errors", str(len(self.unexpected))))
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
        return "\n".join(lines)


class Soak:
    def __init__(
        self, broker: BrokerProcess, site: FixtureSite, cycles: int, clients: int, seed: int
    ) -> None:
        self.broker = broker
        self.site = site
        self.total = cycles
        self.clients = clients
        self.rng = random.Random(seed)
        self.report = SoakReport()
        self._next = 0
        self._last_kill = 0

    def _take(self) -> int | None:
        if self._next >= self.total:
            return None
        self._next += 1
        return self._next

    async def run(self) -> SoakReport:
        async with AsyncBrokerClient(self.broker.address) as client:
            await self._settle(client)
            proc = psutil.Process(self.broker.proc.pid)  # type: ignore[union-attr]
            rss_start = proc.memory_info().rss
            workers = [asyncio.create_task(self._worker(client, i)) for i in range(self.clients)]
            sampler = asyncio.create_task(self._sample(client, proc))
            await asyncio.gather(*workers)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            status = await self._settle(client)
            rss_end = proc.memory_info().rss
        self._final_figures(status, rss_start, rss_end)
        return self.report

    async def _settle(self, client: AsyncBrokerClient) -> pb.GetStatusResponse:
        """Waits (bounded) for abandoned leases to expire and the pool to refill."""
        deadline = time.monotonic() + 60
        while True:
            status = await client.status()
            engine = status.engines[0]
            quiet = (
                status.active_leases == 0 and status.queued == 0 and engine.browsers_retiring == 0
            )
            pool_full = status.warm_pool_size == self.broker_pool
            if (
                quiet and pool_full and engine.contexts == status.warm_pool_size
            ) or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)

    broker_pool = 2

    async def _sample(self, client: AsyncBrokerClient, proc: psutil.Process) -> None:
        while True:
            await asyncio.sleep(2)
            status = await client.status()
            engine = status.engines[0]
            self.report.samples.append(
                {
                    "active": status.active_leases,
                    "queued": status.queued,
                    "contexts": engine.contexts,
                    "pages": engine.pages,
                    "browsers": engine.browsers,
                    "rss_mb": proc.memory_info().rss / 2**20,
                }
            )
            if status.active_leases > status.capacity:
                self.report.unexpected.append(
                    f"active {status.active_leases} > capacity {status.capacity}"
                )

    async def _worker(self, client: AsyncBrokerClient, worker: int) -> None:
        names = list(SCENARIOS)
        weights = list(SCENARIOS.values())
        while (cycle := self._take()) is not None:
            scenario = self.rng.choices(names, weights)[0]
            started = time.monotonic()
            if scenario == "browser_kill" and cycle - self._last_kill < 150:
                scenario = "normal"
            self.report.scenarios[scenario] += 1
            try:
                outcome = await getattr(self, f"_{scenario}")(client, cycle)
            except BrokerError as error:
                outcome = f"{scenario}:{error.code.name}"
                if error.code.name not in _EXPECTED.get(scenario, set()):
                    self.report.unexpected.append(f"cycle {cycle} {scenario}: {error}")
            except Exception as error:
                outcome = f"{scenario}:{type(error).__name__}"
                self.report.unexpected.append(f"cycle {cycle} {scenario}: {error!r}")
            self.report.outcomes[outcome] += 1
            self.report.cycles += 1
            self.report.seconds[scenario] += time.monotonic() - started

    async def _acquire(self, client: AsyncBrokerClient, **kw: Any) -> AsyncLease:
        lease = await client.acquire(timeout=30, **kw)
        self.report.granted.add(lease.id)
        return lease

    async def _normal(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        result = await lease.run(
            steps.goto(self.site.url("form.html")),
            steps.fill("#name", f"c{cycle}"),
            steps.click("#go"),
            steps.text("#out"),
            timeout=20,
        )
        await lease.release()
        if not result.ok:
            return "normal:step_failed"  # a step hit an injected crash
        if result[3].text != f"Hello, c{cycle}":
            self.report.unexpected.append(f"cycle {cycle}: wrong text {result[3].text!r}")
        return "normal:ok"

    async def _short_deadline(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        policy = self.rng.choice([OnCancel.KEEP_LEASE, OnCancel.RELEASE_LEASE])
        try:
            await lease.run(
                steps.goto(self.site.url("slow?seconds=5")), timeout=0.3, on_cancel=policy
            )
        except BrokerError as error:
            if error.code.name != "DEADLINE_EXCEEDED":
                raise
        outcome = await lease.release()
        if not outcome.released_now and outcome.reason in CHAOS_REASONS:
            return "short_deadline:ended_by_injected_crash"
        if policy is OnCancel.KEEP_LEASE and not outcome.released_now:
            self.report.unexpected.append(
                f"cycle {cycle}: kept lease ended early: {outcome.reason}"
            )
        if policy is OnCancel.RELEASE_LEASE and outcome.released_now:
            # Legitimate only when the deadline passed before the broker began the Run.
            return "short_deadline:run_never_started"
        return f"short_deadline:{policy.name.lower()}"

    async def _client_cancel(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        ping = uuid.uuid4().hex
        task = asyncio.create_task(
            lease.run(
                steps.goto(self.site.url(f"ping-loop.html?id={ping}")),
                steps.evaluate("new Promise(() => {})"),
                timeout=20,
            )
        )
        await asyncio.sleep(self.rng.uniform(0.05, 0.4))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BrokerError):
            await task
        await lease.release()
        return "client_cancel:ok"

    async def _dropped_channel(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        channel = grpc.aio.insecure_channel(self.broker.address)
        stub = broker_pb2_grpc.BrowserBrokerServiceStub(channel)
        call = stub.Run(
            pb.RunRequest(
                lease_id=lease.id,
                token=lease.grant.token,
                steps=[steps.goto(self.site.url("slow?seconds=5"))],
            )
        )
        reader = asyncio.ensure_future(call.read())
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        await channel.close(grace=None)
        await asyncio.gather(reader, return_exceptions=True)
        await lease.release()
        return "dropped_channel:ok"

    async def _double_release(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        outcomes = await asyncio.gather(*(lease.release() for _ in range(self.rng.randint(2, 4))))
        if (
            sum(o.released_now for o in outcomes) != 1
            or len({o.released_at for o in outcomes}) != 1
        ):
            self.report.unexpected.append(f"cycle {cycle}: releases {outcomes}")
        return "double_release:ok"

    async def _forged_ids(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        codes = []
        for lease_id, token in (
            ("lease-" + uuid.uuid4().hex, "x" * 32),
            (lease.id, "forged-token"),
        ):
            try:
                await client.stub.Release(pb.ReleaseRequest(lease_id=lease_id, token=token))
                codes.append("OK")
            except grpc.aio.AioRpcError as error:
                codes.append(error.code().name)
        await lease.release()
        if codes != ["NOT_FOUND", "PERMISSION_DENIED"]:
            self.report.unexpected.append(f"cycle {cycle}: forged ids answered {codes}")
        return "forged_ids:ok"

    async def _abandoned(self, client: AsyncBrokerClient, cycle: int) -> str:
        await self._acquire(client, ttl=2, idle_timeout=1)  # never released: TTL/idle must end it
        return "abandoned:ok"

    async def _tiny_acquire_deadline(self, client: AsyncBrokerClient, cycle: int) -> str:
        try:
            lease = await client.acquire(timeout=0.005)
        except BrokerError as error:
            if error.code.name != "DEADLINE_EXCEEDED":
                raise
            return "tiny_acquire_deadline:deadline"
        self.report.granted.add(lease.id)
        await lease.release()
        return "tiny_acquire_deadline:granted"

    def _browser_pids(self) -> list[int]:
        pids = []
        for proc in psutil.Process(self.broker.proc.pid).children(recursive=True):  # type: ignore[union-attr]
            with contextlib.suppress(psutil.Error):
                cmd = proc.cmdline()
                # The browser itself, not its helpers: in the jail's PID namespace Chromium's
                # crashpad handlers stay below the broker (they end with the jail).
                if (
                    cmd
                    and os.path.basename(cmd[0]) in _BROWSER_EXECUTABLES
                    and not any(a.startswith("--type=") for a in cmd)
                ):
                    pids.append(proc.pid)
        return pids

    async def _renderer_crash(self, client: AsyncBrokerClient, cycle: int) -> str:
        lease = await self._acquire(client, ttl=30)
        await lease.run(steps.goto(self.site.url("form.html")), timeout=20)
        renderers = []
        for pid in self._browser_pids():
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):  # a zombie must not end the listing
                        if "--type=renderer" in child.cmdline():
                            renderers.append(child)
        if renderers:
            with contextlib.suppress(psutil.Error):
                self.rng.choice(renderers).kill()
        await asyncio.sleep(0.3)
        await lease.release()
        return "renderer_crash:ok"

    async def _browser_kill(self, client: AsyncBrokerClient, cycle: int) -> str:
        self._last_kill = cycle
        lease = await self._acquire(client, ttl=30)
        for pid in self._browser_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        outcome = await lease.release()
        return f"browser_kill:{'released_now' if outcome.released_now else outcome.reason}"

    def _final_figures(self, status: pb.GetStatusResponse, rss_start: int, rss_end: int) -> None:
        engine = status.engines[0]
        releases: Counter[str] = Counter()
        for line in self.broker.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == "lease released":
                    releases[entry["lease_id"]] += 1
        not_once = [lid for lid in self.report.granted if releases[lid] != 1]
        not_once += [lid for lid, n in releases.items() if n > 1 and lid not in self.report.granted]
        live_browsers = len(self._browser_pids())
        f = self.report.figures
        f["leases granted"] = len(self.report.granted)
        f["leases released (log)"] = sum(releases[lid] for lid in self.report.granted)
        f["leases not released exactly once"] = len(not_once)
        f["leaked leases"] = status.active_leases
        f["leaked contexts"] = engine.contexts - status.warm_pool_size
        f["leaked pages"] = engine.pages - status.warm_pool_size
        f["leaked browser processes"] = max(0, live_browsers - 1)
        f["queued at end"] = status.queued
        f["drift repairs"] = status.drift_repairs
        f["browsers recycled"] = engine.browsers_recycled
        f["broker RSS start MB"] = round(rss_start / 2**20, 1)
        f["broker RSS end MB"] = round(rss_end / 2**20, 1)
        f["broker RSS growth MB"] = round((rss_end - rss_start) / 2**20, 1)
        if self.report.samples:
            f["max active seen"] = max(s["active"] for s in self.report.samples)
            f["max queued seen"] = max(s["queued"] for s in self.report.samples)


# Injected crashes end whichever leases they hit, with these reasons.
CHAOS_REASONS = {"engine_crashed", "page_crashed"}

# Work that ends while a crash is injected elsewhere may see the crash: that is the contract
# (ABORTED mid-Run, FAILED_PRECONDITION after the lease ended, UNAVAILABLE when the session being
# opened for an Acquire dies with the browser or renderer the soak just killed).
_BROWSER_EXECUTABLES = {"chromium", "chrome", "headless_shell", "chrome-headless-shell"}
_CRASH_CODES = {"ABORTED", "FAILED_PRECONDITION", "UNAVAILABLE"}
_EXPECTED = {
    name: _CRASH_CODES
    for name in (
        "normal",
        "short_deadline",
        "client_cancel",
        "renderer_crash",
        "browser_kill",
        "dropped_channel",
        "double_release",
        "forged_ids",
        "abandoned",
    )
}


def run_soak(
    cycles: int, clients: int, seed: int, capacity: int = 4, recycle_after: int = 100
) -> SoakReport:
    site = FixtureSite().start()
    broker = BrokerProcess(
        args=[
            "--capacity",
            str(capacity),
            "--warm-pool-size",
            str(Soak.broker_pool),
            "--queue-limit",
            "64",
        ],
        env={
            "BROKER_RECONCILE_INTERVAL_S": "2",
            "BROKER_LOG_LEVEL": "INFO",
            "BROKER_RECYCLE_AFTER_LEASES": str(recycle_after),
        },
    ).start()
    try:
        return asyncio.run(Soak(broker, site, cycles, clients, seed).run())
    finally:
        broker.stop()
        site.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--recycle-after", type=int, default=100, help="sessions per shared browser; 0: never"
    )
    args = parser.parse_args()
    started = time.monotonic()
    report = run_soak(args.cycles, args.clients, args.seed, args.capacity, args.recycle_after)
    print(f"seed {args.seed}, {time.monotonic() - started:.0f}s wall")
    print(report.table())
    for line in report.unexpected[:20]:
        print("UNEXPECTED:", line)
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
