"""The seccomp profile the deployments use (deploy/seccomp/browser-broker.json) is Docker's default
plus what bubblewrap and the browsers' sandboxes need, and it holds: applied to the broker the
way a container runtime applies it (scripts/seccomp_exec.py, libseccomp), the broker's browsers
start in their jail, their renderers pass the sandbox check, a Run works, and a syscall the
profile leaves out is refused, which it is not without the profile."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import tests.support
from browserbroker import AsyncBrokerClient, Engine, steps
from tests.conftest import require
from tests.fixture_site import FixtureSite
from tests.support import BROKER_BIN, ROOT, BrokerProcess, command_line

PROFILE = ROOT / "deploy" / "seccomp" / "browser-broker.json"
SECCOMP_EXEC = ROOT / "scripts" / "seccomp_exec.py"
# moby/profiles seccomp/default.json as of commit cd3bed8 (2026-06-30; the file last changed in
# 3c28324), serialized as upstream writes it (tab-indented JSON).
UPSTREAM_SHA256 = "536529b665dd0972c37bfb569f5d4ac8a53592e7b00752bc39ff063ca9864c74"
ADDED = {"clone", "unshare", "mount", "umount2", "pivot_root", "chroot"}
# Calls the browsers never need: the kernel keyring (not namespaced), handles that reach
# outside a mount namespace, eBPF, joining other namespaces.
LEFT_OUT = ("keyctl", "open_by_handle_at", "bpf", "setns")

# Calls each syscall in argv with harmless arguments and prints {name: -errno or result}.
# Numbers come from libseccomp, so the same program serves any architecture.
PROBE = r"""
import ctypes, ctypes.util, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
args = {
    "keyctl": (0, -3, 0),          # KEYCTL_GET_KEYRING_ID of the session keyring
    "open_by_handle_at": (-1, 0, 0),
    "bpf": (9999, 0, 0),           # no such command
    "setns": (-1, 0),
}
out = {}
for name in sys.argv[1:]:
    number = seccomp.seccomp_syscall_resolve_name(name.encode())
    result = libc.syscall(number, *(ctypes.c_long(a) for a in args[name]))
    out[name] = result if result >= 0 else -ctypes.get_errno()
print(json.dumps(out))
"""
EPERM = 1


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in status if ":" in line)}


def _sandboxed_status(pid: int, filters: int) -> dict[str, str] | None:
    """The renderer's status once it has `filters` filters (a renderer the browser has just
    forked, a spare one, installs its own filter a moment after it starts); None: it exited."""
    deadline = time.monotonic() + 10
    try:
        status = _status(pid)
        while int(status["Seccomp_filters"]) < filters and time.monotonic() < deadline:
            time.sleep(0.05)
            status = _status(pid)
    except FileNotFoundError:
        return None
    return status


def _probe(*wrapper: str) -> dict[str, int]:
    done = subprocess.run(
        [*wrapper, sys.executable, "-c", PROBE, *LEFT_OUT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


def _under_profile(profile: Path = PROFILE) -> list[str]:
    return [sys.executable, str(SECCOMP_EXEC), str(profile), "--"]


def test_the_profile_is_dockers_default_plus_what_the_sandboxes_need() -> None:
    profile: dict[str, Any] = json.loads(PROFILE.read_text())
    ours = [c for c in profile["syscalls"] if c.get("comment", "").startswith("browser-broker:")]
    upstream = {**profile, "syscalls": [c for c in profile["syscalls"] if c not in ours]}
    text = json.dumps(upstream, indent="\t")
    assert hashlib.sha256(text.encode()).hexdigest() == UPSTREAM_SHA256
    # Each addition allows its calls outright (no capability condition: the chart drops all
    # capabilities) and says why it is there.
    assert {name for call in ours for name in call["names"]} == ADDED
    for call in ours:
        assert call["action"] == "SCMP_ACT_ALLOW" and len(call["comment"]) > 80, call
        assert "includes" not in call and "excludes" not in call, call
    unconditional = {
        name
        for call in profile["syscalls"]
        if call["action"] == "SCMP_ACT_ALLOW" and not call.get("includes") and not call.get("args")
        for name in call["names"]
    }
    assert not unconditional & set(LEFT_OUT)


def test_the_compose_file_uses_the_profile() -> None:
    compose = ROOT / "deploy" / "cluster" / "compose.yaml"
    options = re.findall(r"^\s*- seccomp[=:](\S+)", compose.read_text(), re.M)
    # Compose resolves the path relative to the compose file.
    assert [(compose.parent / path).resolve() for path in options] == [PROFILE.resolve()]


def test_a_syscall_the_profile_leaves_out_is_refused() -> None:
    without = _probe()
    under = _probe(*_under_profile())
    assert under == dict.fromkeys(LEFT_OUT, -EPERM), under
    # The control: without the profile the same calls get past the filter and fail (or not)
    # on their arguments. As root, each reaches its argument checks.
    assert without["keyctl"] > 0, without
    if os.geteuid() == 0:
        assert all(without[name] != -EPERM for name in LEFT_OUT), without


def test_a_profile_that_cannot_be_applied_is_refused_with_its_reason(tmp_path: Path) -> None:
    broken = json.loads(PROFILE.read_text())
    broken["syscalls"].append({"names": ["getpid"], "action": "SCMP_ACT_SOMETIMES"})
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    done = subprocess.run(
        [*_under_profile(path), "true"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "unsupported action 'SCMP_ACT_SOMETIMES'" in done.stderr


@pytest.fixture(scope="module")
def confined_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """`browser-broker serve` under the profile, with both browsers, jailed (required)."""
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    folder = tmp_path_factory.mktemp("seccomp")
    wrapper = folder / "browser-broker"
    words = " ".join(f"'{word}'" for word in [*_under_profile(), str(BROKER_BIN)])
    wrapper.write_text(f'#!/bin/sh\nexec {words} "$@"\n')
    wrapper.chmod(stat.S_IRWXU)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tests.support, "BROKER_BIN", wrapper)
        process = BrokerProcess(
            env={"BROKER_ENGINES": '["chromium", "firefox"]', "BROKER_BROWSER_JAIL": "required"}
        ).start()
    yield process
    process.stop()
    assert not [p for p in process.browsers() if p.is_running()], "a browser outlived the broker"


def _is_renderer(proc: psutil.Process) -> bool:
    cmdline = command_line(proc)
    return "--type=renderer" in cmdline or (
        "-contentproc" in cmdline and "-isForBrowser" in cmdline
    )


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_browsers_run_sandboxed_under_the_profile(
    confined_broker: BrokerProcess, fixture_server: FixtureSite, engine: Engine
) -> None:
    assert confined_broker.proc is not None
    # Counted from this process's own filters (none, unless the tests run in a container).
    base = int(_status(os.getpid())["Seccomp_filters"])
    broker = _status(confined_broker.proc.pid)
    assert broker["Seccomp"] == "2" and int(broker["Seccomp_filters"]) == base + 1, broker
    async with (
        AsyncBrokerClient(confined_broker.address) as client,
        client.lease(engine=engine, ttl=120) as lease,
    ):
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")), steps.evaluate("1 + 1"), timeout=60
        )
        assert result.ok, result
        assert result[1].value == 2
        browsers = [p for p in confined_broker.browsers() if p.is_running()]
        assert any(p.name() == "bwrap" for p in browsers), "the browser is not in its jail"
        renderers = [p for p in browsers if _is_renderer(p)]
        assert renderers, [command_line(p)[:2] for p in browsers]
        own_user_ns = os.readlink("/proc/self/ns/user")
        for proc in browsers:
            # Every browser process is under the profile: the filter is inherited.
            with contextlib.suppress(FileNotFoundError):  # (one that has just exited)
                assert int(_status(proc.pid)["Seccomp_filters"]) >= base + 1, proc.pid
        for proc in renderers:
            status = _sandboxed_status(proc.pid, base + 2)
            if status is None:
                continue
            # The sandbox check: the browser's own filter on top of the profile's, no new
            # privileges, a user namespace of its own.
            assert status["Seccomp"] == "2", (proc.pid, status["Seccomp"])
            assert int(status["Seccomp_filters"]) >= base + 2, (proc.pid, status["Seccomp_filters"])
            assert status["NoNewPrivs"] == "1"
            assert os.readlink(f"/proc/{proc.pid}/ns/user") != own_user_ns
