"""bench.peers' results: one level of one system, and the markdown tables of a run."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.peer_attach import BrokerAttachCdp, BrokerAttachPlaywright
from bench.peer_browserless import BrowserlessCdp, BrowserlessFunction
from bench.peer_systems import BrokerSdk, PlaywrightRunServer, SeleniumGrid
from bench.peer_warm_attach import COLD_NAMES, warm_name

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
    warm_leases: int | None = None  # of a row on a warm pool: its leases served warm

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
    warm = "" if result.warm_leases is None else f", {result.warm_leases} warm"
    return (
        f"p50 {statistics.median(result.times_s) * MS:.0f} ms, "
        f"{result.per_s:.2f} sessions/s, {len(result.errors)} errors{warm}"
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
    for section in (
        broker_figures(results, floors, memory_rows, levels),
        ratio_lines(results, levels, floors),
    ):
        if len(section) > 2:  # a row beside the header (a run of some rows may have none)
            lines += ["", *section]
    lines += warm_attach_lines(results, levels)
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
    sdk = results.get(BrokerSdk.name, {})
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


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and a == a and b == b else "n/a"  # n/a: no figure (NaN) or 0


def ratio_lines(results: Results, levels: list[int], floors: dict[str, list[float]]) -> list[str]:
    """The issues' targets, as ratios of figures from this run (one level's systems ran one
    after the other, so each ratio is of figures measured side by side). A ratio of a row the
    run left out (`--only`) is left out too."""
    sdk = results.get(BrokerSdk.name, {})
    new_context = results.get("Playwright, new context per session", {})
    warm_page = results.get("Playwright, warm page (opened beforehand)", {})
    lines = ["| comparison (this run) | ratio |", "|---|---:|"]
    one = levels[0]
    if one in sdk and one in warm_page:
        lines.append(
            f"| broker cycle p50 / Playwright warm-page p50, {one} client "
            f"| {ratio(p50(sdk[one]), p50(warm_page[one]))} |"
        )
    for clients in levels:
        if clients in sdk and clients in new_context:
            lines.append(
                f"| broker sessions/s / Playwright new-context sessions/s, {clients} clients "
                f"| {ratio(sdk[clients].per_s, new_context[clients].per_s)} |"
            )
    for peer in (PlaywrightRunServer.name, SeleniumGrid.name, BrowserlessFunction.name):
        if one in sdk and one in results.get(peer, {}):
            lines.append(
                f"| {peer} p50 / broker p50, {one} client "
                f"| {ratio(p50(results[peer][one]), p50(sdk[one]))} |"
            )
    attach = results.get(BrokerAttachCdp.name, {})
    attach_playwright = results.get(BrokerAttachPlaywright.name, {})
    browserless_cdp = results.get(BrowserlessCdp.name, {})
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


def warm_attach_lines(results: Results, levels: list[int]) -> list[str]:
    """The warm attach cycle beside the connect-per-session peers, level by level, from this run:
    each peer's p50 over the warm cycle's (above 1: the warm cycle is faster), and the cold
    cycle's for scale. Empty if no warm row ran."""
    peers = {
        "Browserless connect": results.get(BrowserlessCdp.name, {}),
        "run-server connect": results.get(PlaywrightRunServer.name, {}),
    }
    lines: list[str] = []
    for protocol, cold_name in COLD_NAMES.items():
        warm = results.get(warm_name(protocol), {})
        cold = results.get(cold_name, {})
        if not warm:
            continue
        lines += [
            "",
            f"| {warm_name(protocol)} | warm leases | p50 ms | Browserless connect p50 ms "
            "| run-server connect p50 ms | Browserless / warm | run-server / warm "
            "| cold attach / warm |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for clients in levels:
            row = warm.get(clients)
            if row is None:
                continue
            others = [peer.get(clients) for peer in peers.values()]
            figures = " | ".join(f"{p50(r) * MS:.0f}" if r else "n/a" for r in others)
            ratios = " | ".join(ratio(p50(r), p50(row)) for r in [*others, cold.get(clients)])
            warm_count = "n/a" if row.warm_leases is None else row.warm_leases
            lines.append(
                f"| {clients} clients | {warm_count} of {len(row.times_s) + len(row.errors)} "
                f"| {p50(row) * MS:.0f} | {figures} | {ratios} |"
            )
    return lines
