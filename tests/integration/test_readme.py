"""The README's quick start runs as written against a live broker (only the address is swapped)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BrokerProcess

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.browser


def test_python_quick_start_runs_as_written(live_broker: BrokerProcess) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python block"
    code = blocks[0].replace("127.0.0.1:50051", live_broker.address)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[:2] == ["Hello", "broker"] and int(words[2]) > 1000, done.stdout
