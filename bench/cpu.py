"""The broker's own CPU per lease cycle, and where it goes.

    .venv/bin/python -m bench.cpu [--clients 1,4] [--cycles 40] [--batches 5]
                                  [--tree DIR ...] [--py-spy] [--out bench-results]

One lease cycle is what `bench.peers` times: Acquire a context lease (Chromium), one Run of
`goto` a tiny page served over HTTP on loopback by a separate process and `text("h1")`,
Release. Clients loop through the Python SDK from this process.

The figure is the broker process's CPU seconds (user + system, from /proc through psutil) over a
batch of `--cycles` cycles, divided by the cycles: it counts the daemon's Python (gRPC, the lease
table, the engine's steps, Playwright's client side, the egress route, telemetry), not the
browsers nor Playwright's Node driver (reported beside it). CPU time stays meaningful on a loaded
machine, where throughput does not. Each level runs `--batches` batches and reports the median
and the range; work a batch leaves in the background (a context closing, a pool refill) lands
in the next batch of the same broker, which averages out over many cycles.

Brokers run with the security defaults (egress route for every page, renderer sandbox and the
unprivileged browser user, filesystem jail), a warm pool of 4 and capacity 32 as in bench.peers,
with loopback allowed for the page. `--tree DIR` (repeatable) runs a broker from each source tree
(e.g. a `git worktree` of an older commit), side by side, batches interleaved, for an A/B figure
under the same load; by default, one broker from this checkout.

Then, over `--profile-cycles` more cycles at the highest client count: `--cprofile` profiles each
broker's event-loop thread in CPU time (cProfile with process_time, toggled by SIGUSR2 from a
launcher), writes `cpu-<label>.pstats` to `--out` and prints self CPU by part of the broker (a C
function's time goes to its callers' parts) and the inclusive CPU of its main entry points;
`--py-spy` records each broker with py-spy (200 Hz, non-blocking, samples holding the GIL) to
`cpu-<label>.speedscope.json` (https://www.speedscope.app) and prints the samples by part. On a
loaded machine py-spy's GIL samples include time the thread was runnable but descheduled, which
piles up after syscalls: read its shares with that in mind, and cProfile's for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.peer_systems import BrokerSdk, PageServer
from bench.peers import CAPACITY, POOL, machine
from tests.support import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent
# Parts of the broker by source path, innermost match wins for the exclusive share. Order matters
# only where paths nest (the first pattern that matches a frame's file names its part).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("egress route (broker/egress)", ("/broker/egress/",)),
    ("CDP interrupter", ("/broker/engines/chromium.py",)),
    ("steps and pages (broker/engines)", ("/broker/engines/",)),
    (
        "lease table, runs, warm pool (broker/leases, broker/warm)",
        ("/broker/leases/", "/broker/warm/"),
    ),
    ("gRPC service, decode, encode (broker/api)", ("/broker/api/",)),
    ("telemetry (broker/observe, opentelemetry)", ("/broker/observe/", "/opentelemetry/")),
    ("broker, other (common, runtime, warm pool)", ("/broker/common/", "/broker/runtime/")),
    ("protobuf", ("/google/protobuf/",)),
    ("gRPC (grpc.aio, Cython)", ("/grpc/", "grpc/_cython")),
    ("Playwright client (connection, channels)", ("/playwright/",)),
    ("greenlet", ("/greenlet/",)),
    ("logging", ("/logging/",)),
    ("h11 (HTTP framing)", ("/h11/",)),
    ("json", ("/json/",)),
    ("traceback, linecache, inspect", ("/traceback.py", "/linecache.py", "/inspect.py")),
    ("psutil", ("/psutil/",)),
)
# Counted only when no part above is on the stack: the loop's own work, and callbacks in C that
# it runs (gRPC's server is Cython: its frames are invisible without --native).
LOOP = ("event loop, C callbacks (gRPC's Cython)", ("/asyncio/", "/selectors.py"))


@dataclass
class Broker:
    """A broker subprocess from a source tree (this checkout by default)."""

    label: str
    tree: Path
    cprofile: Path | None = None  # where SIGUSR2 toggles a CPU-time profile of the main thread
    process: BrokerProcess = field(init=False)
    sdk: BrokerSdk | None = None

    def start(self, url: str) -> None:
        args = ["--warm-pool-size", str(POOL), "--capacity", str(CAPACITY)]
        if self.tree == ROOT and self.cprofile is None:
            self.process = BrokerProcess(args=args)
        else:  # the tree's own code, whatever the editable install points at
            path = os.pathsep.join([str(self.tree), str(self.tree / "client")])
            self.process = TreeBrokerProcess(
                args=args, env={"PYTHONPATH": path}, tree=self.tree, cprofile=self.cprofile
            )
        self.process.start()
        self.sdk = BrokerSdk(self.process, url)

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def cpu(self) -> tuple[float, float]:
        """(the broker process's CPU seconds, its Node drivers' CPU seconds)."""
        own = psutil.Process(self.pid)
        times = own.cpu_times()
        driver = 0.0
        for child in own.children():  # Playwright's drivers are the broker's own children
            try:
                if Path(child.cmdline()[0]).name == "node":
                    t = child.cpu_times()
                    driver += t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return times.user + times.system, driver


@dataclass
class TreeBrokerProcess(BrokerProcess):
    """`browser-broker serve` run from another source tree (PYTHONPATH wins over the editable
    install's finder, which comes after the path finder)."""

    tree: Path = ROOT
    cprofile: Path | None = None

    def start(self, timeout_s: float = 60) -> BrokerProcess:
        import tests.support as support

        launcher = Path(tempfile.mkdtemp(prefix="bench-cpu-")) / "browser-broker"
        launcher.write_text(
            f"#!{sys.executable}\nimport sys\n"
            f"sys.path[:0] = [{str(self.tree)!r}, {str(self.tree / 'client')!r}]\n"
            + (PROFILER.format(out=str(self.cprofile)) if self.cprofile else "")
            + "from broker.daemon.cli import main\nsys.exit(main())\n"
        )
        launcher.chmod(0o755)
        saved = support.BROKER_BIN
        support.BROKER_BIN = launcher
        try:
            return super().start(timeout_s)
        finally:
            support.BROKER_BIN = saved


# The broker's main thread (its event loop) profiled in CPU time between two SIGUSR2s.
PROFILER = """import cProfile, signal, time
_profile, _on = cProfile.Profile(time.process_time), []
def _toggle(*_):
    if _on:
        _profile.disable(); _profile.dump_stats({out!r}); _on.clear()
    else:
        _profile.enable(); _on.append(1)
signal.signal(signal.SIGUSR2, _toggle)
"""


# Entry points whose CPU (with all they call) the cProfile table shows; they overlap.
ENTRIES = (
    ("Playwright: the driver's messages read and dispatched", "_impl/_transport.py", "run"),
    ("Playwright: calls sent (wrap_api_call)", "_impl/_connection.py", "wrap_api_call"),
    ("Playwright: listeners added (page.on)", "_impl/_async_base.py", "on"),
    ("egress route: connections handled", "broker/egress/proxy.py", "_handle"),
    ("egress route: routes opened", "broker/egress/proxy.py", "open_route"),
    ("gRPC unary handlers (Acquire, Release, ...)", "broker/api/errors.py", "wrapper"),
    ("session opened (engine)", "broker/engines/playwright/engine.py", "open_session"),
    ("steps performed (engine)", "broker/engines/playwright/session.py", "_perform"),
    ("warm pool refills", "broker/warm/pool.py", "_refill_forever"),
    ("waiting in epoll (syscall)", "~", "<method 'poll' of 'select.epoll' objects>"),
)


@dataclass
class Batch:
    clients: int
    cycles: int
    broker_s: float
    driver_s: float
    wall_s: float

    @property
    def broker_ms(self) -> float:
        return self.broker_s * 1000 / self.cycles

    @property
    def driver_ms(self) -> float:
        return self.driver_s * 1000 / self.cycles


async def batch(broker: Broker, clients: int, cycles: int) -> Batch:
    sdk = broker.sdk
    assert sdk is not None
    per_client = max(1, cycles // clients)
    before, driver_before = broker.cpu()
    started = time.perf_counter()

    async def client() -> None:
        for _ in range(per_client):
            await sdk.session()  # raises on any failure: a failed cycle fails the run

    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    after, driver_after = broker.cpu()
    return Batch(clients, per_client * clients, after - before, driver_after - driver_before, wall)


async def profile(broker: Broker, clients: int, cycles: int, out: Path) -> Path:
    """Records the broker with py-spy over one batch; returns the speedscope file."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    path = out / f"cpu-{broker.label}.speedscope.json"
    command = [spy, "record", "--pid", str(broker.pid), "--rate", "200", "--nonblocking"]
    command += ["--gil"]  # only samples holding the GIL: the broker's Python at work, not waits
    command += ["--format", "speedscope", "--output", str(path)]
    recorder = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await asyncio.sleep(1.0)  # py-spy attaches
        if recorder.returncode is not None:
            assert recorder.stderr is not None
            problem = (await recorder.stderr.read()).decode()[:500]
            raise RuntimeError(f"py-spy did not start: {problem}")
        await batch(broker, clients, cycles)
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            await asyncio.wait_for(recorder.wait(), 60)
        except TimeoutError:
            recorder.kill()
            await recorder.wait()
    if not path.exists():
        raise RuntimeError("py-spy wrote no profile (it needs ptrace: root or CAP_SYS_PTRACE)")
    return path


async def cpu_profile(broker: Broker, clients: int, cycles: int) -> Path:
    """Profiles the broker's event loop thread in CPU time over one batch; returns the stats."""
    path = broker.cprofile
    assert path is not None
    await asyncio.to_thread(path.unlink, missing_ok=True)
    os.kill(broker.pid, signal.SIGUSR2)
    try:
        await batch(broker, clients, cycles)
    finally:
        os.kill(broker.pid, signal.SIGUSR2)
    for _ in range(600):  # written from the broker's main thread when it next runs Python
        if await asyncio.to_thread(path.exists):
            await asyncio.sleep(2.0)  # the dump finishes
            return path
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the broker wrote no profile to {path}")


def cpu_table(path: Path, top: int) -> str:
    """Self CPU time by part; a C function's time goes to its callers' parts, pro rata."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    parts: dict[str, float] = {}
    for (file, _, _), (_, _, own, _, callers) in stats.items():
        if file != "~" or not callers:
            name = part_of(file) or ("other (stdlib, C)" if file != "~" else LOOP[0])
            parts[name] = parts.get(name, 0.0) + own
            continue
        weight = sum(c[2] + c[3] for c in callers.values()) or 1.0
        for (caller_file, _, _), c in callers.items():
            name = part_of(caller_file) or "other (stdlib, C)"
            parts[name] = parts.get(name, 0.0) + own * (c[2] + c[3]) / weight
    lines = [f"{path.name}: {total:.2f} s CPU on the event loop thread", "", "| part | share |"]
    lines.append("|---|---:|")
    for name, spent in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {spent / total:.1%} |")
    lines += ["", "| inclusive (overlapping) | share |", "|---|---:|"]
    for label, suffix, func in ENTRIES:
        spent = sum(v[3] for k, v in stats.items() if k[0].endswith(suffix) and k[2] == func)
        lines.append(f"| {label} | {spent / total:.1%} |")
    lines += ["", "| top functions (self CPU) | share |", "|---|---:|"]
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    for (file, line, name), entry in ranked:
        where = file.rsplit("site-packages/", 1)[-1].replace(str(ROOT) + "/", "")
        lines.append(f"| `{name}` ({where}:{line}) | {entry[2] / total:.1%} |")
    return "\n".join(lines)


def part_of(file: str) -> str | None:
    for name, patterns in (*PARTS, LOOP):
        if any(p in file for p in patterns):
            return name
    return None


def profile_table(path: Path) -> str:
    """py-spy's samples by part: exclusive (the innermost part on the stack), and inclusive."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    exclusive: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    stacks = [stack for prof in data["profiles"] for stack in prof["samples"]]  # root first
    for stack in stacks:
        named = [p for p in (part_of(frames[i].get("file", "")) for i in stack) if p is not None]
        owner = next((p for p in reversed(named) if p != LOOP[0]), None)
        owner = owner or (named[-1] if named else "other (stdlib, threads)")
        exclusive[owner] = exclusive.get(owner, 0) + 1
        for part in set(named):
            inclusive[part] = inclusive.get(part, 0) + 1
    if not stacks:
        return f"{path.name}: no samples"
    total = len(stacks)
    lines = [
        f"{path.name}: {total} samples",
        "",
        "| part | exclusive | inclusive |",
        "|---|---:|---:|",
    ]
    for name, n in sorted(exclusive.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {n / total:.0%} | {inclusive.get(name, n) / total:.0%} |")
    return "\n".join(lines)


def table(results: dict[str, dict[int, list[Batch]]], levels: list[int]) -> str:
    lines = [
        "| broker | clients | cycles | broker CPU ms/cycle, median (min-max) "
        "| driver CPU ms/cycle | cycles/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, by_level in results.items():
        for clients in levels:
            batches = by_level[clients]
            ms = [b.broker_ms for b in batches]
            rate = sum(b.cycles for b in batches) / sum(b.wall_s for b in batches)
            lines.append(
                f"| {label} | {clients} | {sum(b.cycles for b in batches)} "
                f"| {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) "
                f"| {statistics.median(b.driver_ms for b in batches):.1f} | {rate:.2f} |"
            )
    return "\n".join(lines)


async def run(args: argparse.Namespace, trees: list[Path], out: Path) -> str:
    levels = [int(c) for c in args.clients.split(",")]
    brokers = [Broker(label_of(t, trees), t) for t in trees]
    for broker in brokers if args.cprofile else []:
        broker.cprofile = out / f"cpu-{broker.label}.pstats"
    pages = PageServer().start()
    loads = [psutil.getloadavg()[0]]
    try:
        for broker in brokers:
            broker.start(pages.url)
            assert broker.sdk is not None
            await broker.sdk.start()
            for _ in range(args.warmups):  # first launch, first render, imports
                await broker.sdk.session()
        results: dict[str, dict[int, list[Batch]]] = {b.label: {} for b in brokers}
        for clients in levels:
            for turn in range(args.batches):
                order = brokers[turn % len(brokers) :] + brokers[: turn % len(brokers)]
                for broker in order:
                    done = await batch(broker, clients, args.cycles)
                    results[broker.label].setdefault(clients, []).append(done)
                    print(
                        f"  {broker.label}, {clients} clients, batch {turn + 1}: "
                        f"{done.broker_ms:.1f} ms broker CPU per cycle, "
                        f"{done.driver_ms:.1f} ms driver, {done.cycles / done.wall_s:.2f} cycles/s",
                        flush=True,
                    )
                loads.append(psutil.getloadavg()[0])
        report = [table(results, levels)] if args.batches else []
        for broker in brokers if args.cprofile else []:
            path = await cpu_profile(broker, max(levels), args.profile_cycles)
            report += ["", cpu_table(path, args.top)]
        if args.py_spy:
            for broker in brokers:
                path = await profile(broker, max(levels), args.profile_cycles, out)
                report += ["", profile_table(path)]
        info = ", ".join(f"{k} {v}" for k, v in machine().items())
        report += [
            "",
            f"{args.batches} batches of {args.cycles} cycles per broker and level; load average "
            f"(1 min) {min(loads):.2f} to {max(loads):.2f}. Machine: {info}",
        ]
        return "\n".join(report)
    finally:
        for broker in brokers:
            if broker.sdk is not None:
                await broker.sdk.stop()
            if hasattr(broker, "process"):
                broker.process.stop()
        pages.stop()


def label_of(tree: Path, trees: list[Path]) -> str:
    head = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    name = tree.name if len({t.name for t in trees}) == len(trees) else str(tree)
    return f"{name}@{head}" if head else name


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    parser.add_argument("--cycles", type=int, default=40, help="lease cycles per batch")
    parser.add_argument("--batches", type=int, default=5, help="batches per broker and level")
    parser.add_argument("--warmups", type=int, default=3, help="untimed cycles per broker")
    parser.add_argument(
        "--tree", action="append", default=[], help="a source tree to run a broker from"
    )
    parser.add_argument("--py-spy", action="store_true", help="record each broker with py-spy")
    parser.add_argument(
        "--cprofile", action="store_true", help="profile each broker's loop in CPU time"
    )
    parser.add_argument("--profile-cycles", type=int, default=100, help="cycles recorded")
    parser.add_argument("--out", default=str(ROOT / "bench-results"), help="py-spy's files")
    parser.add_argument("--top", type=int, default=15, help="top functions listed")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.tree] or [ROOT]
    out = Path(args.out)
    if args.py_spy or args.cprofile:
        out = out.resolve()
        out.mkdir(parents=True, exist_ok=True)
    try:
        print(asyncio.run(run(args, trees, out)))
    except RuntimeError as exc:
        print(f"bench.cpu failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
