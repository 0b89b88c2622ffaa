"""Every `sh` block of the section "Calling from other languages" of docs/clients.md runs, as printed.

The blocks run in order in one bash (so variables such as LEASE_ID carry over; each block
starts in the repository root) against the live broker: `localhost:50051` becomes its address
and `https://example.com/` a local page with `<h1 id="title">Fixture</h1>`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from .polyglot_helpers import ROOT, need_tool, run

HEADING = "## Calling from other languages"
ADDRESS = "localhost:50051"
PAGE = "https://example.com/"

# (text in a block, text its output must contain; "" when only the block's success counts)
EXPECTED = [
    ("scripts/polyglot.sh", ""),
    (" list", "browserbroker.v1.BrowserBrokerService"),
    (" describe ", "rpc Run ( .browserbroker.v1.RunRequest ) returns ( stream"),
    ("/GetStatus", '"capacity"'),
    ("/Acquire", '"lease_id"'),
    ("/Run", '"text": "Fixture"'),
    ("/Release", '"released_now": true'),
    ("/Release", '"released_now": false'),
    ("go run .", '{"event":"done","ok":true}'),
    ("node client.js", '{"event":"done","ok":true}'),
    ("buf lint", ""),
    ("buf breaking", ""),
]


def section(path: Path) -> str | None:
    """The text of the section under HEADING, up to the next heading of its level."""
    if not path.is_file():
        return None
    match = re.search(rf"^{re.escape(HEADING)}\n(.*?)(?=^## |\Z)", path.read_text(), re.M | re.S)
    return match.group(1) if match else None


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, re.M | re.S)


@pytest.mark.browser
def test_shell_examples_run_as_printed(live_broker: Any, fixture_server: Any) -> None:
    for tool in ("grpcurl", "jq", "go", "node", "npm", "buf"):
        need_tool(tool)
    text = section(ROOT / "docs" / "clients.md")
    assert text, f"no '{HEADING}' section"
    blocks = sh_blocks(text)
    # setup, list/describe, GetStatus, Acquire, Run, Release, Go, Node.js, buf
    assert len(blocks) >= 9, blocks
    script = ["exec 2>&1", "set -eo pipefail"]
    for i, block in enumerate(blocks):
        live = block.replace(ADDRESS, live_broker.address).replace(
            PAGE, fixture_server.url("form.html")
        )
        script += [f"cd {shlex.quote(str(ROOT))}", f"echo '@@block {i}'", live]
    script.append("echo '@@end'")
    outcome = run(["bash", "-c", "\n".join(script)], timeout=600)
    outputs = re.split(r"^@@block \d+\n", outcome.stdout, flags=re.M)[1:]
    ran = len(outputs)
    assert outcome.returncode == 0 and outcome.stdout.rstrip().endswith("@@end"), (
        f"block {ran - 1} failed:\n{blocks[ran - 1] if ran else ''}\n{outcome.describe()}"
    )
    for needle, want in EXPECTED:
        matching = [out for block, out in zip(blocks, outputs, strict=True) if needle in block]
        assert matching, f"no sh block runs {needle!r}"
        assert any(want in out for out in matching), (
            f"no output of a block with {needle!r} has {want!r}:\n" + "\n".join(matching)
        )
