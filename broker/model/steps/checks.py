"""Field checks shared by the step validators: selectors, text bounds, choices, URLs, globs, page
ids, JSON arguments and scripts."""

from __future__ import annotations

import json

from broker.common.urls import CanonicalUrl, UrlError, canonical
from broker.errors import FieldViolation
from broker.model.steps.globs import check_glob as check_glob  # URL globs have their module

MAX_URL_CHARS = 8 * 1024
MAX_SELECTOR_CHARS = 4 * 1024
MAX_SCRIPT_CHARS = 64 * 1024
MAX_VALUE_CHARS = 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 10_000

MAX_PAGE_ID_CHARS = 64

URL_SCHEMES = frozenset({"http", "https", "file", "data", "about"})
# What a navigation waits for (goto, history, wait_for_url).
WAIT_UNTIL = frozenset({"load", "domcontentloaded", "networkidle", "commit"})


def check_selector(prefix: str, selector: str, out: list[FieldViolation]) -> None:
    """The `selector` field of the action at `prefix`."""
    check_selector_field(f"{prefix}.selector", selector, out)


def check_selector_field(field_name: str, selector: str, out: list[FieldViolation]) -> None:
    if not selector.strip():
        out.append(FieldViolation(field_name, "must not be empty"))
    elif len(selector) > MAX_SELECTOR_CHARS:
        out.append(FieldViolation(field_name, f"longer than {MAX_SELECTOR_CHARS} characters"))
    elif "\x00" in selector:
        out.append(FieldViolation(field_name, "contains a NUL character"))
    elif not balanced(selector):
        out.append(FieldViolation(field_name, f"unbalanced brackets or quotes in {selector!r}"))


def balanced(selector: str) -> bool:
    """Catches the common malformed selectors before they reach the browser."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in selector:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in closing and (not stack or stack.pop() != closing[ch]):
            return False
    return not stack and not quote


def check_text(field_name: str, value: str, limit: int, out: list[FieldViolation]) -> None:
    if len(value) > limit:
        out.append(FieldViolation(field_name, f"longer than {limit} characters"))


def check_choice(
    field_name: str, value: str, allowed: frozenset[str], out: list[FieldViolation]
) -> None:
    if value not in allowed:
        out.append(FieldViolation(field_name, f"{value!r} is not one of {sorted(allowed)}"))


def check_not_blank(field_name: str, value: str, out: list[FieldViolation]) -> None:
    if not value.strip():
        out.append(FieldViolation(field_name, "must not be empty"))


def check_page_id(field_name: str, page_id: str, out: list[FieldViolation]) -> None:
    if len(page_id) > MAX_PAGE_ID_CHARS or not page_id.isprintable():
        out.append(FieldViolation(field_name, f"not a page id (1..{MAX_PAGE_ID_CHARS} characters)"))


def json_shape_fault(value: object) -> str | None:
    """What is wrong with a parsed JSON argument's shape, if anything: nested deeper than
    MAX_JSON_DEPTH, or more than MAX_JSON_VALUES values (Playwright serializes an argument
    value by value on the event loop). Level by level, in Python bytecode: in a worker thread (a
    large Run is decoded in one) it lets the event loop run between its steps."""
    depth, values, level = 0, 1, [value]
    while containers := [item for item in level if isinstance(item, (list, dict))]:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        level = []
        for container in containers:
            level.extend(container.values() if isinstance(container, dict) else container)
        values += len(level)
        if values > MAX_JSON_VALUES:
            return f"holds more than {MAX_JSON_VALUES} values"
    return None


def parse_url(field_name: str, url: str, out: list[FieldViolation]) -> CanonicalUrl | None:
    """`url` as the browser will read it (broker/common/urls.py), if its scheme is allowed.

    Leading spaces and controls, tabs and newlines inside the scheme, backslashes: all are read
    as the browser reads them, so the scheme and host judged here are the ones it uses."""
    bad, parsed = _judge_url(field_name, url)
    if bad is not None:
        out.append(bad)
    return parsed


def validate_url(field_name: str, url: str) -> FieldViolation | None:
    return _judge_url(field_name, url)[0]


def _judge_url(field_name: str, url: str) -> tuple[FieldViolation | None, CanonicalUrl | None]:
    if not url:
        return FieldViolation(field_name, "must not be empty"), None
    if len(url) > MAX_URL_CHARS:
        return FieldViolation(field_name, f"longer than {MAX_URL_CHARS} characters"), None
    try:
        parsed = canonical(url)
    except UrlError:
        return FieldViolation(field_name, f"{url[:200]!r} is not a valid absolute URL"), None
    if parsed.scheme not in URL_SCHEMES:
        schemes = sorted(URL_SCHEMES)
        why = f"{url[:200]!r} is not an absolute URL with a scheme in {schemes}"
        return FieldViolation(field_name, why), None
    if parsed.scheme in {"http", "https"} and not parsed.host:
        return FieldViolation(field_name, f"{url[:200]!r} has no host"), None
    return None, parsed


def check_http_url(field_name: str, url: str, out: list[FieldViolation]) -> None:
    parsed = parse_url(field_name, url, out)
    if parsed is not None and parsed.scheme not in {"http", "https"}:
        out.append(FieldViolation(field_name, "must be an http(s) URL"))


def check_json_arg(field_name: str, arg_json: str, out: list[FieldViolation]) -> None:
    """An optional JSON argument: bounded in size, depth and values, and valid."""
    if not arg_json:
        return
    if len(arg_json) > MAX_VALUE_CHARS:
        out.append(FieldViolation(field_name, f"longer than {MAX_VALUE_CHARS} characters"))
        return
    try:
        value = json.loads(arg_json)  # C; a nest past the recursion limit is a RecursionError
    except RecursionError:
        out.append(FieldViolation(field_name, f"nested deeper than {MAX_JSON_DEPTH} levels"))
        return
    except ValueError as exc:
        out.append(FieldViolation(field_name, f"is not valid JSON: {exc}"))
        return
    fault = json_shape_fault(value)
    if fault is not None:
        out.append(FieldViolation(field_name, fault))


def check_script(field_name: str, expression: str, out: list[FieldViolation]) -> None:
    check_not_blank(field_name, expression, out)
    check_text(field_name, expression, MAX_SCRIPT_CHARS, out)
