"""A client's message parsed strictly at C speed, on the broker's one event loop.

`orjson` reads the message (no NaN or Infinity, no number that overflows a double, strict
UTF-8, a key given twice keeps its last value) with the cyclic garbage collector paused, so a
message of a million small arrays is not scanned again and again as it is built; one RE2 pass
(linear time, no backtracking) bounds how deeply arrays and objects nest, run only when the
message has more brackets than MAX_DEPTH; and `orjson.dumps` with OPT_STRICT_INTEGER refuses an
integer beyond 2**53 - 1. One beyond 2**64, which orjson reads as a double, is found in the text:
a translate finds any run of 20 digits, and only then do two RE2 passes look for it outside the
strings. Nothing here calls Python code per number, string or object.

A message orjson refuses only for a lone surrogate (`"\\ud800"`, which Chromium and Firefox
would keep as a lone UTF-16 unit) is read by the standard library's C parser instead, if it is
at most MAX_SURROGATE_BYTES and nested at most MAX_DEPTH (that parser recurses), with each
lone surrogate turned into U+FFFD: what is judged is what the browser is sent, as the broker
serializes it.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import re2

MAX_DEPTH = 100  # arrays and objects within one another
MAX_SURROGATE_BYTES = 256 * 1024  # a message with a lone surrogate is read the slower way
STRICT = orjson.OPT_STRICT_INTEGER  # integers within 2**53 - 1 either side of 0


class BadMessage(ValueError):
    """Not a message of the protocol (the socket is closed: nothing sane can be answered)."""


def _within(depth: int) -> str:
    """A regular expression for JSON text nesting at most `depth` deep (strings skipped)."""
    atom = r'[^\[\]{}"]|"(?:[^"\\]|\\.)*"'
    pattern = f"(?:{atom})*"
    for _ in range(depth):
        pattern = f"(?:{atom}|[\\[{{]{pattern}[\\]}}])*"
    return pattern


_OPTIONS = re2.Options()
_OPTIONS.dot_nl = True
_OPTIONS.max_mem = 64 * 1024 * 1024  # its DFA for the largest message, never the slow NFA
_SHALLOW = re2.compile(_within(MAX_DEPTH), _OPTIONS)


@contextmanager
def _collector_paused() -> Iterator[None]:
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _too_deep(raw: str | bytes) -> bool:
    if isinstance(raw, str):
        opens = raw.count("[") + raw.count("{")
    else:
        opens = raw.count(b"[") + raw.count(b"{")
    return opens > MAX_DEPTH and _SHALLOW.fullmatch(raw) is None


def _no_surrogates(raw: str | bytes) -> str:
    """The message with each lone surrogate as U+FFFD, or BadMessage."""
    if len(raw) > MAX_SURROGATE_BYTES:
        raise BadMessage(f"a lone surrogate in a message over {MAX_SURROGATE_BYTES} bytes")
    if _too_deep(raw):  # before the standard library's parser, which recurses per level
        raise BadMessage(f"nested deeper than {MAX_DEPTH}")
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw  # strict UTF-8, as orjson reads
        with _collector_paused():
            value = json.loads(text, parse_constant=_no_constant)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, BadMessage):
            raise
        raise BadMessage(f"not JSON: {str(exc)[:200]}") from None
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_DIGIT_RUN = b"0" * 20  # an integer literal this long is beyond 2**64: orjson reads a double
_STRING = re2.compile(r'"(?:[^"\\]|\\.)*"', _OPTIONS)
_LONG_INTEGER = re2.compile(r"(?:^|[^0-9.eE+-])-?[0-9]{20,}(?:$|[^0-9.eE])", _OPTIONS)


def _long_integer(raw: str | bytes) -> bool:
    """Whether `raw` has an integer literal of 20 digits or more outside its strings: one
    translate and one search at C speed, and only where such a run of digits is found, two RE2
    passes (strings blanked out, then the literal searched for)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.translate(_DIGITS).find(_DIGIT_RUN) < 0:
        return False
    return _LONG_INTEGER.search(_STRING.sub(b'""', data)) is not None


def _no_constant(name: str) -> Any:
    raise BadMessage(f"{name} is not JSON")


def _read(raw: str | bytes, loads: Callable[[str | bytes], Any]) -> Any:
    try:
        with _collector_paused():
            return loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {str(exc)[:200]}") from None


def strict_object(raw: str | bytes) -> dict[str, Any]:
    """A client's message as a JSON object, parsed strictly (see above), or BadMessage."""
    try:
        message = _read(raw, orjson.loads)
    except BadMessage as exc:
        if "surrogate" not in str(exc):
            raise
        raw = _no_surrogates(raw)
        message = _read(raw, orjson.loads)
    if _too_deep(raw):
        raise BadMessage(f"nested deeper than {MAX_DEPTH}")
    if _long_integer(raw):
        raise BadMessage("an integer beyond 2**53 - 1 (a double does not hold it)")
    try:
        orjson.dumps(message, option=STRICT)
    except orjson.JSONEncodeError as exc:
        raise BadMessage(f"{str(exc)[:200]} (an integer a double does not hold)") from None
    if not isinstance(message, dict):
        raise BadMessage("a message is a JSON object")
    return message


def serialized(message: dict[str, Any]) -> bytes:
    """The broker's own JSON of a judged message (its numbers were checked by strict_object)."""
    return orjson.dumps(message, option=STRICT)
