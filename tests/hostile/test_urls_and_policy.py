"""A hostile tenant spells a URL the way the browser reads it and the broker did not.

Every URL a step names is judged in the form the browser will use (broker/common/urls.py, the
WHATWG parser): leading C0 controls and spaces, tabs and newlines anywhere, backslashes and odd
IP spellings change nothing. A `file:` URL or a browser-internal page is refused at the edge with
INVALID_ARGUMENT naming the field, on Chromium and Firefox, and nothing of the host is read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from broker.common.urls import CanonicalUrl, canonical
from broker.model.steps.base import StepBounds
from broker.model.steps.navigation import Goto
from browserbroker import AsyncLease, ContextOptions, InvalidArgumentError, Proxy, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import SDK_ENGINE, start

pytestmark = pytest.mark.browser

ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])

FILE_SPELLINGS = [
    " file:///etc/hostname",
    "\tfile:///etc/hostname",
    "\x01\x1f file:///etc/hostname",
    "fi\nle:///etc/hostname",
    "f\ti\rle:///etc/hostname",
    "FILE:///etc/hostname",
    "file:/etc/hostname",
    "file:\\\\\\etc\\hostname",
    "file://localhost/etc/hostname",
    "file:///etc/hostname\n ",
]
DIRECTORY_SPELLINGS = [" file:///etc/", "\nfile:///etc/"]
INTERNAL_PAGES = [
    "view-source:http://127.0.0.1/",
    " view-source:file:///etc/hostname",
    "chrome://version",
    "chrome://settings",
    "about:config",
    "about:support",
    "about:version",
    "\tabout:about",
    "about:blank/../config",
    "about:srcdoc",
    "blob:http://127.0.0.1/x",
    "javascript:alert(1)",
    "resource://gre/modules/",
    "moz-extension://x/",
    "jar:file:///etc/hostname!/",
    "filesystem:http://127.0.0.1/temporary/x",
]


@pytest.fixture
def secret() -> bytes:
    """A file every user of the host may read, as a download would return it."""
    return Path("/etc/ld.so.cache").read_bytes()


async def _refused(lease: AsyncLease, url: str) -> None:
    """The goto is refused before any step runs, naming the field; nothing comes back."""
    try:
        result = await lease.run(steps.goto(url), steps.content(), timeout=30)
    except InvalidArgumentError as refused:
        fields = [v.field for v in refused.violations]
        assert fields == ["steps[0].goto.url"], (url, fields)
        return
    content = result[1].text if len(result) > 1 else ""
    pytest.fail(f"{url!r} was navigated: ok={result[0].ok}, content {content[:200]!r}")


@ENGINES
async def test_file_urls_in_every_spelling_are_refused(
    broker_factory: BrokerFactory, engine: str
) -> None:
    running = await start(broker_factory, engine)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        for url in FILE_SPELLINGS + DIRECTORY_SPELLINGS:
            await _refused(lease, url)
        # The lease is still usable after the refusals.
        ok = await lease.run(steps.goto("about:blank"), timeout=30)
        assert ok.ok


@ENGINES
async def test_internal_pages_are_refused(broker_factory: BrokerFactory, engine: str) -> None:
    running = await start(broker_factory, engine)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        for url in INTERNAL_PAGES:
            await _refused(lease, url)
        for url in ("about:blank", " about:blank", "ABOUT:blank#x"):
            result = await lease.run(steps.goto(url), timeout=30)
            assert result.ok, (url, result[0])


@ENGINES
async def test_download_of_a_file_link_reads_nothing(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, secret: bytes, engine: str
) -> None:
    """A page's link to a file: URL, clicked by a download step: no byte of the file returns.
    (Before: from a file: listing page on both engines, and from a data: page on Firefox, the
    step returned /etc/ld.so.cache byte for byte.)"""
    running = await start(broker_factory, engine)
    link = "<a id=x download href='file:///etc/ld.so.cache'>x</a>"
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        # The listing route: a file: directory page, then a link in it.
        for url in DIRECTORY_SPELLINGS:
            await _refused(lease, url)
        for page in ("data:text/html,<p>hi</p>", fixture_server.url("form.html")):
            await lease.run(steps.goto(page), timeout=30)
            injected = f"document.body.insertAdjacentHTML('beforeend', {link!r})"
            await lease.run(steps.evaluate(injected), timeout=30)
            result = (await lease.run(steps.download("#x", timeout_s=5), timeout=30))[0]
            assert not result.ok and result.error_kind in {"blocked", "timeout"}, result
            assert secret[:64] not in result.data and result.data == b""


# ------------------------------------------------------------------ the differential test

_JUNK = "".join(chr(c) for c in range(0x21)) + "\x7f"
_IGNORED = "\t\n\r"
# The allowed schemes come up more often, so that many spellings get past the decoder.
_SCHEMES = ["http", "https", "http", "https", "http", "file", "data", "about", "javascript",
            "view-source", "chrome", "blob", "ftp", "ws", "resource", "jar", "filesystem"]  # fmt: skip
_SEPARATORS = [":", "://", ":/", ":\\\\", ":\\/", ":///", ":\\\\\\", "://\\", ": //"]
_USERINFO = ["", "", "", "u@", "u:p@", "a@b@", "127.0.0.2\\@", "%40@", "x:y\\@", ":@"]
_TAILS = ["", "/", "\\x", "/../", "?q#f", "@127.0.0.2", "/%2e%2e/", "#@127.0.0.2", ";x", ":80/"]
_NAMES = ["example.com", "EXAMPLE.com.", "bücher.de", "xn--bcher-kva.de", "ex%61mple.com",
          "a.b.c", "localhost", "blank", "exa\u3002mple.com", "\uff45xample.com", "ß.de"]  # fmt: skip


@st.composite
def _ipv4(draw: st.DrawFn) -> str:
    """An IPv4 address in any spelling the URL Standard reads: bases, short forms, fullwidth."""
    value = draw(st.sampled_from([0x7F000001, 0xA9FEA9FE, 0x0A000001, 0, 0x5DB8D822]))
    form = draw(st.sampled_from(["dotted", "decimal", "hex", "octal", "short2", "short3", "mixed"]))
    octets = [(value >> s) & 0xFF for s in (24, 16, 8, 0)]
    if form == "decimal":
        return str(value)
    if form == "hex":
        return hex(value)
    if form == "octal":
        return ".".join(f"0{o:o}" for o in octets)
    if form == "short2":
        return f"{octets[0]}.{value & 0xFFFFFF}"
    if form == "short3":
        return f"{octets[0]}.{octets[1]}.{value & 0xFFFF}"
    if form == "mixed":
        return ".".join(draw(st.sampled_from([str(o), hex(o), f"0{o:o}"])) for o in octets)
    return ".".join(map(str, octets))


@st.composite
def _host(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "ipv4", "ipv6", "percent", "fullwidth"]))
    if kind == "name":
        return draw(st.sampled_from(_NAMES))
    ipv4 = draw(_ipv4())
    if kind == "ipv6":
        prefix = draw(st.sampled_from(["::ffff:", "::", "64:ff9b::", "2002::", "::ffff:0:"]))
        embedded = draw(st.sampled_from(["127.0.0.1", "169.254.169.254", "10.0.0.1", "8.8.8.8"]))
        return f"[{prefix}{embedded}]"
    if kind == "percent":
        return "".join(f"%{ord(c):02x}" if draw(st.booleans()) else c for c in ipv4)
    if kind == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in ipv4)
    return ipv4


def _scatter(draw: st.DrawFn, text: str, alphabet: str, most: int) -> str:
    """`text` with up to `most` characters of `alphabet` put anywhere."""
    for _ in range(draw(st.integers(0, most))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(alphabet)) + text[at:]
    return text


@st.composite
def hostile_url(draw: st.DrawFn) -> str:
    scheme = "".join(
        c.upper() if draw(st.booleans()) else c for c in draw(st.sampled_from(_SCHEMES))
    )
    scheme = _scatter(draw, scheme, _IGNORED, 2)
    rest = (
        draw(st.sampled_from(_SEPARATORS))
        + draw(st.sampled_from(_USERINFO))
        + draw(_host())
        + draw(st.sampled_from(["", ":80", ":08", ":0x50", ":65536"]))
        + draw(st.sampled_from(_TAILS))
    )
    rest = _scatter(draw, rest, _IGNORED, 1)
    lead = draw(st.text(alphabet=_JUNK, max_size=3))
    trail = draw(st.text(alphabet=_JUNK, max_size=2))
    return lead + scheme + rest + trail


@cache
def _generated(batches: int, size: int = 50) -> tuple[str, ...]:
    """`batches * size` hostile spellings, the same on every run (derandomized, no database);
    made once for both engines."""
    found: list[str] = []

    @settings(
        max_examples=batches,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(st.lists(hostile_url(), min_size=size, max_size=size))
    def collect(urls: list[str]) -> None:
        found.extend(urls)

    collect()
    return tuple(found)


ALLOWED = frozenset({"http", "https", "data", "about"})
PARSE_ALL = """(urls) => urls.map((u) => {
  try { const x = new URL(u); return [x.protocol.slice(0, -1), x.hostname, x.pathname, x.href]; }
  catch (e) { return null; }
})"""


def _judged(url: str) -> CanonicalUrl | None:
    """What the decoder makes of a goto URL: the canonical URL if it accepts it."""
    out: list[object] = []
    Goto(url).validate("steps[0].goto", StepBounds(0, False), out)  # type: ignore[arg-type]
    return canonical(url) if not out else None


@ENGINES
async def test_what_the_decoder_accepts_the_browser_reads_alike(
    broker_factory: BrokerFactory, engine: str
) -> None:
    """Differential: hostile spellings (controls and spaces anywhere, case, backslashes, tabs
    and newlines in the scheme, userinfo, IPv4 in every base and short form, IPv6 embedding
    IPv4, percent-encoding, IDNA). For each the decoder accepts, the real browser's `new URL()`
    of the text (and of the canonical href the broker sends it) gives an allowed scheme and
    the host the broker judged."""
    urls = _generated(12)
    judged = [_judged(u) for u in urls]
    accepted = [(u, j) for u, j in zip(urls, judged, strict=True) if j is not None]
    assert len(accepted) > 50, "the strategy must reach URLs the decoder accepts"
    running = await start(broker_factory, engine)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        texts = [u for u, _ in accepted]
        hrefs = [j.href for _, j in accepted]
        result = await lease.run(
            steps.goto("about:blank"),
            steps.evaluate(PARSE_ALL, texts),
            steps.evaluate(PARSE_ALL, hrefs),
            timeout=60,
        )
        result.raise_for_failure()
    disagreements = []
    for parsed_all in (result[1].value, result[2].value):
        for (text, mine), theirs in zip(accepted, parsed_all, strict=True):
            if theirs is None and mine.scheme == "data":
                continue  # Firefox refuses a data: URL without a comma: it opens nothing
            # A data: or about: URL reaches no host (Chromium reads none in `data://x/`).
            host = mine.host if mine.scheme in {"http", "https"} else ""
            seen = None
            if theirs is not None:
                seen = (theirs[0], theirs[1].strip("[]") if theirs[0] in {"http", "https"} else "")
            blank = mine.scheme != "about" or (theirs is not None and theirs[2] == "blank")
            if seen != (mine.scheme, host) or seen[0] not in ALLOWED or not blank:
                disagreements.append((text, mine.scheme, mine.host, theirs))
    assert not disagreements, f"{len(disagreements)} of {len(accepted)}: {disagreements[:10]}"


# ------------------------------------------------------------------ a client's proxy, the policy


class Recorder:
    """An HTTP server on a loopback address that records every request it gets."""

    def __init__(self, host: str) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"secret")

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[dict[str, Recorder]]:
    found = {host: Recorder(host) for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    yield found
    for recorder in found.values():
        recorder.close()


@ENGINES
async def test_a_client_proxy_is_judged_as_the_browser_reads_it(
    broker_factory: BrokerFactory, recorders: dict[str, Recorder], engine: str
) -> None:
    """`http://127.0.0.3:P\\@127.0.0.1:P` was vetted as 127.0.0.1 (allowed) while the browser
    used 127.0.0.3; a bypass list sent pages straight to hosts the policy denies."""
    running = await start(broker_factory, engine, allow_client_proxies=True)
    near, denied, far = (recorders[h] for h in ("127.0.0.1", "127.0.0.2", "127.0.0.3"))
    tricks = [
        ("context.proxy.server", Proxy(server=f"http://127.0.0.3:{far.port}\\@127.0.0.1:{near.port}")),
        ("context.proxy.bypass", Proxy(server=f"http://127.0.0.1:{near.port}", bypass="127.0.0.2")),
        ("context.proxy.bypass", Proxy(server=f"http://127.0.0.1:{near.port}", bypass="<-loopback>")),
    ]  # fmt: skip
    for field, proxy in tricks:
        try:
            lease = await running.client.acquire(
                engine=SDK_ENGINE[engine], context=ContextOptions(proxy=proxy), ttl=60
            )
        except InvalidArgumentError as refused:
            assert [v.field for v in refused.violations] == [field]
            continue
        try:
            await lease.run(steps.goto(f"http://127.0.0.2:{denied.port}/page"), timeout=30)
        finally:
            await lease.release()
    assert far.hits == [] and denied.hits == [], (far.hits, denied.hits)


async def test_allow_hosts_does_not_open_loopback(
    broker_factory: BrokerFactory, recorders: dict[str, Recorder]
) -> None:
    """A name on the allow list that resolves to loopback opens nothing without
    egress_allow_loopback; with it, what the lists name opens."""
    target = recorders["127.0.0.1"]
    closed = await broker_factory(
        egress_allow_cidrs=[], egress_allow_loopback=False, egress_allow_hosts=["localhost"]
    )
    async with closed.client.lease() as lease:
        result = (await lease.run(steps.goto(f"http://localhost:{target.port}/"), timeout=30))[0]
        assert result.error_kind == "blocked" and "'loopback'" in result.error_message, result
    assert target.hits == []
    opened = await broker_factory(
        egress_allow_cidrs=[], egress_allow_loopback=True, egress_allow_hosts=["localhost"]
    )
    async with opened.client.lease() as lease:
        result = (await lease.run(steps.goto(f"http://localhost:{target.port}/"), timeout=30))[0]
        assert result.ok, result
    assert "/" in target.hits  # (and maybe the page's favicon)


async def test_deny_hosts_names_a_literal_however_spelt(
    broker_factory: BrokerFactory, recorders: dict[str, Recorder]
) -> None:
    target = recorders["127.0.0.1"]
    running = await broker_factory(egress_deny_hosts=["0x7f.1"])
    async with running.client.lease() as lease:
        for spelling in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"):
            url = f"http://{spelling}:{target.port}/"
            result = (await lease.run(steps.goto(url), timeout=30))[0]
            assert result.error_kind == "blocked" and "deny_hosts" in result.error_message, url
    assert target.hits == []
