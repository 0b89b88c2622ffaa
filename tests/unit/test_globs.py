"""URL globs: Playwright's reading (`**`, `*`, `/**/`, `{a,b}`, `\\` escapes, `?` and every other
character literal, the glob normalised as a URL), matched by RE2 in time linear in the URL, and
bounded at the edge. The differential tests hold the port to the installed Playwright."""

from __future__ import annotations

import re
import time

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from playwright._impl._glob import glob_to_regex_pattern as playwright_regex
from playwright._impl._helper import resolve_glob_base, url_matches

from broker.errors import FieldViolation
from broker.model.steps.globs import (
    MAX_GLOB_WILDCARDS,
    MAX_MATCHED_URL_CHARS,
    MAX_WILDCARD_GLOB_CHARS,
    UrlGlob,
    check_glob,
    glob_to_regex_pattern,
    matches_any,
    resolve_glob,
    url_glob,
    wildcards,
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
        ("https://a.test/p?", "https://a.test/p?", True),  # `?` is literal
        ("https://a.test/p?", "https://a.test/p1", False),
        ("**/*.{png,jpg}", "https://a.test/img/x.jpg", True),  # one of the alternatives
        ("**/*.{png,jpg}", "https://a.test/img/x.gif", False),
        ("https://a.test/**/a.js", "https://a.test/a.js", True),  # `/**/`: no directory too
        ("https://a.test/**/a.js", "https://a.test/x/y/a.js", True),
        ("https://a.test/\\{a\\}\\*", "https://a.test/{a}*", True),  # escaped: literal
        ("https://a.test/\\{a\\}\\*", "https://a.test/{a}x", False),
        ("https://a.test/a,b", "https://a.test/a,b", True),  # `,` outside a group: literal
        ("HTTPS://A.TEST/P", "https://a.test/P", True),  # scheme and host case-insensitive
        ("https://a.test", "https://a.test/", True),  # an empty path is `/`
        ("**/img/*", "https://a.test/img/x.png", True),
        ("**/a.b", "https://a.test/aXb", False),  # regex syntax is literal
        ("**/(x|y)[0-9]+$^\\", "https://a.test/(x|y)[0-9]+$^\\", True),
        ("**/(x|y)", "https://a.test/x", False),
        ("**/é/*", "https://a.test/é/ü", True),
        ("https://a.test/page", "https://a.test/page", True),
    ],
)
def test_glob_semantics(glob: str, url: str, matches: bool) -> None:
    assert url_glob(glob).matches(url) is matches
    assert url_matches(None, url, glob) is matches  # Playwright's own reading


# Globs whose reading differs between a naive translation and Playwright's: groups, escapes,
# `/**/`, `?` in a path or query, schemes with wildcards, special schemes, bad ports.
TRICKY = [
    "**/*.{png,jpg}",
    "https://x/**/a.js",
    "https://x/?",
    "https://x/p?q=*",
    "**/api/*/items?page=*",
    "{a,b}",
    "{a,{b,c},d}",
    "a,b",
    "{}",
    "{,}",
    "\\",
    "a\\",
    "\\\\?",
    "https://x/\\\\?a",
    "\\*\\{\\}\\,\\?\\a",
    "**/**/a",
    "/**/",
    "**/",
    "a/**",
    "a/**b",
    "a**/b",
    "***/a",
    "http*://x/*",
    "{http,https}://x/",
    "HTTP://X.Y/A?B",
    "https://X:8080/a",
    "https://x:bad/a",
    "https://[::1/a",
    "about:blank",
    "data:text/html,*",
    "file:///**",
    "./a/../b",
    "//x/a",
    "https://x/a#f*",
    "https://x/a;p",
    "$_1_$/a",
    "a.b",
    "x{",
    "x}",
    "}{",
]
URLS = [
    "https://x/a.js",
    "https://x/y/a.js",
    "https://x/?",
    "https://x/a",
    "https://x/p?q=1",
    "https://a.test/i/x.png",
    "https://a.test/api/v1/items?page=2",
    "a",
    "b",
    "c",
    "a,b",
    "",
    "\\",
    "a\\",
    "?",
    "*{},?a",
    "x/a",
    "a/b",
    "a/x/b",
    "/",
    "http://x/y",
    "https://x/",
    "http://x.y/A?B",
    "https://x:8080/a",
    "about:blank",
    "data:text/html,x",
    "file:///etc/x",
    "https://x/a#f1",
    "https://x/a;p",
    "https://x/a\n",
]


def _playwright_compiles(glob: str) -> bool:
    try:
        re.compile(playwright_regex(resolve_glob_base(None, glob)))
    except re.error:
        return False
    return True


def _agrees(glob: str, urls: list[str]) -> None:
    """Our port gives Playwright's regex, and our RE2 matcher Playwright's answers."""
    assert glob_to_regex_pattern(glob) == playwright_regex(glob)
    assert resolve_glob(glob) == resolve_glob_base(None, glob)
    out: list[FieldViolation] = []
    check_glob("url", glob, out)
    if not _playwright_compiles(glob):
        assert any("unbalanced" in v.description for v in out)  # refused at the edge
        with pytest.raises(re2.error):
            UrlGlob(glob)
        return
    assert not any("unbalanced" in v.description for v in out)
    ours = UrlGlob(glob)
    for url in urls:
        assert ours.matches(url) is url_matches(None, url, glob), (glob, url)


@pytest.mark.parametrize("glob", TRICKY)
def test_tricky_globs_match_as_playwright(glob: str) -> None:
    _agrees(glob, [*URLS, glob, glob.replace("\\", ""), re.sub("[{},*]", "", glob)])


# Few stars and short URLs: Python's backtracking regex stays fast on every input drawn.
_PIECES = st.sampled_from(["*", "**", "?", "{", "}", ",", "\\", "/", ".", ":", "a", "b", "A"])
_PREFIXES = st.sampled_from(["", "", "**/", "http://", "HTTP://A", "https://x/", "about:", "*"])
_URL_CHARS = st.sampled_from(list("ab/.?,{}\\*:A\n"))


def _bounded(glob: str) -> bool:
    return len(re.findall(r"\*+", glob)) <= 4 and wildcards(glob) <= 8


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    prefix=_PREFIXES,
    pieces=st.lists(_PIECES, min_size=1, max_size=8),
    data=st.data(),
)
def test_generated_globs_match_as_playwright(
    prefix: str, pieces: list[str], data: st.DataObject
) -> None:
    glob = prefix + "".join(pieces)
    assume(_bounded(glob))
    urls = data.draw(st.lists(st.text(_URL_CHARS, max_size=12), max_size=4))
    if _playwright_compiles(glob):
        regex = playwright_regex(resolve_glob_base(None, glob))
        # URLs the regex matches, and the same one character shorter or longer.
        matching = data.draw(st.lists(st.from_regex(regex), max_size=3))
        urls += [u for u in matching if len(u) <= 24]
        urls += [u[:-1] for u in urls if u] + [u + "a" for u in urls]
    _agrees(glob, urls)


def test_the_issue_glob_is_linear() -> None:
    """Issue 22: `"**a" * 8 + "**b"` took 79 s against a 79-character URL with a backtracking
    regex. RE2 matches it, and a URL of the longest matched length, in well under a second."""
    glob = url_glob("**a" * 8 + "**b")
    started = time.monotonic()
    assert not glob.matches("http://127.0.0.1:1/" + "a" * 60)
    assert not glob.matches("a" * MAX_MATCHED_URL_CHARS)
    assert time.monotonic() - started < 1.0


def test_a_url_past_the_bound_matches_only_a_glob_without_stars() -> None:
    long_url = "https://a.test/" + "a" * MAX_MATCHED_URL_CHARS
    assert not url_glob("**").matches(long_url)
    assert url_glob(long_url[:8000]).matches(long_url[:8000])
    # Without stars a glob matches no URL longer than itself; such a URL is not even scanned.
    assert not url_glob(long_url[:8000]).matches(long_url[:8000] + "a" * 10**6)


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
        ("*a" * (MAX_GLOB_WILDCARDS + 1), "wildcards"),
        ("**a" * MAX_GLOB_WILDCARDS + "**b", "wildcards"),
        ("**/*.{" + ",".join("abcdefghi") + "}", "wildcards"),  # one per alternative
        ("**" + "a" * MAX_WILDCARD_GLOB_CHARS, "a glob with wildcards"),
        ("{a" + "a" * MAX_WILDCARD_GLOB_CHARS + "}", "a glob with wildcards"),
        ("https://a.test/" + "a" * 9000, "longer than"),
        ("**/{a,b", "unbalanced"),
        ("**/a}", "unbalanced"),
        ("}{", "unbalanced"),
    ],
)
def test_check_glob_refuses(glob: str, complaint: str) -> None:
    out: list[FieldViolation] = []
    check_glob("steps[0].wait_for_url.url", glob, out)
    assert len(out) == 1 and out[0].field == "steps[0].wait_for_url.url"
    assert complaint in out[0].description


@pytest.mark.parametrize(
    "glob",
    [
        "**a" * 8 + "**b",
        "**/api/*/items?page=*",
        "?" * 20,  # `?` is a literal character
        "**/*.{png,jpg,jpeg,gif,webp,svg,ico}",
        "**/\\{a\\}",
        "https://a.test/" + "a" * 8000,
    ],
)
def test_check_glob_accepts(glob: str) -> None:
    out: list[FieldViolation] = []
    check_glob("url", glob, out)
    assert out == []
