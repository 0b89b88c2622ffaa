"""The README's quick start runs as written against a live broker (only the address is swapped)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BrokerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Quick start (Python SDK)"

pytestmark = pytest.mark.browser


def quick_start_block() -> str:
    """The first python block of the README's quick start section."""
    section = re.search(
        rf"^{re.escape(HEADING)}\n(.*?)(?=^## |\Z)", README.read_text(), re.M | re.S
    )
    assert section, f"README has no '{HEADING}' section"
    blocks: list[str] = re.findall(r"^```python\n(.*?)^```$", section.group(1), re.M | re.S)
    assert blocks, f"README's '{HEADING}' section has no python block"
    return blocks[0]


def test_python_quick_start_runs_as_written(live_broker: BrokerProcess) -> None:
    code = quick_start_block().replace("127.0.0.1:50051", live_broker.address)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[:2] == ["Hello", "broker"] and int(words[2]) > 1000, done.stdout
