"""The attach relays' strict parse (`broker/attach/strict_json.py`): every guarantee it makes,
each shown by an attack, and the mechanisms that keep it at C speed (never a timing)."""

from __future__ import annotations

import gc
import json
from typing import Any

import orjson
import pytest

from broker.attach import strict_json
from broker.attach.rules import BadMessage, decode, judge
from broker.attach.strict_json import MAX_DEPTH, MAX_SURROGATE_BYTES, strict_object


def _command(params: str) -> str:
    return '{"id": 1, "method": "Page.navigate", "params": ' + params + "}"


def test_a_key_given_twice_is_judged_and_sent_by_its_last_value() -> None:
    # The browser is sent the broker's serialization: one key, the value judged.
    refused = decode(_command('{"url": "http://a.test/", "url": "file:///etc/passwd"}'))
    assert judge(refused, "/d") is not None
    passed = decode(_command('{"url": "file:///etc/passwd", "url": "http://a.test/"}'))
    assert judge(passed, "/d") is None
    wire = passed.wire(7, None)
    assert wire.count(b'"url"') == 1 and b"file:" not in wire


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("NaN", "not JSON"),
        ("-Infinity", "not JSON"),
        ("1e400", "infinity"),
        ("-1e400", "infinity"),
        ("9" * 400, "infinity"),
        (str(2**53), "53-bit"),
        (str(-(2**53)), "53-bit"),
        (str(2**64 - 1), "2\\*\\*53"),
    ],
)
def test_numbers_the_browser_cannot_read_are_refused_naming_why(number: str, why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        strict_object('{"a": [[{"b": ' + number + "}]]}")


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        '{"s": "\\\\", "a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",  # an escaped backslash
        "[" + "{}," * 300 + '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH + "]",
    ],
)
def test_nesting_past_max_depth_is_refused(text: str) -> None:
    with pytest.raises(BadMessage, match="nested deeper"):
        strict_object(text if text.startswith("{") else '{"a": ' + text + "}")


def test_brackets_in_strings_do_not_count_and_max_depth_passes() -> None:
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    text = '{"s": "[[[\\"{{{' + "[" * 500 + '", "t": "\\\\", "a": ' + deep + "}"
    assert strict_object(text)["s"].startswith('[[["{{{')
    assert strict_object(text.encode())["t"] == "\\"


def test_a_lone_surrogate_is_judged_and_sent_as_u_fffd() -> None:
    for escaped in ("\\ud800", "\\udfff", "\\ud800x"):
        command = decode(_command('{"url": "http://a.test/' + escaped + '"}'))
        assert "\ufffd" in command.params["url"]
        assert "\ufffd" in json.loads(command.wire(1, None))["params"]["url"]
    paired = decode(_command('{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}'))
    assert paired.params == {"a": "\U0001f600", "b": "\\ud800"}


@pytest.mark.parametrize(
    "tail",
    ['"b": NaN', '"b": 1e400', '"b": 9007199254740993', '"b": ' + "[" * 101 + "]" * 101],
)
def test_a_lone_surrogate_does_not_open_a_laxer_parse(tail: str) -> None:
    with pytest.raises(BadMessage):
        strict_object('{"a": "\\ud800", ' + tail + "}")


def test_a_large_message_with_a_lone_surrogate_is_refused() -> None:
    padding = "1," * (MAX_SURROGATE_BYTES // 2)
    with pytest.raises(BadMessage, match="lone surrogate"):
        strict_object('{"a": "\\ud800", "b": [' + padding + "1]}")


def test_utf8_encoded_surrogates_are_refused() -> None:
    with pytest.raises(BadMessage):
        strict_object(b'{"a": "\xed\xa0\x80"}')


def test_the_collector_is_paused_while_a_message_is_built_and_resumed_after() -> None:
    seen: list[bool] = []
    real = orjson.loads

    def loads(raw: Any) -> Any:
        seen.append(gc.isenabled())
        return real(raw)

    assert gc.isenabled()
    strict_json._read('{"a": 1}', loads)
    with pytest.raises(BadMessage):
        strict_json._read("{", loads)
    assert seen == [False, False] and gc.isenabled()


def test_no_python_code_runs_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parse is orjson's, and the depth check RE2's: json.loads (with its Python hooks) is
    not called for a message without a lone surrogate."""
    monkeypatch.setattr(json, "loads", None)
    message = strict_object('{"a": [' + "[1.5, 2, {}]," * 500 + "1]}")
    assert len(message["a"]) == 501


@pytest.mark.parametrize(
    "number", ["1" + "0" * 19, "-" + "9" * 30, "1" + "0" * 25], ids=["2**64-ish", "neg", "1e25"]
)
def test_an_integer_past_64_bits_is_refused(number: str) -> None:
    # orjson reads it as a double: the literal is found outside strings at C speed.
    with pytest.raises(BadMessage, match="2\\*\\*53"):
        strict_object('{"a": [1, ' + number + "]}")


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "' + "9" * 30 + '"}',  # in a string
        '{"a": "\\"' + "9" * 30 + '"}',  # after an escaped quote, still in the string
        '{"a": 1' + "0" * 25 + ".5}",  # a double the client wrote
        '{"a": 0.' + "1" * 30 + "}",
        '{"a": 1e-' + "0" * 25 + "1}",
    ],
)
def test_long_runs_of_digits_that_are_no_integer_pass(text: str) -> None:
    strict_object(text)


def test_a_lone_surrogate_before_deep_nesting_is_refused_without_recursing() -> None:
    nested = "[" * 5000 + "]" * 5000
    with pytest.raises(BadMessage, match="nested deeper"):
        strict_object('{"a": "\\ud800", "b": ' + nested + "}")
