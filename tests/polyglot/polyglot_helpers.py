"""Helpers of tests/polyglot: the cached tools, running the examples, reading their output.

scripts/polyglot.sh installs the tools into ${BROKER_CACHE_DIR:-~/.cache/browser-broker}/bin
and must run first. Outside CI a missing tool skips its test with the reason; with CI=true it
fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE_BIN = (
    Path(os.environ.get("BROKER_CACHE_DIR") or Path.home() / ".cache/browser-broker") / "bin"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def tool_env() -> dict[str, str]:
    """The environment with the cached tools and Go on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(CACHE_BIN), env.get("PATH", ""), "/usr/local/go/bin"])
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-buildvcs=false"
    return env


def need_tool(name: str) -> str:
    """The path of a tool, else skip (outside CI) or fail (CI) with the reason."""
    path = shutil.which(name, path=tool_env()["PATH"])
    if path is None:
        missing(f"{name} not found on PATH or in {CACHE_BIN}: run scripts/polyglot.sh")
    assert path is not None
    return path


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason + " (CI=true: a missing tool is a failure)")
    pytest.skip(reason)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON lines the examples print, in order."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run(cmd: list[str], cwd: Path = ROOT, timeout: float = 120) -> Outcome:
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)
