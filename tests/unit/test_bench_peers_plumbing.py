"""bench.peers' plumbing, without browsers: which rows `--only` picks, the warm attach row's gate
on its pool, and the report of a run that measured some rows only (no figures asserted)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from bench.peer_attach import BrokerAttachCdp
from bench.peer_browserless import BrowserlessCdp, Resizable
from bench.peer_report import LevelResult, markdown, warm_attach_lines
from bench.peer_select import GROUPS, KEYS, parse_only
from bench.peer_systems import PlaywrightRunServer
from bench.peer_warm_attach import BrokerWarmAttach, Pooled, ReadyGate, warm_name
from bench.peers import build_systems
from tests.support import BrokerProcess


def test_only_expands_groups_in_the_runs_order() -> None:
    assert parse_only("all") == list(KEYS)
    assert parse_only("browserless-cdp,warm-attach") == [
        "warm-attach-cdp",
        "warm-attach-playwright",
        "run-server",
        "browserless-cdp",
    ]
    assert parse_only(" sdk , sdk,attach") == [
        "sdk",
        "attach-cdp",
        "attach-playwright",
        "warm-attach-cdp",
        "warm-attach-playwright",
        "run-server",
        "browserless-cdp",
    ]
    assert set(GROUPS["warm-attach"]) <= set(GROUPS["attach"])


@pytest.mark.parametrize("text", ["", "sdk,", "grid;rm -rf /", "x" * 500])
def test_only_refuses_unknown_names_and_says_which(text: str) -> None:
    with pytest.raises(ValueError, match="--only: no system or group") as info:
        parse_only(text)
    assert "warm-attach" in str(info.value)  # lists what is known
    assert len(str(info.value)) < 400  # a long word is cut, not echoed whole


def test_only_builds_the_chosen_rows_and_nothing_else() -> None:
    # The Grid's jars and Browserless would be looked for if their rows were built.
    built = build_systems(
        ["warm-attach-cdp", "run-server"],
        BrokerProcess(),
        cast(Any, object()),
        "/usr/bin/chromium",
        "http://127.0.0.1:1/",
        4,
    )
    assert list(built) == ["warm-attach-cdp", "run-server"]
    warm = built["warm-attach-cdp"]
    assert isinstance(warm, BrokerWarmAttach) and isinstance(warm, Pooled)
    assert isinstance(warm, Resizable)  # restarted per level, with that level's pool
    assert warm.name == "broker, warm attach cycle over CDP (connect_over_cdp)"
    assert warm.pool_flag(4) == "chromium/browser+cdp=4"
    assert (
        warm_name("playwright") == "broker, warm attach cycle over Playwright's protocol (connect)"
    )
    other = build_systems(
        ["warm-attach-playwright"], BrokerProcess(), cast(Any, object()), "", "", 1
    )
    assert cast(BrokerWarmAttach, other["warm-attach-playwright"]).pool_flag(2) == (
        "chromium/browser+playwright=2"
    )


class FakePool:
    """A pool's ready count as GetStatus reports it; `during_read` runs while a read is out."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.reads = 0
        self.during_read: list[Any] = []

    async def read(self) -> int:
        self.reads += 1
        value = self.ready
        await asyncio.sleep(0)
        for action in self.during_read:
            action()
        self.during_read.clear()
        return value


async def test_gate_lets_one_session_per_ready_browser() -> None:
    pool = FakePool(ready=2)
    gate = ReadyGate(pool.read, poll_s=0.01)
    assert await gate.claim() and await gate.claim()
    assert gate.claimed == 2
    # Both browsers are claimed; the broker still says 2 until the Acquires return.
    assert not await gate.claim(timeout_s=0.1)
    pool.ready = 1  # one Acquire returned and took its browser
    gate.taken(True)
    assert not await gate.claim(timeout_s=0.1)  # the other claim still holds the last one
    pool.ready = 0
    gate.taken(True)
    pool.ready = 1  # a refill
    assert await gate.claim()
    assert gate.claimed == 1


async def test_gate_reads_again_when_a_take_overlapped_the_read() -> None:
    pool = FakePool(ready=1)
    gate = ReadyGate(pool.read, poll_s=0.01)
    # A session without a claim (its wait timed out) takes the browser while the count is read:
    # the count read (1) is stale and must not let another session through.
    pool.during_read.append(lambda: gate.taken(False))
    pool.during_read.append(lambda: setattr(pool, "ready", 0))
    assert not await gate.claim(timeout_s=0.1)
    assert pool.reads >= 2 and gate.claimed == 0


async def test_gate_shares_one_reading_between_waiters() -> None:
    pool = FakePool(ready=4)
    gate = ReadyGate(pool.read, poll_s=60)
    claims = await asyncio.gather(*(gate.claim() for _ in range(4)))
    assert claims == [True] * 4 and pool.reads == 1


def level(clients: int, times: list[float], warm: int | None = None) -> LevelResult:
    return LevelResult(clients, len(times), sum(times), times, warm_leases=warm)


def test_report_of_the_warm_attach_comparison_alone() -> None:
    warm = warm_name("cdp")
    results = {
        warm: {1: level(1, [0.5, 0.5], warm=2), 4: level(4, [1.0] * 4, warm=3)},
        BrowserlessCdp.name: {1: level(1, [1.5, 1.5]), 4: level(4, [2.0] * 4)},
        PlaywrightRunServer.name: {1: level(1, [1.0, 1.0])},  # 4 clients missing
        BrokerAttachCdp.name: {4: level(4, [4.0] * 4)},
    }
    lines = warm_attach_lines(results, [1, 4])
    assert lines[1].startswith(f"| {warm} |")
    assert lines[3] == "| 1 clients | 2 of 2 | 500 | 1500 | 1000 | 3.00 | 2.00 | n/a |"
    assert lines[4] == "| 4 clients | 3 of 4 | 1000 | 2000 | n/a | 2.00 | n/a | 4.00 |"
    report: dict[str, object] = {"machine": {"cpus": 2}, "versions": {"python": "3"}}
    table = markdown(report, results, {}, {}, [1, 4])  # no broker SDK row: no KeyError
    assert "| 4 clients | 3 of 4 |" in table and "broker figure" not in table
    assert warm_attach_lines({BrowserlessCdp.name: results[BrowserlessCdp.name]}, [1]) == []
