"""The attach relay's parser and rules, without a browser; and the close codes' numbering."""

from __future__ import annotations

import json

import pytest

from broker.attach.rules import BadMessage, decode, judge
from broker.leases.lease import ReleaseReason
from broker.runtime.attach_desk import close_code
from browserbroker.v1 import broker_pb2 as pb


def test_close_codes_are_4000_plus_the_api_reason() -> None:
    for reason in ReleaseReason:
        number = pb.ReleaseReason.Value(f"RELEASE_REASON_{reason.name}")
        assert close_code(reason) == 4000 + number


@pytest.mark.parametrize(
    "raw",
    [
        "[]",
        '{"method": "Browser.getVersion"}',
        '{"id": -1, "method": "Browser.getVersion"}',
        '{"id": 1.5, "method": "Browser.getVersion"}',
        '{"id": true, "method": "Browser.getVersion"}',
        '{"id": 1, "method": 3}',
        '{"id": 1, "method": "X.y", "params": []}',
        '{"id": 1, "method": "X.y", "sessionId": 7}',
        '{"id": 1, "method": "X.y", "extra": 1}',
        '{"id": 1, "method": "X.y", "params": {"a": NaN}}',
        "[" * 100_000,
        # what Chromium cannot read, and so never answers
        '{"id": 1, "method": "X.y", "params": {"a": 1e400}}',
        '{"id": 1, "method": "X.y", "params": {"a": -1e400}}',
        '{"id": 1, "method": "X.y", "params": {"a": ' + "9" * 400 + "}}",
        '{"id": 1, "method": "X.y", "params": {"a": 9007199254740993}}',
        '{"id": 1, "method": "X.y", "params": {"a": 9007199254740992}}',
        '{"id": 1, "method": "X.y", "params": {"a": -9007199254740992}}',
        '{"id": 1, "method": "X.y", "params": {"a": [' + "1," * 1000 + "NaN]}}",
        '{"id": 1, "method": "X.y", "params": {"a": ' + "[" * 101 + "]" * 101 + "}}",
        '{"id": 1, "method": "X.y", "params": {"a": ' + '{"b":' * 150 + "1" + "}" * 150 + "}}",
    ],
)
def test_what_is_not_a_command_is_refused(raw: str) -> None:
    with pytest.raises(BadMessage):
        decode(raw)


def test_deep_brackets_in_strings_and_big_finite_numbers_are_commands() -> None:
    params = {"a": "[" * 500 + '\\"{', "b": [[[1.5e300, -(2**53 - 1), 2**53 - 1]]]}
    command = decode(json.dumps({"id": 1, "method": "X.y", "params": params}))
    assert command.params == params
    assert json.loads(command.wire(9, None))["params"] == params


def test_the_browser_is_sent_what_was_judged() -> None:
    command = decode('{"id": 5, "method": "Page.navigate", "params": {"url": "http://a.test/"}}')
    assert judge(command, "/lease/downloads") is None
    assert command.wire(9, "S") == (
        b'{"id":9,"method":"Page.navigate","params":{"url":"http://a.test/"},"sessionId":"S"}'
    )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "\tfile:///etc",
        "fi\nle:///etc",
        "FILE:/etc",
        "view-source:x",
        "blob:x",
    ],
)
def test_navigations_are_judged_as_the_browser_parses_them(url: str) -> None:
    command = decode(
        '{"id": 1, "method": "Page.navigate", "params": {"url": '
        + repr(url).replace("'", '"')
        + "}}"
    )
    assert judge(command, "/d") is not None


def test_download_folders_are_the_leases_own() -> None:
    command = decode(
        '{"id": 1, "method": "Browser.setDownloadBehavior",'
        ' "params": {"behavior": "allowAndName", "downloadPath": "/root"}}'
    )
    assert judge(command, "/lease/downloads") is None
    assert command.params["downloadPath"] == "/lease/downloads"
