"""URL globs read as Playwright reads them (`playwright/_impl/_glob.py` and `url_matches` in
`_helper.py`): `**` any characters, `*` any but `/`, `/**/` any directories or none, `{a,b}` one
of its alternatives, `\\` escapes the next character, every other character (`?` included)
literal; a glob not starting with `*` is first normalised as a URL, as Playwright does without a
base URL (scheme and host lower-cased, `/` for an empty path). Matched in time linear in the URL:
RE2, never a backtracking regex, since the URL is often the page's to choose and the match runs
on the broker's event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from urllib.parse import urlparse, urlunparse

import re2

from broker.errors import FieldViolation

MAX_GLOB_CHARS = 8 * 1024  # a glob without wildcards: compared whole, like a URL
MAX_WILDCARD_GLOB_CHARS = 256
# A run of stars is one wildcard; a `{}` group counts one per alternative.
MAX_GLOB_WILDCARDS = 10
# A longer URL (a page's data: URL, say) matches no glob with a star. With the bounds above, one
# match then costs at most a few milliseconds of RE2.
MAX_MATCHED_URL_CHARS = 8 * 1024
# A longer URL is matched in a worker thread (RE2 releases the GIL while it matches).
INLINE_URL_CHARS = 1024
GLOBS_KEPT = 256  # compiled globs cached; leases hold their own as long as they need them
# RE2's memory per compiled glob; past it RE2 leaves its DFA for its (slower, still linear) NFA.
_RE2_MAX_MEM = 1 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.never_capture = True
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # a glob that outgrows the DFA is not an error worth a line
    return options


_OPTIONS = _options()

# Playwright's set of characters it escapes (those of JavaScript regexes).
_ESCAPED = frozenset("$^+.*()|\\?{}[]")


def glob_to_regex_pattern(glob: str) -> str:
    """Playwright's `glob_to_regex_pattern`, character for character (the unit test compares the
    two). Every construct it emits (groups, `|`, `.*`, `[^/]*`, escaped punctuation) is RE2's
    too."""
    tokens = ["^"]
    in_group = False
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "\\" and i + 1 < len(glob):
            char = glob[i + 1]
            tokens.append("\\" + char if char in _ESCAPED else char)
            i += 1
        elif c == "*":
            char_before = glob[i - 1] if i > 0 else None
            star_count = 1
            while i + 1 < len(glob) and glob[i + 1] == "*":
                star_count += 1
                i += 1
            if star_count == 1:
                tokens.append("([^/]*)")
            elif i + 1 < len(glob) and glob[i + 1] == "/":
                tokens.append("((.+/)|)" if char_before == "/" else "(.*/)")
                i += 1
            else:
                tokens.append("(.*)")
        elif c == "{":
            in_group = True
            tokens.append("(")
        elif c == "}":
            in_group = False
            tokens.append(")")
        elif c == ",":
            tokens.append("|" if in_group else "\\,")
        else:
            tokens.append("\\" + c if c in _ESCAPED else c)
        i += 1
    tokens.append("$")
    return "".join(tokens)


def resolve_glob(glob: str) -> str:
    """Playwright's `resolve_glob_base` without a base URL (the broker sets none): the glob's
    URL parts normalised by urllib, its glob characters kept out of the parse."""
    if glob.startswith("*"):
        return glob
    glob = glob.replace("\\\\?", "?")  # as Playwright does: `\\?` reads as `?`
    if glob.startswith(("about:", "data:", "chrome:", "edge:", "file:")):
        return glob
    originals: dict[str, str] = {}

    def stand_in(original: str, replacement: str) -> str:
        if not original:
            return ""
        originals[replacement] = original
        return replacement

    parts = []
    for index, token in enumerate(glob.split("/")):
        if token in (".", "..", ""):
            parts.append(token)
        elif index == 0 and token.endswith(":"):
            # A scheme with glob characters parses as http: (slashes after the host kept).
            parts.append(stand_in(token, "http:") if "*" in token or "{" in token else token)
        elif (question := token.find("?")) == -1:
            parts.append(stand_in(token, f"$_{index}_$"))
        else:
            prefix = stand_in(token[:question], f"$_{index}_$")
            parts.append(prefix + stand_in(token[question:], f"?$_{index}_$"))
    resolved, case_insensitive = _normalise("/".join(parts))
    for replacement, original in originals.items():
        lower = case_insensitive is not None and replacement in case_insensitive
        resolved = resolved.replace(replacement, original.lower() if lower else original, 1)
    return resolved


def _normalise(url: str) -> tuple[str, str | None]:
    """Playwright's `resolve_base_url` with no base: the URL as urllib re-serialises it, and its
    case-insensitive scheme and host."""
    try:
        parsed = urlparse(url, allow_fragments=True)
        if parsed.scheme in ("http", "https", "ws", "wss", "ftp", "file") and not parsed.path:
            parsed = parsed._replace(path="/")
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        return urlunparse(parsed), f"{parsed.scheme}://{host}"
    except ValueError:  # a bad port or IPv6 literal: Playwright keeps the glob as it is
        return url, None


def _census(glob: str) -> tuple[int, int, bool]:
    """Runs of stars, `{}` alternatives, and whether every `}` closes a `{` (else Playwright's
    regex does not compile), as Playwright tokenises the glob."""
    stars = alternatives = depth = lowest = 0
    in_group = False
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "\\" and i + 1 < len(glob):
            i += 1
        elif c == "*":
            stars += 1
            while i + 1 < len(glob) and glob[i + 1] == "*":
                i += 1
        elif c == "{":
            in_group, depth, alternatives = True, depth + 1, alternatives + 1
        elif c == "}":
            in_group, depth = False, depth - 1
            lowest = min(lowest, depth)
        elif c == "," and in_group:
            alternatives += 1
        i += 1
    return stars, alternatives, depth == 0 and lowest == 0


def wildcards(pattern: str) -> int:
    stars, alternatives, _ = _census(pattern)
    return stars + alternatives


class UrlGlob:
    """One compiled glob: Playwright's regex for it, compiled by RE2."""

    __slots__ = ("_longest", "_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        regex = glob_to_regex_pattern(resolve_glob(pattern)) if pattern else ""
        # Playwright matches with Python's `re`, whose `$` also matches before a final newline.
        self._regex = re2.compile(regex[:-1] + "\\n?$" if regex else "", _OPTIONS)
        # Without stars each glob character matches at most one URL character.
        stars = _census(pattern)[0]
        self._longest = len(regex) + 1 if regex and not stars else MAX_MATCHED_URL_CHARS

    def matches(self, url: str) -> bool:
        if len(url) > self._longest:
            return False
        return self._regex.search(url) is not None


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
    """A glob a client sent: bounded so that matching it stays cheap (see MAX_MATCHED_URL_CHARS),
    and one Playwright could compile."""
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
    elif not _census(pattern)[2]:
        out.append(FieldViolation(field_name, "unbalanced `{` and `}` (a literal one is `\\{`)"))
