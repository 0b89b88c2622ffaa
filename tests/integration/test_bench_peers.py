"""The peer benchmark runs as documented and gives every peer's row (a smoke run, not figures)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = {
    "broker (Python SDK)",
    "broker (raw gRPC stub)",
    "Playwright, new context per session",
    "Playwright, warm page (opened beforehand)",
    "Playwright run-server (connect per session)",
    "Selenium Grid 4 standalone",
    "broker, attach cycle over CDP (connect_over_cdp)",
    "broker, attach cycle over Playwright's protocol (connect)",
    "broker, warm attach cycle over CDP (connect_over_cdp)",
    "broker, warm attach cycle over Playwright's protocol (connect)",
    "Browserless /function (REST)",
    "Browserless, connect_over_cdp per session",
}

pytestmark = pytest.mark.browser


def run_smoke(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The benchmark, interrupted like Ctrl-C past `timeout_s` (so it stops the peers it started,
    each in a session of its own) and killed 30 s later; its output shown either way."""
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"bench.peers --smoke ran over {timeout_s:.0f} s:\n{out[-2000:]}{err[-4000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.timeout(720)
def test_peer_benchmark_gives_every_peers_row(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.peers", "--smoke", "--levels", "1,4"]
    # A smoke run took about 4 minutes on a busy machine (load average above 20), more than
    # twice inside the bound (Browserless starts twice: once per level, with that level's limits).
    done = run_smoke([*command, "--no-memory", "--out", str(tmp_path)], timeout_s=660)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "peers.json").read_text())
    assert set(report["results"]) == PEERS
    for name, levels in report["results"].items():
        assert set(levels) == {"1", "4"}, name
        for clients, level in levels.items():
            assert level["errors"] == [], (name, clients, level["errors"])
            assert len(level["times_s"]) == level["sessions"] > 0, (name, clients)
    floor = report["floor"]
    assert len(floor["warm_acquire"]) == len(floor["health_check"]) > 0
    assert len(floor["broker_attach"]) == len(floor["direct_devtools"]) > 0
    assert report["settings"]["browser_per_session_max_clients"] == 4
    table = (tmp_path / "peers.md").read_text()
    for name in PEERS:
        assert f"| {name} | 1 |" in table and f"| {name} | 4 |" in table
    assert "warm Acquire p50" in table and "Versions:" in table
    assert "CDP round trip p50, attach socket / straight to DevTools" in table
    assert "browserless 2." in table
    for name in PEERS:
        if "warm attach cycle" in name:
            levels = report["results"][name].values()
            assert all(level["warm_leases"] is not None for level in levels), name
            assert f"| {name} | warm leases |" in table
