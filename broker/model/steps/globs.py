"""URL globs as Playwright reads them (`**` any characters, `*` any but `/`, `?` one character),
matched in time linear in the URL: RE2, never a backtracking regex, since the URL is often the
page's to choose and the match runs on the broker's event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

import re2

from broker.errors import FieldViolation

MAX_GLOB_CHARS = 8 * 1024  # a glob without wildcards: compared whole, like a URL
MAX_WILDCARD_GLOB_CHARS = 256
MAX_GLOB_WILDCARDS = 10  # a run of stars is one wildcard, each `?` another
# A longer URL (a page's data: URL, say) matches a glob only by being equal to it. With the
# bounds above, one match then costs at most a few milliseconds of RE2.
MAX_MATCHED_URL_CHARS = 8 * 1024
# A longer URL is matched in a worker thread (RE2 releases the GIL while it matches).
INLINE_URL_CHARS = 1024
GLOBS_KEPT = 256  # compiled globs cached; leases hold their own as long as they need them
# RE2's memory per compiled glob; past it RE2 leaves its DFA for its (slower, still linear) NFA.
_RE2_MAX_MEM = 1 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.dot_nl = True  # `?` and `**` match any character
    options.never_capture = True
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # a glob that outgrows the DFA is not an error worth a line
    return options


_OPTIONS = _options()


def _tokens(pattern: str) -> list[str]:
    """The glob's tokens: "**" (a run of two or more stars), "*", "?", or a literal character."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "*":
            end = i
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            tokens.append("**" if end - i > 1 else "*")
            i = end
        else:
            tokens.append(pattern[i])
            i += 1
    return tokens


_WILDCARD_REGEX = {"**": ".*", "*": "[^/]*", "?": "."}


def glob_to_regex(pattern: str) -> str:
    """The RE2 syntax for `pattern`, to be matched whole (fullmatch)."""
    return "".join(_WILDCARD_REGEX.get(t) or re2.escape(t) for t in _tokens(pattern))


def wildcards(pattern: str) -> int:
    return sum(1 for t in _tokens(pattern) if t in _WILDCARD_REGEX)


class UrlGlob:
    """One compiled glob. A URL equal to the pattern always matches."""

    __slots__ = ("_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re2.compile(glob_to_regex(pattern), _OPTIONS)

    def matches(self, url: str) -> bool:
        if url == self.pattern:
            return True
        if len(url) > MAX_MATCHED_URL_CHARS:
            return False
        return self._regex.fullmatch(url) is not None


async def matches_any(globs: Sequence[UrlGlob], url: str) -> bool:
    """Whether one of `globs` matches `url`, off the event loop when that is real work."""
    if not globs:
        return False
    if len(url) <= INLINE_URL_CHARS:
        return any(glob.matches(url) for glob in globs)
    return await asyncio.to_thread(lambda: any(glob.matches(url) for glob in globs))


@functools.lru_cache(maxsize=GLOBS_KEPT)
def url_glob(pattern: str) -> UrlGlob:
    """The compiled glob for `pattern`, compiled once while it stays among the last used."""
    return UrlGlob(pattern)


def check_glob(field_name: str, pattern: str, out: list[FieldViolation]) -> None:
    """A glob a client sent: bounded so that matching it stays cheap (see MAX_MATCHED_URL_CHARS)."""
    if not pattern.strip():
        out.append(FieldViolation(field_name, "must not be empty"))
    elif len(pattern) > MAX_GLOB_CHARS:
        out.append(FieldViolation(field_name, f"longer than {MAX_GLOB_CHARS} characters"))
    elif (count := wildcards(pattern)) > MAX_GLOB_WILDCARDS:
        out.append(FieldViolation(field_name, f"{count} wildcards; at most {MAX_GLOB_WILDCARDS}"))
    elif count and len(pattern) > MAX_WILDCARD_GLOB_CHARS:
        out.append(
            FieldViolation(
                field_name,
                f"longer than {MAX_WILDCARD_GLOB_CHARS} characters (a glob with wildcards)",
            )
        )
