"""A hostile attached client: what it sends is judged before the browser sees it, and what it
is refused never reaches the browser; no token, no upgrade; no other lease's page, no host file,
no way around the egress route; bounded messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from browserbroker import AsyncLease
from tests.attach.support import RawClient, closed_with, connect, playwright, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _with_token(url: str, token: str) -> str:
    return url.rpartition("?token=")[0] + "?token=" + token


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    return refused.value.response.status_code


async def _page_session(client: RawClient, url: str = "about:blank") -> tuple[str, str]:
    created = await client.call("Target.createTarget", {"url": url})
    target = created["result"]["targetId"]
    attached = await client.call("Target.attachToTarget", {"targetId": target, "flatten": True})
    return target, attached["result"]["sessionId"]


def _refused(answer: dict[str, Any], *words: str) -> None:
    assert "result" not in answer, answer
    assert answer["error"]["code"] == -32000, answer
    for word in words:
        assert word in answer["error"]["message"], answer


async def test_no_upgrade_without_the_lease_and_its_attach_token(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    first = await broker.client.acquire(attach="cdp", ttl=60)
    second = await broker.client.acquire(attach="cdp", ttl=60)
    assert await _status(_with_token(first.connect_url, "forged")) == 401
    assert await _status(_with_token(first.connect_url, "")) in (401, 404)
    # The lease token is not the attach token; another lease's attach token opens nothing.
    assert await _status(_with_token(first.connect_url, first.grant.token)) == 401
    other_token = second.connect_url.rpartition("?token=")[2]
    assert await _status(_with_token(first.connect_url, other_token)) == 401
    base = first.connect_url.partition("/cdp/")[0]
    assert await _status(f"{base}/cdp/lease-nosuchlease?token=x") == 404
    assert await _status(f"{base}/json/version") == 404
    # A lease without attach has no URL that reaches it.
    plain = await broker.client.acquire(ttl=60)
    assert plain.connect_url == ""
    assert await _status(f"{base}/cdp/{plain.id}?token={other_token}") == 404
    await plain.release()
    # A stale URL of an ended lease gets no upgrade.
    stale = first.connect_url
    await first.release()
    assert await _status(stale) == 404
    await second.release()


async def test_the_devtools_browser_path_is_the_same_door_with_the_same_lock(
    broker_factory: BrokerFactory,
) -> None:
    """`/devtools/browser/<lease id>?token=...` (what chromedp connects to without a
    /json/version request) reaches the lease's browser as `/cdp/...` does, with the same checks."""
    broker = await broker_factory()
    first = await broker.client.acquire(attach="cdp", ttl=60)
    second = await broker.client.acquire(attach="cdp", ttl=60)
    alias = first.connect_url.replace("/cdp/", "/devtools/browser/", 1)
    async with raw(alias) as client:
        version = await client.call("Browser.getVersion")
        assert "Chrome" in version["result"]["product"], version
        _refused(await client.call("Browser.close"), "Browser.close")
    assert await _status(_with_token(alias, "forged")) == 401
    assert await _status(_with_token(alias, first.grant.token)) == 401
    assert await _status(_with_token(alias, second.connect_url.rpartition("?token=")[2])) == 401
    base = first.connect_url.partition("/cdp/")[0]
    plain = await broker.client.acquire(ttl=60)
    assert await _status(f"{base}/devtools/browser/{plain.id}?token=x") == 404
    await plain.release()
    await first.release()
    assert await _status(alias) == 404
    await second.release()


async def test_refused_commands_name_the_method_and_do_nothing(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=120)
    async with raw(lease.connect_url) as client:
        for url in (
            "file:///etc/passwd",
            "view-source:file:///etc/passwd",
            "chrome://version",
            "javascript:alert(1)",
        ):
            _refused(await client.call("Target.createTarget", {"url": url}), "Target.createTarget")
        target, session = await _page_session(client)
        for url in ("file:///etc/passwd", "FILE:///etc/passwd", " file:/etc/passwd"):
            answer = await client.call("Page.navigate", {"url": url}, session)
            _refused(answer, "Page.navigate", "file:")
        # Navigating from inside the page is stopped by the browser's own policy (the jail's)
        # or the route; whatever happens, no host file is read.
        await client.call(
            "Runtime.evaluate", {"expression": "location.href = 'file:///etc/passwd'"}, session
        )
        await asyncio.sleep(1.0)
        text = await client.call(
            "Runtime.evaluate",
            {"expression": "document.documentElement.outerHTML", "returnByValue": True},
            session,
        )
        assert "root:x:0:0" not in json.dumps(text)
        _refused(
            await client.call(
                "Target.createBrowserContext", {"proxyServer": "http://203.0.113.9:3128"}
            ),
            "proxyServer",
        )
        _refused(
            await client.call("Target.createBrowserContext", {"proxyBypassList": "*"}),
            "proxyBypassList",
        )
        document = await client.call("DOM.getDocument", {}, session)
        root = document["result"]["root"]["nodeId"]
        _refused(
            await client.call(
                "DOM.setFileInputFiles", {"files": ["/etc/passwd"], "nodeId": root}, session
            ),
            "DOM.setFileInputFiles",
        )
        _refused(
            await client.call(
                "Input.dispatchDragEvent",
                {"type": "drop", "x": 1, "y": 1, "data": {"items": [], "files": ["/etc/passwd"]}},
                session,
            ),
            "files",
        )
        for method, params in (
            ("Target.attachToTarget", {"targetId": target}),
            ("Target.attachToTarget", {"targetId": target, "flatten": False}),
            ("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False}),
            ("Target.sendMessageToTarget", {"message": "{}", "targetId": target}),
            ("Target.exposeDevToolsProtocol", {"targetId": target}),
            ("Target.setRemoteLocations", {"locations": [{"host": "10.0.0.1", "port": 9222}]}),
            ("Tethering.bind", {"port": 9222}),
            ("Extensions.loadUnpacked", {"path": "/tmp"}),
            ("PWA.launchFilesInApp", {"manifestId": "x", "files": ["/etc/passwd"]}),
            ("Network.loadNetworkResource", {"url": "file:///etc/passwd", "options": {}}),
            ("Browser.getBrowserCommandLine", {}),
            ("Browser.close", {}),
            ("Browser.crash", {}),
        ):
            _refused(await client.call(method, params), method)
        # Downloads go to the lease's own folder whatever path is named: allowed, rewritten.
        answer = await client.call(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": "/root"}
        )
        assert "result" in answer, answer
        # The browser is still there, and the lease too.
        assert "result" in await client.call("Browser.getVersion")
    await lease.release()


async def test_a_session_of_another_client_cannot_be_driven(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=60)
    async with raw(lease.connect_url) as first, raw(lease.connect_url) as second:
        _, session = await _page_session(first)
        answer = await second.call("Runtime.evaluate", {"expression": "1"}, session)
        assert "Session with given id not found" in answer["error"]["message"]
        assert answer["sessionId"] == session
    await lease.release()


async def test_another_leases_pages_are_never_seen(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await broker_factory()
    mine = await broker.client.acquire(attach="cdp", ttl=60)
    theirs = await broker.client.acquire(attach="cdp", ttl=60)
    secret = fixture_server.url("form.html?theirs=secret-page")
    async with raw(theirs.connect_url) as them, raw(mine.connect_url) as me:
        their_target, _ = await _page_session(them, secret)
        targets = await me.call("Target.getTargets")
        assert "secret-page" not in json.dumps(targets)
        answer = await me.call("Target.attachToTarget", {"targetId": their_target, "flatten": True})
        assert "error" in answer
        contexts = await me.call("Target.getBrowserContexts")
        assert "error" not in contexts
    await mine.release()
    await theirs.release()


async def test_contexts_a_client_opens_go_through_the_route(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """127.0.0.2 is not on the allow list: reached directly it would answer."""
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=60)
    blocked = fixture_server.url("form.html").replace("127.0.0.1", "127.0.0.2")
    async with playwright() as p:
        browser = await connect(p, lease.connect_url)
        for context in (browser.contexts[0], await browser.new_context()):
            page = await context.new_page()
            try:
                response = await page.goto(blocked, timeout=15_000)
                assert response is None or response.status != 200
            except Exception as exc:  # refused by the route: a network error is the answer
                assert "ERR_" in str(exc), exc
            assert "Fixture" not in await page.content()
            allowed = await page.goto(fixture_server.url("form.html"))
            assert allowed is not None and allowed.status == 200
        await browser.close()
    await lease.release()


async def test_bounds_on_size_rate_and_pages(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(
        attach_max_message_bytes=64 * 1024,
        attach_messages_per_s=5.0,
        attach_burst=10,
        attach_max_targets=3,  # the lease's own page, and two more
    )
    lease: AsyncLease = await broker.client.acquire(attach="cdp", ttl=60)
    async with raw(lease.connect_url) as client:
        refused = 0
        for _ in range(30):
            answer = await client.call("Browser.getVersion")
            refused += "error" in answer and "messages a second" in answer["error"]["message"]
        assert refused >= 15
        await asyncio.sleep(3.0)  # the bucket refills
        pages = [await client.call("Target.createTarget", {"url": "about:blank"}) for _ in range(3)]
        assert all("result" in page for page in pages[:2]), pages
        _refused(pages[2], "max_targets")
        with pytest.raises(ConnectionClosed):
            await client.socket.send(
                json.dumps({"id": 1, "method": "x", "params": {"a": "x" * 70_000}})
            )
            await client.socket.recv()
        assert client.socket.close_code == 1009
    async with raw(lease.connect_url) as client:
        # A key given twice counts once, with its last value: the browser is sent only that.
        await client.socket.send('{"id": 1, "method": "Browser.getVersion", "id": 2}')
        answer = json.loads(await client.socket.recv())
        assert answer["id"] == 2 and "product" in answer["result"]
        await client.socket.send('{"id": 3, "method": "X.y", "params": {"a": 9007199254740992}}')
        code, reason = await closed_with(client.socket)
        assert code == 1007 and "53-bit" in reason
    async with raw(lease.connect_url) as client:
        await client.socket.send("not json")
        assert (await closed_with(client.socket))[0] == 1007
    await lease.release()


async def test_acquire_refuses_what_cannot_be_attached(broker_factory: BrokerFactory) -> None:
    from browserbroker import ContextOptions, Engine, InvalidArgumentError, Isolation, Proxy

    broker = await broker_factory()
    cases = [
        ({"attach": "bidi"}, "engine", "chromium-bidi"),
        ({"attach": "cdp", "engine": Engine.FIREFOX}, "engine", "chromium"),
        ({"attach": "cdp", "isolation": Isolation.CONTEXT}, "isolation", "ISOLATION_BROWSER"),
        (
            {"attach": "cdp", "context": ContextOptions(proxy=Proxy(server="http://1.2.3.4:3128"))},
            "context.proxy",
            "proxy of its own",
        ),
    ]
    for kwargs, field, words in cases:
        with pytest.raises(InvalidArgumentError) as refused:
            await broker.client.acquire(ttl=60, **kwargs)  # type: ignore[arg-type]
        assert any(v.field == field and words in v.description for v in refused.value.violations), (
            refused.value.violations
        )
