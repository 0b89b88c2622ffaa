"""Fixtures of the tests of the examples in other languages (Go, Node.js, grpcurl, buf).

The live broker (`live_broker`) and the fixture pages (`fixture_server`) come from
tests/conftest.py; the tools from scripts/polyglot.sh (see polyglot_helpers).
"""

from __future__ import annotations

import pytest

from .polyglot_helpers import ROOT, missing, need_tool


@pytest.fixture(scope="session")
def go_example() -> list[str]:
    """The command of the Go example client, built by scripts/polyglot.sh before the suite."""
    return [need_tool("browserbroker-go-example")]


@pytest.fixture(scope="session")
def node_example() -> list[str]:
    """The command of the Node.js example client."""
    node = need_tool("node")
    if not (ROOT / "examples/node/node_modules/@grpc/grpc-js").is_dir():
        missing("examples/node/node_modules is missing: run scripts/polyglot.sh")
    return [node, str(ROOT / "examples/node/client.js")]


@pytest.fixture(params=["go", "node"])
def example(request: pytest.FixtureRequest) -> list[str]:
    """Each example client in turn; both take the same flags and print the same events."""
    return list(request.getfixturevalue(f"{request.param}_example"))
