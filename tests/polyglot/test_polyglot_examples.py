"""The Go and Node.js example clients against a live broker: each scenario, same flags and output.

The examples print one JSON object per line ({"event": ...}) and exit 0 only when the broker
answered as the scenario expects; these tests check the lines themselves as well.
"""

from __future__ import annotations

import re
import time
from concurrent import futures
from typing import Any

import grpc
import pytest

from .polyglot_helpers import Outcome, run


def drive(example: list[str], address: str, scenario: str, *flags: str) -> Outcome:
    outcome = run([*example, "--addr", address, *flags, scenario])
    assert outcome.events, outcome.describe()
    assert outcome.events[0]["event"] == "trace", outcome.describe()
    return outcome


def codes(outcome: Outcome, event: str) -> list[str]:
    return [e["code"] for e in outcome.of(event)]


def assert_released_twice(outcome: Outcome) -> None:
    first, second = outcome.of("Release")[-2:]
    assert first["released_now"] is True
    assert second["released_now"] is False
    assert first["reason"] == second["reason"] == "RELEASE_REASON_CLIENT_RELEASE"


@pytest.mark.browser
def test_full_cycle(example: list[str], live_broker: Any, fixture_server: Any) -> None:
    flags = ["--url", fixture_server.url("form.html"), "--selector", "#title", "--eval", "1+1"]
    outcome = drive(example, live_broker.address, "cycle", *flags)
    assert outcome.returncode == 0, outcome.describe()
    steps = outcome.of("step")
    assert [s["action"] for s in steps] == ["goto", "get_text", "evaluate"], outcome.describe()
    assert all(s["ok"] for s in steps), outcome.describe()
    assert steps[0]["http_status"] == 200
    assert steps[1]["text"] == "Fixture"
    assert steps[2]["json"] == "2"
    assert codes(outcome, "Run") == ["OK", "PERMISSION_DENIED"]
    assert_released_twice(outcome)
    assert outcome.of("done") == [{"event": "done", "ok": True}]


@pytest.mark.browser
def test_deadline_stops_the_run_and_keeps_the_lease(
    example: list[str], live_broker: Any, fixture_server: Any
) -> None:
    started = time.monotonic()
    flags = ["--url", fixture_server.url("slow"), "--timeout", "2s", "--eval", "1+1"]
    outcome = drive(example, live_broker.address, "deadline", *flags)
    elapsed = time.monotonic() - started
    assert outcome.returncode == 0, outcome.describe()
    assert codes(outcome, "Run") == ["DEADLINE_EXCEEDED", "OK"], outcome.describe()
    # The slow page takes 30 s: the broker gave up on it at the deadline, not at the page's pace.
    assert elapsed < 20, f"took {elapsed:.1f}s\n{outcome.describe()}"
    [step] = outcome.of("step")
    assert step["action"] == "evaluate" and step["ok"] and step["json"] == "2"
    [release] = outcome.of("Release")
    assert release["released_now"] is True


@pytest.mark.browser
def test_release_twice_answers_the_first_outcome(example: list[str], live_broker: Any) -> None:
    outcome = drive(example, live_broker.address, "release-twice")
    assert outcome.returncode == 0, outcome.describe()
    assert codes(outcome, "Release") == ["OK", "OK"]
    assert_released_twice(outcome)


@pytest.mark.browser
def test_wrong_token_is_permission_denied(example: list[str], live_broker: Any) -> None:
    outcome = drive(example, live_broker.address, "wrong-token")
    assert outcome.returncode == 0, outcome.describe()
    assert codes(outcome, "Run") == ["PERMISSION_DENIED"]
    assert codes(outcome, "Release") == ["PERMISSION_DENIED", "OK"]
    assert outcome.of("Release")[-1]["released_now"] is True


def test_calls_carry_the_printed_trace_context(example: list[str]) -> None:
    seen: list[dict[str, str | bytes]] = []

    def acquire(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata()))
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "a recorder, not a broker")

    recorder = grpc.method_handlers_generic_handler(
        "browserbroker.v1.BrowserBrokerService",
        {"Acquire": grpc.unary_unary_rpc_method_handler(acquire)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[recorder])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        outcome = drive(example, f"127.0.0.1:{port}", "release-twice")
    finally:
        server.stop(None)
    assert outcome.returncode == 1, outcome.describe()  # the recorder answers UNIMPLEMENTED
    assert codes(outcome, "Acquire") == ["UNIMPLEMENTED"]
    trace_id = outcome.events[0]["trace_id"]
    [metadata] = seen
    assert re.fullmatch(f"00-{trace_id}-[0-9a-f]{{16}}-01", str(metadata.get("traceparent"))), (
        metadata
    )


@pytest.mark.browser
def test_login_keeps_storage_state_for_a_second_lease(
    example: list[str], live_broker: Any, fixture_server: Any
) -> None:
    """Lease 1 signs in through the fixture site's form and exports its storage state; lease 2
    starts from it and is signed in."""
    flags = ["--url", fixture_server.url("login.html"), "--selector", "#who"]
    outcome = drive(example, live_broker.address, "login", *flags)
    assert outcome.returncode == 0, outcome.describe()
    steps = outcome.of("step")
    assert [s["action"] for s in steps] == [
        "goto", "fill", "fill", "click", "wait_for_selector", "get_text", "storage_state",
        "goto", "get_text",
    ], outcome.describe()  # fmt: skip
    assert all(s["ok"] for s in steps), outcome.describe()
    assert steps[5]["text"] == steps[8]["text"] == "signed in as ada"
    [state] = outcome.of("state")
    assert state["cookies"] == ["session"] and state["bytes"] > 0
    assert outcome.of("signed_in") == [
        {"event": "signed_in", "text": "signed in as ada", "same": True}
    ]
    assert len(outcome.of("Acquire")) == 2 and codes(outcome, "Run") == ["OK", "OK"]
    assert [r["released_now"] for r in outcome.of("Release")] == [True, True]
