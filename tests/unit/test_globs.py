"""URL globs: Playwright's reading of `**`, `*` and `?`, every other character literal, matched by
RE2 in time linear in the URL, and bounded at the edge."""

from __future__ import annotations

import time

import pytest

from broker.errors import FieldViolation
from broker.model.steps.globs import (
    MAX_GLOB_WILDCARDS,
    MAX_MATCHED_URL_CHARS,
    MAX_WILDCARD_GLOB_CHARS,
    check_glob,
    matches_any,
    url_glob,
)


@pytest.mark.parametrize(
    ("glob", "url", "matches"),
    [
        ("**/account", "https://a.test/x/y/account", True),
        ("**/account", "https://a.test/account?x", False),
        ("https://a.test/*", "https://a.test/page", True),
        ("https://a.test/*", "https://a.test/a/b", False),
        ("https://a.test/**", "https://a.test/a/b", True),
        ("https://a.test/***", "https://a.test/a/b", True),  # a run of stars is `**`
        ("https://a.test/p?", "https://a.test/p1", True),
        ("https://a.test/p?", "https://a.test/p12", False),
        ("https://a.test/?", "https://a.test/\n", True),  # `?` is any one character
        ("**/img/*", "https://a.test/img/x.png", True),
        ("**/a.b", "https://a.test/aXb", False),  # regex syntax is literal
        ("**/(x|y)[0-9]+{1}$^\\", "https://a.test/(x|y)[0-9]+{1}$^\\", True),
        ("**/(x|y)", "https://a.test/x", False),
        ("**/é/*", "https://a.test/é/ü", True),
        ("https://a.test/page", "https://a.test/page", True),  # equal: always matches
    ],
)
def test_glob_semantics(glob: str, url: str, matches: bool) -> None:
    assert url_glob(glob).matches(url) is matches


def test_the_issue_glob_is_linear() -> None:
    """Issue 22: `"**a" * 8 + "**b"` took 79 s against a 79-character URL with a backtracking
    regex. RE2 matches it, and a URL of the longest matched length, in well under a second."""
    glob = url_glob("**a" * 8 + "**b")
    started = time.monotonic()
    assert not glob.matches("http://127.0.0.1:1/" + "a" * 60)
    assert not glob.matches("a" * MAX_MATCHED_URL_CHARS)
    assert time.monotonic() - started < 1.0


def test_a_url_past_the_bound_matches_only_when_equal() -> None:
    long_url = "https://a.test/" + "a" * MAX_MATCHED_URL_CHARS
    assert not url_glob("**").matches(long_url)
    assert url_glob(long_url[:8000]).matches(long_url[:8000])


def test_compiled_once() -> None:
    assert url_glob("**/once/*") is url_glob("**/once/*")


async def test_matches_any_off_the_loop_for_long_urls() -> None:
    long_url = "https://a.test/" + "x" * 2000 + "/end"
    assert await matches_any([url_glob("**/nope"), url_glob("**/end")], long_url)
    assert not await matches_any([url_glob("**/nope")], long_url)
    assert not await matches_any([], long_url)
    assert await matches_any([url_glob("**/end")], "https://a.test/end")


@pytest.mark.parametrize(
    ("glob", "complaint"),
    [
        ("", "must not be empty"),
        ("  ", "must not be empty"),
        ("?" * (MAX_GLOB_WILDCARDS + 1), "wildcards"),
        ("**a" * MAX_GLOB_WILDCARDS + "**b", "wildcards"),
        ("**" + "a" * MAX_WILDCARD_GLOB_CHARS, "a glob with wildcards"),
        ("https://a.test/" + "a" * 9000, "longer than"),
    ],
)
def test_check_glob_refuses(glob: str, complaint: str) -> None:
    out: list[FieldViolation] = []
    check_glob("steps[0].wait_for_url.url", glob, out)
    assert len(out) == 1 and out[0].field == "steps[0].wait_for_url.url"
    assert complaint in out[0].description


@pytest.mark.parametrize(
    "glob",
    ["**a" * 8 + "**b", "**/api/*/items?page=*", "https://a.test/" + "a" * 8000],
)
def test_check_glob_accepts(glob: str) -> None:
    out: list[FieldViolation] = []
    check_glob("url", glob, out)
    assert out == []
