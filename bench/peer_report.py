"""bench.peers' results: one level of one system, and the markdown tables of a run."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.peer_attach import BrokerAttachCdp, BrokerAttachPlaywright
from bench.peer_browserless import BrowserlessCdp, BrowserlessFunction
from bench.peer_systems import BrokerSdk, PlaywrightRunServer, SeleniumGrid

MS = 1000.0
ROUND_TRIP_TARGET = 1.2  # the broker's attach socket vs straight to DevTools (p50)


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


Results = dict[str, dict[int, LevelResult]]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50(result: LevelResult | None) -> float:
    return statistics.median(result.times_s) if result and result.times_s else float("nan")


def summary(result: LevelResult) -> str:
    if not result.times_s:
        return f"no session completed; {result.errors[:1]}"
    return (
        f"p50 {statistics.median(result.times_s) * MS:.0f} ms, "
        f"{result.per_s:.2f} sessions/s, {len(result.errors)} errors"
    )


def write_report(out: Path, report: dict[str, object], table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(report, indent=2))
    (out / "peers.md").write_text(table + "\n")


def markdown(
    report: dict[str, object],
    results: Results,
    floors: dict[str, list[float]],
    memory_rows: dict[int, float],
    levels: list[int],
) -> str:
    lines = [
        "| system | clients | sessions | p50 ms | p90 ms | p99 ms | sessions/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_level in results.items():
        for clients in levels:
            r = by_level.get(clients)
            if r is None:
                continue  # a browser per session: not run at this level
            if not r.times_s:
                lines.append(f"| {name} | {clients} | 0 | | | | |")
                continue
            lines.append(
                f"| {name} | {clients} | {len(r.times_s)} "
                f"| {statistics.median(r.times_s) * MS:.0f} | {quantile(r.times_s, 0.9) * MS:.0f} "
                f"| {quantile(r.times_s, 0.99) * MS:.0f} | {r.per_s:.2f} |"
            )
    lines += ["", *broker_figures(results, floors, memory_rows, levels)]
    lines += ["", *ratio_lines(results, levels, floors)]
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


def broker_figures(
    results: Results,
    floors: dict[str, list[float]],
    memory_rows: dict[int, float],
    levels: list[int],
) -> list[str]:
    sdk = results[BrokerSdk.name]
    lines = ["| broker figure | value |", "|---|---:|"]
    if floors.get("health_check"):
        health = statistics.median(floors["health_check"])
        warm = statistics.median(floors["warm_acquire"])
        lines.append(f"| health-check round trip p50 | {health * MS:.2f} ms |")
        lines.append(f"| warm Acquire p50 | {warm * MS:.2f} ms ({warm / health:.2f}x the floor) |")
    if floors.get("broker_attach"):
        via = statistics.median(floors["broker_attach"])
        direct = statistics.median(floors["direct_devtools"])
        lines.append(
            f'| CDP round trip p50, `Runtime.evaluate("1")`, through the attach socket '
            f"| {via * MS:.3f} ms |"
        )
        lines.append(f"| the same, straight to a Chromium's DevTools port | {direct * MS:.3f} ms |")
    for clients in levels:
        r = sdk.get(clients)
        if r is not None and r.broker_cpu_s is not None and r.times_s:
            cpu_ms = r.broker_cpu_s / len(r.times_s) * MS
            lines.append(f"| broker CPU per lease cycle, {clients} clients | {cpu_ms:.1f} ms |")
    for level, mb in memory_rows.items():
        lines.append(f"| browsers' PSS per Chromium context lease, {level} held | {mb:.1f} MB |")
    return lines


def ratio_lines(results: Results, levels: list[int], floors: dict[str, list[float]]) -> list[str]:
    """The issues' targets, as ratios of figures from this run (one level's systems ran one
    after the other, so each ratio is of figures measured side by side)."""
    sdk = results[BrokerSdk.name]
    new_context = results["Playwright, new context per session"]
    warm_page = results["Playwright, warm page (opened beforehand)"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "n/a"

    lines = ["| comparison (this run) | ratio |", "|---|---:|"]
    one = levels[0]
    lines.append(
        f"| broker cycle p50 / Playwright warm-page p50, {one} client "
        f"| {ratio(p50(sdk[one]), p50(warm_page[one]))} |"
    )
    for clients in levels:
        lines.append(
            f"| broker sessions/s / Playwright new-context sessions/s, {clients} clients "
            f"| {ratio(sdk[clients].per_s, new_context[clients].per_s)} |"
        )
    for peer in (PlaywrightRunServer.name, SeleniumGrid.name, BrowserlessFunction.name):
        lines.append(
            f"| {peer} p50 / broker p50, {one} client "
            f"| {ratio(p50(results[peer].get(one)), p50(sdk[one]))} |"
        )
    attach = results[BrokerAttachCdp.name]
    attach_playwright = results[BrokerAttachPlaywright.name]
    browserless_cdp = results[BrowserlessCdp.name]
    for clients in levels:
        if clients in attach and clients in browserless_cdp:
            lines.append(
                f"| Browserless connect_over_cdp p50 / broker attach cycle (CDP) p50, "
                f"{clients} clients | {ratio(p50(browserless_cdp[clients]), p50(attach[clients]))} |"
            )
        if clients in attach and clients in attach_playwright:
            lines.append(
                f"| broker attach cycle, Playwright's protocol p50 / CDP p50, {clients} clients "
                f"| {ratio(p50(attach_playwright[clients]), p50(attach[clients]))} |"
            )
    if floors.get("broker_attach"):
        via = statistics.median(floors["broker_attach"])
        direct = statistics.median(floors["direct_devtools"])
        verdict = "met" if via <= ROUND_TRIP_TARGET * direct else "missed"
        lines.append(
            f"| CDP round trip p50, attach socket / straight to DevTools "
            f"(target ≤ {ROUND_TRIP_TARGET}x: {verdict}) | {ratio(via, direct)} |"
        )
    return lines
