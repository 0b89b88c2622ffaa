"""Cluster chaos soak: lease cycles through a three-node cluster while nodes and Redis die.

    .venv/bin/python -m bench.cluster_soak [--cycles 1000] [--clients 4] [--chaos-min-s 20]
        [--chaos-max-s 40] [--seed N] [--out bench-results/cluster_soak.json]

A real Redis (no persistence) and three broker processes in cluster mode on loopback
(`tests.cluster_support.Cluster`: capacity 4 and a warm pool of 1 per node, heartbeat 0.5 s,
dead after 2 s; tombstones kept two hours so that every record outlives the run). `--clients`
clients loop, each cycle being one lease's life: Acquire at a random node (30 s deadline), one to
three Runs of a cheap `evaluate` through random nodes (some instead a slow one with a short
deadline or a client cancel, with on_cancel keep or release), a KeepAlive now and then, then
Release through a random node and, sometimes, Release again through another (which must answer
released_now=false and the same outcome). Errors the chaos explains (UNAVAILABLE, NOT_FOUND just
after Redis restarts empty, FAILED_PRECONDITION for a lease that ended node_lost or that a
cancelled Run ended, the DEADLINE_EXCEEDED and CANCELLED the soak caused) are counted by kind;
a Release is retried through other nodes until it is answered.

Meanwhile, every `--chaos-min-s` to `--chaos-max-s` seconds (at random), either a random node is
SIGKILLed and started again under the same name a few seconds later (a new process, port and node
id), or Redis is killed and started again empty 1-2 s later. One fault at a time: never all the
nodes at once.

The soak keeps its own ledger: every lease granted (id, token, the node it was acquired at, the
node that holds it) and every Release answer. At the end it stops the chaos, lets the cluster
settle, releases every lease the ledger still holds open, sends one more (late) Release for every
lease, and checks:

- exactly once: every answer a lease got names the same outcome (reason and time), at most one
  said released_now=true and none after the first; no lease reaped twice (node logs);
- the records in Redis: each granted lease's record has one outcome, the one the clients were
  told; no record is left live; a lease whose record or outcome is gone is counted apart when the
  ledger explains it (its node died, and Redis restarted empty, before it could write it back);
- leaks: every live node has no lease, no queued Acquire and no closing session, the cluster has
  no live lease, and the browsers of every killed node process are gone.

Prints the figures (and writes them as JSON to `--out`); exits 1 on any exactly-once violation or
leak. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from grpc import aio

from broker.leases.lease import ReleaseReason
from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import DEAD_AFTER_S, HEARTBEAT_S, Cluster, Node
from tests.redis_server import RedisServer

NAMES = ("a", "b", "c")
CHEAP = "6 * 7"
SLOW = "new Promise(resolve => setTimeout(() => resolve(1), 3000))"
ACQUIRE_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 20.0
RELEASE_TIMEOUT_S = 10.0
RELEASE_PATIENCE_S = 60.0  # a client tries this long, through other nodes, to get an answer
LEASE_TTL_S = 300
IDLE_TIMEOUT_S = 60  # ends a lease whose grant never reached its client (its entry node died)
TOMBSTONE_TTL_S = 7200  # every outcome stays in Redis (and on its node) for the whole run
FORGOT_WINDOW_S = 10.0  # after Redis restarts empty, nodes write their leases back within this
SETTLE_S = DEAD_AFTER_S + 2 * HEARTBEAT_S + 1.0
REASONS = tuple(reason.value for reason in ReleaseReason)
# A Run or KeepAlive on a lease that ended for one of these is what the soak itself caused.
EXPECTED_ENDINGS = {"node_lost", "run_cancelled"}


@dataclass
class Answer:
    via: str  # the node (name.incarnation) that answered
    phase: str  # cycle, second, final, late
    released_now: bool
    reason: str
    released_at_us: int
    at_s: float


@dataclass
class LeaseEntry:
    lease_id: str
    token: str
    entry: str  # the node it was acquired at
    granted_at_s: float
    owner_id: str = ""  # the node id its record names
    answers: list[Answer] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # phases that got NOT_FOUND

    def release_request(self) -> pb.ReleaseRequest:
        return pb.ReleaseRequest(lease_id=self.lease_id, token=self.token)


@dataclass
class ChaosEvent:
    kind: str  # node_kill or redis_restart
    at_s: float
    back_s: float = 0.0  # when the node or Redis was started again
    node: str = ""  # the killed process (name.incarnation)


def _reason(value: int) -> str:
    return pb.ReleaseReason.Name(value).removeprefix("RELEASE_REASON_").lower()  # type: ignore[arg-type]


def _us(stamp: Any) -> int:
    return int(stamp.seconds) * 1_000_000 + int(stamp.nanos) // 1000


class ClusterSoak:
    def __init__(
        self,
        cluster: Cluster,
        cycles: int,
        clients: int,
        chaos_s: tuple[float, float],
        seed: int,
        data_dir: Path,
        max_s: float,
    ) -> None:
        self.cluster = cluster
        self.total = cycles
        self.clients = clients
        self.chaos_s = chaos_s
        self.rng = random.Random(seed)
        self.data_dir = data_dir
        self.max_s = max_s
        self.t0 = time.monotonic()
        self.reserved = 0  # cycles being acquired or done
        self.completed = 0
        self.ledger: dict[str, LeaseEntry] = {}
        self.errors: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.events: list[ChaosEvent] = []
        self.node_ids: dict[str, str] = {}  # node id -> name.incarnation
        self.calls: Counter[str] = Counter()
        self.stop_chaos = asyncio.Event()
        self.redis_down = False
        self.store: Any = aioredis.Redis.from_url(
            cluster.redis.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )

    def now(self) -> float:
        return time.monotonic() - self.t0

    def env(self, name: str, incarnation: int) -> dict[str, str]:
        folder = self.data_dir / f"{name}.{incarnation}"
        folder.mkdir(parents=True, exist_ok=True)
        return {"BROKER_DATA_DIR": str(folder)}

    def node(self, avoid: str = "") -> Node:
        return self.cluster.nodes[self.rng.choice([n for n in NAMES if n != avoid])]

    # ------------------------------------------------------------------ errors

    def _recently_forgotten(self) -> bool:
        """Redis is down, or came back empty so recently that nodes may not have written back."""
        now = self.now()
        return self.redis_down or any(
            e.kind == "redis_restart" and e.at_s <= now <= e.back_s + FORGOT_WINDOW_S
            for e in self.events
        )

    def _error(self, op: str, error: aio.AioRpcError, caused: bool = False) -> str:
        code = error.code()
        kind = f"{op} {code.name}"
        expected = code is grpc.StatusCode.UNAVAILABLE
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED) and caused:
            kind += " (caused)"
            expected = True
        elif code is grpc.StatusCode.FAILED_PRECONDITION:
            details = error.details() or ""
            ended = next((r for r in REASONS if r in details), "?")
            kind += f" ({ended})"
            expected = ended in EXPECTED_ENDINGS
        elif code is grpc.StatusCode.NOT_FOUND and self._recently_forgotten():
            kind += " (store just restarted)"
            expected = True
        self.errors[kind] += 1
        if not expected:
            self.unexpected.append(f"{self.now():.1f}s {kind}: {error.details()}")
        return kind

    # ----------------------------------------------------------------- clients

    async def worker(self) -> None:
        while self.reserved < self.total and self.now() < self.max_s:
            self.reserved += 1
            entry = await self._acquire()
            if entry is None:
                self.reserved -= 1
                await asyncio.sleep(self.rng.uniform(0.1, 0.5))
                continue
            try:
                await self._cycle(entry)
            except Exception as error:  # a bug in the soak or the client: noted, and on
                self.unexpected.append(f"{self.now():.1f}s cycle failed: {error!r}")
            self.completed += 1

    async def _acquire(self) -> LeaseEntry | None:
        node = self.node()
        request = pb.AcquireRequest()
        request.ttl.seconds = LEASE_TTL_S
        request.idle_timeout.seconds = IDLE_TIMEOUT_S
        self.calls["Acquire"] += 1
        try:
            grant = await node.client.stub.Acquire(request, timeout=ACQUIRE_TIMEOUT_S)
        except aio.AioRpcError as error:
            self._error("Acquire", error)
            return None
        entry = LeaseEntry(grant.lease_id, grant.token, node.label, self.now())
        self.ledger[entry.lease_id] = entry
        with contextlib.suppress(Exception):  # (filled in from the records at the end)
            entry.owner_id = (
                await self.store.hget(f"{self.cluster.prefix}:lease:{entry.lease_id}", "node") or ""
            )
        return entry

    async def _cycle(self, entry: LeaseEntry) -> None:
        for _ in range(self.rng.randint(1, 3)):
            if await self._run(entry):
                break  # the lease has ended
            if self.rng.random() < 0.3:
                await self._keep_alive(entry)
        first = await self._release(entry, "cycle")
        if first is not None and self.rng.random() < 0.3:
            await self._release(entry, "second", avoid=first.via.split(".")[0])

    async def _run(self, entry: LeaseEntry) -> bool:
        """One Run through a random node; True when it says the lease has ended."""
        mode = self.rng.choices(["cheap", "deadline", "cancel"], [70, 15, 15])[0]
        node = self.node()
        request = pb.RunRequest(lease_id=entry.lease_id, token=entry.token)
        if mode == "cheap":
            request.steps.append(steps.evaluate(CHEAP))
            timeout = CALL_TIMEOUT_S
        else:
            request.steps.append(steps.evaluate(SLOW))
            request.on_cancel = self.rng.choice(
                [pb.ON_CANCEL_KEEP_LEASE, pb.ON_CANCEL_RELEASE_LEASE]
            )
            timeout = self.rng.uniform(0.2, 1.0) if mode == "deadline" else CALL_TIMEOUT_S
        self.calls[f"Run {mode}"] += 1
        call = node.client.stub.Run(request, timeout=timeout)

        async def read() -> list[pb.RunResponse]:
            return [response async for response in call]

        reading = asyncio.ensure_future(read())
        if mode == "cancel":
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            call.cancel()
        try:
            answers = await reading
        except asyncio.CancelledError:
            if mode != "cancel":
                raise
            self.errors["Run CANCELLED (caused)"] += 1
            return False
        except aio.AioRpcError as error:
            kind = self._error("Run", error, caused=mode != "cheap")
            return "FAILED_PRECONDITION" in kind
        if mode == "cheap" and not (
            len(answers) == 1 and answers[0].step.ok and answers[0].step.json == "42"
        ):
            self.unexpected.append(f"{self.now():.1f}s Run answered {answers}")
        return False

    async def _keep_alive(self, entry: LeaseEntry) -> None:
        request = pb.KeepAliveRequest(lease_id=entry.lease_id, token=entry.token)
        request.ttl.seconds = LEASE_TTL_S
        self.calls["KeepAlive"] += 1
        try:
            await self.node().client.stub.KeepAlive(request, timeout=CALL_TIMEOUT_S)
        except aio.AioRpcError as error:
            self._error("KeepAlive", error)

    async def _release(
        self, entry: LeaseEntry, phase: str, avoid: str = "", patience_s: float = RELEASE_PATIENCE_S
    ) -> Answer | None:
        """Release through random nodes (not `avoid`) until one answers; None if none did.
        Once the cluster has settled (phases final and late), NOT_FOUND from every node is
        the answer: the cluster no longer knows the lease."""
        give_up = time.monotonic() + patience_s
        settled = phase in ("final", "late")
        asked: set[str] = set()  # (settled) nodes that answered NOT_FOUND
        while True:
            node = self.cluster.nodes[
                self.rng.choice([n for n in NAMES if n != avoid and n not in asked])
            ]
            self.calls[f"Release {phase}"] += 1
            try:
                response = await node.client.stub.Release(
                    entry.release_request(), timeout=RELEASE_TIMEOUT_S
                )
            except aio.AioRpcError as error:
                code = error.code()
                if settled and code is grpc.StatusCode.NOT_FOUND:
                    self.errors[f"Release NOT_FOUND ({phase}, settled)"] += 1
                    asked.add(node.name)
                    if len(asked) == len(NAMES):
                        entry.not_found.append(phase)
                        return None
                    continue
                self._error("Release", error)
                if code is grpc.StatusCode.NOT_FOUND:
                    entry.not_found.append(phase)
                elif code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return None
                if time.monotonic() > give_up:
                    return None
                await asyncio.sleep(self.rng.uniform(0.2, 0.6))
                continue
            answer = Answer(
                node.label,
                phase,
                response.released_now,
                _reason(response.reason),
                _us(response.released_at),
                self.now(),
            )
            entry.answers.append(answer)
            return answer

    # ------------------------------------------------------------------- chaos

    async def chaos(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_chaos.wait(), self.rng.uniform(*self.chaos_s))
                return
            if self.rng.random() < 0.6:
                await self._kill_node()
            else:
                await self._restart_redis()

    async def _kill_node(self) -> None:
        name = self.rng.choice(NAMES)
        node = self.cluster.nodes[name]
        event = ChaosEvent("node_kill", self.now(), node=node.label)
        self.events.append(event)
        await asyncio.to_thread(self.cluster.kill, name)
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        for attempt in range(3):
            try:
                await self.cluster.restart_node(name, **self.env(name, node.incarnation + 1))
                break
            except RuntimeError as error:  # did not start (a loaded machine): once more
                self.unexpected.append(f"{self.now():.1f}s restart of {name} failed: {error}")
                if attempt == 2:
                    raise
        event.back_s = self.now()

    async def _restart_redis(self) -> None:
        event = ChaosEvent("redis_restart", self.now())
        self.events.append(event)
        self.redis_down = True
        await asyncio.to_thread(self.cluster.redis.stop)
        await asyncio.sleep(self.rng.uniform(1.0, 2.0))
        await asyncio.to_thread(self.cluster.redis.start)
        event.back_s = self.now()
        self.redis_down = False

    async def watch(self) -> None:
        """Which node id is which process (a node fenced by the cluster takes a new id); a
        progress line on stderr every minute."""
        shown = time.monotonic()
        while True:
            if time.monotonic() - shown >= 60:
                shown = time.monotonic()
                print(
                    f"{self.now():.0f}s: {self.completed} cycles, {len(self.events)} chaos "
                    f"events, {sum(self.errors.values())} errors",
                    file=sys.stderr,
                    flush=True,
                )
            for node in list(self.cluster.nodes.values()):
                with contextlib.suppress(aio.AioRpcError):
                    status = await node.client.stub.GetStatus(pb.GetStatusRequest(), timeout=2)
                    self.node_ids.setdefault(status.cluster.node_id, node.label)
            await asyncio.sleep(1.0)

    # -------------------------------------------------------------------- run

    async def run(self) -> dict[str, Any]:
        watcher = asyncio.create_task(self.watch())
        chaos = asyncio.create_task(self.chaos())
        try:
            await asyncio.gather(*(self.worker() for _ in range(self.clients)))
            load_s = self.now()
            self.stop_chaos.set()
            await chaos
            await self.cluster.wait_formed(timeout_s=120)
            await asyncio.sleep(SETTLE_S)
            return await self._finish(load_s)
        finally:
            chaos.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(chaos, watcher, return_exceptions=True)
            await self.store.aclose()

    async def _finish(self, load_s: float) -> dict[str, Any]:
        open_at_end = [e for e in self.ledger.values() if not e.answers]
        await self._release_all(open_at_end, "final")
        await self._wait_orphans_end()
        await self._release_all(list(self.ledger.values()), "late")
        statuses = await self._wait_quiet()
        records = await self.cluster.records()
        leftover = await self._leftover_browsers()
        logs = self._read_logs()
        # Which process held each lease: its record, else the node log that released it (a
        # record lost with a Redis restart, and read while Redis was away at grant time).
        ids_by_label = {label: node_id for node_id, label in self.node_ids.items()}
        released_by = self._released_by()
        for entry in self.ledger.values():
            if not entry.owner_id:
                entry.owner_id = records.get(entry.lease_id, {}).get("node", "")
            if not entry.owner_id:
                entry.owner_id = ids_by_label.get(released_by.get(entry.lease_id, ""), "")
        return self._figures(load_s, len(open_at_end), records, statuses, leftover, logs)

    async def _release_all(self, entries: list[LeaseEntry], phase: str) -> None:
        gate = asyncio.Semaphore(8)

        async def one(entry: LeaseEntry) -> None:
            async with gate:
                await self._release(entry, phase, patience_s=30.0)

        await asyncio.gather(*(one(entry) for entry in entries))

    async def _wait_orphans_end(self) -> None:
        """Leases granted whose grant never reached the client end by idle timeout."""
        deadline = time.monotonic() + IDLE_TIMEOUT_S + 30
        while time.monotonic() < deadline:
            records = await self.cluster.records()
            if all(r.get("reason") or i in self.ledger for i, r in records.items()):
                return
            await asyncio.sleep(1.0)

    async def _wait_quiet(self) -> dict[str, pb.GetStatusResponse]:
        deadline = time.monotonic() + 60
        while True:
            statuses = {n.label: await self.cluster.status(n.name) for n in self._live()}
            quiet = all(
                s.active_leases == 0
                and s.queued == 0
                and s.closing_sessions == 0
                and s.cluster.active_leases == 0
                for s in statuses.values()
            )
            if quiet or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.5)

    def _live(self) -> list[Node]:
        return [self.cluster.nodes[name] for name in NAMES]

    async def _leftover_browsers(self) -> dict[str, int]:
        """Processes still carrying the mark of a killed node process, after up to 60 s."""
        deadline = time.monotonic() + 60
        while True:
            left = {
                node.label: len(self.cluster.leftover_browsers(node.name, node.incarnation))
                for node in self.cluster.retired
            }
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            await asyncio.sleep(1.0)

    def _released_by(self) -> dict[str, str]:
        """Lease id -> the label of the node process whose log says it released the lease."""
        found: dict[str, str] = {}
        for node in [*self.cluster.retired, *self._live()]:
            for line in node.process.log().splitlines():
                if '"lease released"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    found.setdefault(json.loads(line).get("lease_id", ""), node.label)
        return found

    def _read_logs(self) -> dict[str, Counter[str]]:
        """From every node process's log: leases reaped (by id), fencings and write-backs."""
        reaped: Counter[str] = Counter()
        fenced: Counter[str] = Counter()
        messages: Counter[str] = Counter()
        for node in [*self.cluster.retired, *self._live()]:
            for line in node.process.log().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                msg = entry.get("msg", "")
                if entry.get("level") in ("warning", "error", "critical"):
                    messages[msg] += 1
                if msg == "lease of a dead node ended":
                    reaped[entry.get("lease_id", "")] += 1
                if msg == "this node was declared dead: ending its leases and rejoining":
                    fenced[node.label] += 1
        return {"reaped": reaped, "fenced": fenced, "messages": messages}

    # ------------------------------------------------------------------ checks

    def _explained(self, entry: LeaseEntry, since_s: float) -> bool:
        """The ledger explains an outcome the cluster no longer knows: Redis restarted empty
        after `since_s`, when the node holding the lease had died (or been fenced) by then or
        died before writing it back."""
        owner = self.node_ids.get(entry.owner_id, "")
        if not owner:
            return False  # (the ledger cannot say which process held it)
        deaths = [e.at_s for e in self.events if e.kind == "node_kill" and e.node == owner]
        gone = bool(deaths) or entry.owner_id not in self._live_ids()
        for restart in self.events:
            if restart.kind != "redis_restart" or restart.back_s < since_s:
                continue
            if not gone:
                continue
            if not deaths or min(deaths) <= restart.back_s + FORGOT_WINDOW_S:
                return True
        return False

    def _live_ids(self) -> set[str]:
        live = {node.label for node in self._live()}
        return {node_id for node_id, label in self.node_ids.items() if label in live}

    def _figures(
        self,
        load_s: float,
        open_at_end: int,
        records: dict[str, dict[str, str]],
        statuses: dict[str, pb.GetStatusResponse],
        leftover: dict[str, int],
        logs: dict[str, Counter[str]],
    ) -> dict[str, Any]:
        outcomes: Counter[str] = Counter()
        disagreeing: list[str] = []
        twice_now: list[str] = []
        now_late: list[str] = []
        unanswered_explained: list[str] = []
        unanswered: list[str] = []
        forgotten_explained: list[str] = []
        forgotten: list[str] = []
        record_mismatch: list[str] = []
        record_live: list[str] = []
        records_missing = 0
        placed_elsewhere = 0
        owner_unknown = 0
        for entry in self.ledger.values():
            owner = self.node_ids.get(entry.owner_id, "")
            if not owner:
                owner_unknown += 1
            elif owner.split(".")[0] != entry.entry.split(".")[0]:
                placed_elsewhere += 1
            if not entry.answers:
                outcomes["(no answer)"] += 1
                target = (
                    unanswered_explained
                    if self._explained(entry, entry.granted_at_s)
                    else unanswered
                )
                target.append(entry.lease_id)
            else:
                first = entry.answers[0]
                outcomes[first.reason] += 1
                agreed = {(a.reason, a.released_at_us) for a in entry.answers}
                if len(agreed) > 1:
                    disagreeing.append(entry.lease_id)
                if sum(a.released_now for a in entry.answers) > 1:
                    twice_now.append(entry.lease_id)
                if any(a.released_now for a in entry.answers[1:]):
                    now_late.append(entry.lease_id)
                if "late" in entry.not_found and not any(a.phase == "late" for a in entry.answers):
                    target = (
                        forgotten_explained if self._explained(entry, first.at_s) else forgotten
                    )
                    target.append(entry.lease_id)
            record = records.get(entry.lease_id)
            if record is None:
                records_missing += 1
            elif not record.get("reason"):
                record_live.append(entry.lease_id)
            elif entry.answers and (
                record["reason"] != entry.answers[0].reason
                or int(record.get("released_at") or 0) != entry.answers[0].released_at_us
            ):
                record_mismatch.append(entry.lease_id)
        orphans: Counter[str] = Counter(
            r.get("reason") or "(live)" for i, r in records.items() if i not in self.ledger
        )
        reaped_twice = [i for i, n in logs["reaped"].items() if n > 1]
        node_leaks = {
            label: {
                "active_leases": s.active_leases,
                "queued": s.queued,
                "closing_sessions": s.closing_sessions,
            }
            for label, s in statuses.items()
        }
        cluster_active = max((s.cluster.active_leases for s in statuses.values()), default=-1)
        violations = {
            "leases whose Release answers disagree": disagreeing,
            "leases released_now=true twice": twice_now,
            "leases released_now=true after the first answer": now_late,
            "leases reaped twice (node logs)": reaped_twice,
            "records whose outcome is not the one answered": record_mismatch,
            "granted leases still live in Redis": record_live,
            "leases never answered, unexplained": unanswered,
            "outcomes forgotten, unexplained": forgotten,
        }
        leaks = {
            "nodes with leases, queued or closing sessions": sorted(
                label for label, n in node_leaks.items() if any(n.values())
            ),
            "cluster active_leases": cluster_active,
            "live records not in the ledger": orphans.get("(live)", 0),
            "browsers of killed node processes left": sum(leftover.values()),
        }
        leaked = bool(
            leaks["nodes with leases, queued or closing sessions"]
            or cluster_active != 0
            or leaks["live records not in the ledger"]
            or leaks["browsers of killed node processes left"]
        )
        kills = sum(e.kind == "node_kill" for e in self.events)
        restarts = sum(e.kind == "redis_restart" for e in self.events)
        return {
            "ok": not leaked and not any(violations.values()),
            "cycles completed": self.completed,
            "leases granted": len(self.ledger),
            "leases placed on another node than their entry node": placed_elsewhere,
            "leases whose holding node the ledger does not know": owner_unknown,
            "leases open when the load stopped (released at the end)": open_at_end,
            "outcomes (first answer)": dict(outcomes.most_common()),
            "Release answers": sum(len(e.answers) for e in self.ledger.values()),
            "violations": {k: len(v) for k, v in violations.items()},
            "violating leases": {k: v[:20] for k, v in violations.items() if v},
            "unrecoverable (node died while the store was empty)": len(unanswered_explained),
            "outcomes forgotten, explained (node gone when Redis restarted empty)": len(
                forgotten_explained
            ),
            "records": {
                "granted leases with a record": len(self.ledger) - records_missing,
                "granted leases without one (lost with a Redis restart)": records_missing,
                "records of leases the clients never got, by outcome": dict(orphans),
            },
            "leaks": leaks,
            "final node status": node_leaks,
            "leftover browsers by killed process": leftover,
            "chaos": {
                "node kills": kills,
                "Redis restarts": restarts,
                "events": [asdict(e) for e in self.events],
            },
            "node fencings (declared dead while alive)": dict(logs["fenced"]),
            "leases reaped node_lost (node logs)": len(logs["reaped"]),
            "warnings and errors in node logs": dict(logs["messages"].most_common()),
            "calls": dict(sorted(self.calls.items())),
            "errors by kind": dict(self.errors.most_common()),
            "unexpected errors": len(self.unexpected),
            "unexpected (first 30)": self.unexpected[:30],
            "load seconds": round(load_s, 1),
            "wall seconds": round(self.now(), 1),
            "node logs": [str(n.process.log_path) for n in [*self.cluster.retired, *self._live()]],
        }


def table(summary: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [
        (
            "cycles completed / leases granted",
            f"{summary['cycles completed']} / {summary['leases granted']}",
        ),
        ("wall time (load, total)", f"{summary['load seconds']} s, {summary['wall seconds']} s"),
        (
            "chaos: node kills / Redis restarts",
            f"{summary['chaos']['node kills']} / {summary['chaos']['Redis restarts']}",
        ),
        (
            "placed on another node than the entry node",
            str(summary["leases placed on another node than their entry node"]),
        ),
        (
            "holding node unknown to the ledger",
            str(summary["leases whose holding node the ledger does not know"]),
        ),
        ("Release answers", str(summary["Release answers"])),
        (
            "open when the load stopped",
            str(summary["leases open when the load stopped (released at the end)"]),
        ),
    ]
    rows += [(f"outcome {k}", str(v)) for k, v in summary["outcomes (first answer)"].items()]
    rows += [(k, str(v)) for k, v in summary["violations"].items()]
    rows.append(
        (
            "unrecoverable (node died while the store was empty)",
            str(summary["unrecoverable (node died while the store was empty)"]),
        )
    )
    key = "outcomes forgotten, explained (node gone when Redis restarted empty)"
    rows.append((key, str(summary[key])))
    rows += [(k, str(v)) for k, v in summary["records"].items()]
    rows += [(f"leak: {k}", str(v)) for k, v in summary["leaks"].items()]
    rows.append(("node fencings", str(summary["node fencings (declared dead while alive)"])))
    rows.append(
        ("leases reaped node_lost (logs)", str(summary["leases reaped node_lost (node logs)"]))
    )
    rows += [(f"error {k}", str(v)) for k, v in summary["errors by kind"].items()]
    rows.append(("unexpected errors", str(summary["unexpected errors"])))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="cluster-soak-"))
    redis = RedisServer().start()
    cluster = Cluster(redis, env={"BROKER_TOMBSTONE_TTL_S": str(TOMBSTONE_TTL_S)})
    try:
        for name in NAMES:
            folder = data_dir / f"{name}.0"
            folder.mkdir(parents=True)
            cluster.start_node(name, BROKER_DATA_DIR=str(folder))
        await cluster.wait_formed(timeout_s=120)
        runner = ClusterSoak(
            cluster,
            args.cycles,
            args.clients,
            (args.chaos_min_s, args.chaos_max_s),
            args.seed,
            data_dir,
            args.max_minutes * 60,
        )
        summary = await runner.run()
        summary["conditions"] = {
            "cycles asked": args.cycles,
            "clients": args.clients,
            "chaos interval s": [args.chaos_min_s, args.chaos_max_s],
            "seed": args.seed,
            "nodes": len(NAMES),
            "capacity per node": cluster.capacity,
            "heartbeat s / dead after s": [HEARTBEAT_S, DEAD_AFTER_S],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load average at the end": round(os.getloadavg()[0], 1),
        }
        return summary
    finally:
        await cluster.stop()
        redis.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=1000, help="lease lives to complete")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--chaos-min-s", type=float, default=20.0)
    parser.add_argument("--chaos-max-s", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--max-minutes", type=float, default=120.0, help="stop the load after this long"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/cluster_soak.json"))
    args = parser.parse_args()
    summary = asyncio.run(soak(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    conditions = summary["conditions"]
    print(
        f"seed {args.seed}; {args.clients} clients; chaos every {args.chaos_min_s:g}-"
        f"{args.chaos_max_s:g} s; {conditions['machine']}; summary in {args.out}"
    )
    print(table(summary))
    for line in summary["unexpected (first 30)"]:
        print("UNEXPECTED:", line)
    for kind, ids in summary["violating leases"].items():
        print(f"VIOLATION {kind}: {', '.join(ids)}")
    print("PASS" if summary["ok"] else "FAIL")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
