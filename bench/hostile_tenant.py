"""A hostile tenant for `bench.canary`: the worst inputs the edge lets through, all at once and in
a loop, from a process of its own (so its floods load the broker, not the canary's client).

    .venv/bin/python -m bench.hostile_tenant ADDRESS TOKEN SITE_URL [--engine chromium]

It first takes its whole lease quota (`--leases`), prints `ready`, then attacks until SIGTERM or
SIGINT, and prints what its calls came to as one JSON line ({attack: {outcome: count}}).

- a context with 64 `block_url_patterns` globs of the most wildcards and characters allowed,
  whose page requests 8 KiB URLs in a loop (every request matched against every glob);
- the same globs in `wait_for_url`, `wait_for_response` and `switch_page` on a page at an 8 KiB
  URL;
- Runs of 10 scripts of the longest size; an `evaluate` returning the largest result; 10 steps
  with the longest selectors; the most steps a Run may hold with 64-deep `arg_json` filling the
  largest message;
- GetStatus floods (4 loops) and Acquires past the quota (4 loops, each queued or refused).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from browserbroker import (
    AsyncBrokerClient,
    AsyncLease,
    BrokerError,
    Engine,
    LeaseEndedError,
    RunResult,
    steps,
)
from browserbroker.v1 import broker_pb2 as pb

ENGINES = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}
# The worst inputs the edge lets through (broker/model/steps/globs.py, checks.py, the settings'
# defaults).
MAX_BLOCK_PATTERNS = 64
MAX_STEPS = 100
MAX_SCRIPT_CHARS = 64 * 1024
MAX_SELECTOR_CHARS = 4 * 1024
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 10_000
MAX_RESULT_BYTES = 8 * 1024 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
LONG_URL_CHARS = 8 * 1024
# Globs of the most wildcards and characters allowed, shaped to be hard on a regex engine.
HOSTILE_GLOBS = [
    "**a" * 8 + "**b",  # 79 s for a 79-character URL with a backtracking regex
    "**a" + "*" * 8 + "b",  # star runs: each run of stars counts as one wildcard
    "*a" * 10 + "a" * 200 + "b",
    "**" + "a" * 250 + "b",
]

# What the calls came to, by attack: how many were sent, and how many ended "ok", with
# "step errors" or with an error (its class name); a call still in flight at the end has none.
Tally = dict[str, dict[str, int]]


def long_url(site: str) -> str:
    return site + "a" * (LONG_URL_CHARS - len(site))


def deep_arg(size: int) -> Any:
    """A JSON value nested MAX_JSON_DEPTH deep with nearly MAX_JSON_VALUES values, about `size`
    characters long as JSON (its strings full of brackets and escapes)."""
    count = MAX_JSON_VALUES - MAX_JSON_DEPTH - 1
    value: Any = ['[{"\\' * (size // count // 8)] * count
    for _ in range(MAX_JSON_DEPTH - 1):
        value = [value]
    return value


def most_steps() -> list[pb.Step]:
    """The most steps a Run may hold, with deep JSON arguments filling the message."""
    arg = deep_arg(MAX_MESSAGE_BYTES // MAX_STEPS - 4096)
    return [steps.evaluate("x => 1", arg) for _ in range(MAX_STEPS)]


async def loop_forever(
    tally: Tally, name: str, work: Callable[[], Coroutine[Any, Any, object]]
) -> None:
    counts = tally.setdefault(name, {})
    while True:
        counts["sent"] = counts.get("sent", 0) + 1
        try:
            result = await work()
            outcome = "step errors" if getattr(result, "ok", True) is False else "ok"
        except BrokerError as exc:
            outcome = type(exc).__name__
        counts[outcome] = counts.get(outcome, 0) + 1
        await asyncio.sleep(0)


def blocking(tally: Tally, lease: AsyncLease, site: str) -> Coroutine[Any, Any, None]:
    # The page requests 8 KiB URLs in a loop: each is matched against all 64 globs.
    flood = (
        "(async () => { const u = location.href; for (let i = 0; i < 200; i++)"
        " await fetch(u + i).catch(() => {}); })()"
    )
    return loop_forever(
        tally,
        "64 globs in block_url_patterns, 8 KiB request URLs",
        lambda: lease.run(steps.goto(long_url(site)), steps.evaluate(flood), timeout=60),
    )


def waiting(tally: Tally, lease: AsyncLease, site: str) -> Coroutine[Any, Any, None]:
    waits = []
    for glob in HOSTILE_GLOBS:
        waits += [
            steps.wait_for_url(glob, timeout_s=1),
            steps.wait_for_response(glob, timeout_s=1),
            steps.switch_page(url=glob, timeout_s=1),
        ]
    return loop_forever(
        tally,
        "globs in wait_for_url, wait_for_response, switch_page at an 8 KiB URL",
        lambda: lease.run(steps.goto(long_url(site)), *waits, continue_on_error=True, timeout=60),
    )


class Renewed:
    """A lease taken again when the broker ends it (a Run whose stop failed ends its lease)."""

    def __init__(
        self, client: AsyncBrokerClient, engine: Engine, site: str, lease: AsyncLease
    ) -> None:
        self.client, self.engine, self.site, self.lease = client, engine, site, lease

    async def run(self, work: list[pb.Step]) -> RunResult:
        lease = self.lease
        try:
            return await lease.run(*work, continue_on_error=True, timeout=60)
        except LeaseEndedError:
            if lease is self.lease:
                self.lease = await self.client.acquire(engine=self.engine, ttl=3600, timeout=30)
                await self.lease.run(steps.goto(self.site + "form.html"))
            raise


def heavy(tally: Tally, renewed: Renewed) -> list[Coroutine[Any, Any, None]]:
    script = "/*" + "x" * (MAX_SCRIPT_CHARS - 8) + "*/ 1"
    selector = "div " * (MAX_SELECTOR_CHARS // 4 - 1) + "p"
    runs = {
        "Runs of 10 scripts of 64 KiB": [steps.evaluate(script)] * 10,
        "evaluate returning 8 MiB": [steps.evaluate(f"'x'.repeat({MAX_RESULT_BYTES - 1024})")],
        "Runs of 10 selectors of 4 KiB": [steps.text(selector, timeout_s=1)] * 10,
        f"Runs of {MAX_STEPS} steps, 64-deep arg_json, 16 MiB": most_steps(),
    }
    return [
        loop_forever(tally, name, functools.partial(renewed.run, work))
        for name, work in runs.items()
    ]


def floods(
    tally: Tally, client: AsyncBrokerClient, engine: Engine
) -> list[Coroutine[Any, Any, None]]:
    async def past_quota() -> None:
        lease = await client.acquire(engine=engine, timeout=1)
        await lease.release()

    return [
        *(
            loop_forever(tally, "GetStatus flood", lambda: client.status(timeout=5))
            for _ in range(4)
        ),
        *(loop_forever(tally, "Acquires past the quota", past_quota) for _ in range(4)),
    ]


async def attack(address: str, token: str, site: str, engine: Engine, leases: int) -> Tally:
    tally: Tally = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    blocked = pb.ContextOptions(block_url_patterns=(HOSTILE_GLOBS * 16)[:MAX_BLOCK_PATTERNS])
    async with contextlib.AsyncExitStack() as stack:
        # A channel that takes the largest results, so the broker has to send them whole.
        channel = grpc.aio.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 2 * MAX_MESSAGE_BYTES)]
        )
        client = await stack.enter_async_context(
            AsyncBrokerClient(address, token=token, channel=channel)
        )
        held = [
            await stack.enter_async_context(
                client.lease(
                    engine=engine,
                    context=blocked if i == 0 else None,
                    ttl=3600,
                    idle_timeout=3600,
                )
            )
            for i in range(leases)
        ]
        await held[-1].run(steps.goto(site + "form.html"))
        work = [blocking(tally, held[0], site), *floods(tally, client, engine)]
        if leases > 1:
            work.append(waiting(tally, held[1], site))
        renewed = Renewed(client, engine, site, held[-1])
        work += heavy(tally, renewed)
        tasks = [asyncio.create_task(w) for w in work]
        print("ready", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if renewed.lease is not held[-1]:
            with contextlib.suppress(BrokerError):
                await renewed.lease.release()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile_tenant",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address")
    parser.add_argument("token")
    parser.add_argument("site", help="the fixture site's base URL, ending in /")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="chromium")
    parser.add_argument("--leases", type=int, default=3, help="the tenant's max_leases")
    args = parser.parse_args()
    tally = asyncio.run(
        attack(args.address, args.token, args.site, ENGINES[args.engine], args.leases)
    )
    print(json.dumps(tally), flush=True)


if __name__ == "__main__":
    main()
