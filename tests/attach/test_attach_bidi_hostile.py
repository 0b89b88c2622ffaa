"""A hostile WebDriver BiDi client on an attach-only Firefox lease: every refusal is an error
naming the command and why, and has no effect (no host file's content reaches the client, no
loopback or private address is reached, no extension, no folder); no token, no upgrade; and
what a local process could do with the remote agent's port instead of the edge."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from broker.engines.firefox import FirefoxEngine
from broker.model.options import EngineName
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context, refused
from tests.attach.support import RawClient, closed_with, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST_FILE = "/etc/passwd"
HOST_FILE_WORDS = "root:x:0:0"


def _with_token(url: str, token: str) -> str:
    return url.rpartition("?token=")[0] + "?token=" + token


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused_upgrade:
        async with websockets.connect(url):
            pass
    return refused_upgrade.value.response.status_code


async def test_no_upgrade_without_the_lease_and_its_attach_token(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory)
    first = await bidi_lease(broker, ttl=60)
    second = await bidi_lease(broker, ttl=60)
    assert await _status(_with_token(first.connect_url, "forged")) == 401
    assert await _status(_with_token(first.connect_url, first.grant.token)) == 401
    other_token = second.connect_url.rpartition("?token=")[2]
    assert await _status(_with_token(first.connect_url, other_token)) == 401
    # The lease's URL under another protocol's path is no door to it.
    assert await _status(first.connect_url.replace("/bidi/", "/cdp/")) == 404
    stale = first.connect_url
    await first.release()
    assert await _status(stale) == 404
    await second.release()


async def _text(client: RawClient, context: str) -> str:
    answer = await client.call(
        "script.evaluate",
        {
            "expression": "document.documentElement ? document.documentElement.outerHTML : ''",
            "target": {"context": context},
            "awaitPromise": False,
        },
    )
    return json.dumps(answer)


async def test_every_refusal_names_the_command_and_has_no_effect(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    seen: list[str] = []
    async with raw(lease.connect_url) as client:
        answer = await client.call(
            "session.new",
            {"capabilities": {"alwaysMatch": {"proxy": {"proxyType": "direct"}}}},
        )
        refused(answer, "session.new", "proxy")
        context = await first_context(client)
        for url, word in (
            (f"file://{HOST_FILE}", "file:"),
            (f"view-source:file://{HOST_FILE}", "view-source:"),
            ("about:config", "about:"),
            ("about:support", "about:"),
            ("chrome://browser/content/browser.xhtml", "chrome:"),
            ("resource:///modules/", "resource:"),
            (f"jar:file://{HOST_FILE}!/", "jar:"),
        ):
            answer = await client.call("browsingContext.navigate", {"context": context, "url": url})
            refused(answer, "browsingContext.navigate", word)
            seen.append(await _text(client, context))
        tree = await client.call("browsingContext.getTree", {})
        assert all(c["url"] == "about:blank" for c in tree["result"]["contexts"]), tree
        before = await client.call("browser.getUserContexts")
        answer = await client.call("browser.createUserContext", {"proxy": {"proxyType": "direct"}})
        refused(answer, "browser.createUserContext", "proxy")
        assert await client.call("browser.getUserContexts") == {**before, "id": before["id"] + 2}
        answer = await client.call(
            "browser.setDownloadBehavior",
            {"downloadBehavior": {"type": "allowed", "destinationFolder": "/root"}},
        )
        refused(answer, "browser.setDownloadBehavior", "destinationFolder")
        answer = await client.call(
            "input.setFiles",
            {"context": context, "element": {"sharedId": "x"}, "files": [HOST_FILE]},
        )
        refused(answer, "input.setFiles", "files")
        answer = await client.call(
            "webExtension.install", {"extensionData": {"type": "path", "path": "/tmp"}}
        )
        refused(answer, "webExtension.install", "extension")
        refused(await client.call("browser.close"), "browser.close", "Release")
        refused(
            await client.call("browsingContext.getTree", {"moz:scope": "chrome"}),
            "browsingContext.getTree",
            "moz:scope",
        )
        refused(await client.call("goog:cdp.sendCommand", {}), "goog:cdp.sendCommand")
        refused(await client.call("browsingContext.frobnicate", {}), "browsingContext.frobnicate")
        # A page's own script cannot take the page to a host file either (Firefox refuses it).
        await client.call(
            "browsingContext.navigate",
            {"context": context, "url": "data:text/html,<p>x</p>", "wait": "complete"},
        )
        await client.call(
            "script.evaluate",
            {
                "expression": f"location.href = 'file://{HOST_FILE}'",
                "target": {"context": context},
                "awaitPromise": False,
            },
        )
        await asyncio.sleep(1.0)
        seen.append(await _text(client, context))
        # Still a working lease.
        assert (await client.call("session.status"))["type"] == "success"
    assert not any(HOST_FILE_WORDS in text for text in seen)
    await lease.release()


@asynccontextmanager
async def _listener(host: str) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server at `host` that records what reaches it (nothing should)."""
    heard: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.read(1024))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nreached")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, host, 0, family=socket.AF_INET)
    try:
        yield server.sockets[0].getsockname()[1], heard
    finally:
        server.close()


async def test_pages_of_every_context_go_through_the_route(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """127.0.0.2 is loopback and not on the allow list: reached directly, it would answer."""
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    async with _listener("127.0.0.2") as (port, heard), raw(lease.connect_url) as client:
        made = await client.call("browser.createUserContext", {})
        user = made["result"]["userContext"]
        created = await client.call("browsingContext.create", {"type": "tab", "userContext": user})
        contexts = [await first_context(client), created["result"]["context"]]
        for context in contexts:
            await client.call(
                "browsingContext.navigate",
                {"context": context, "url": f"http://127.0.0.2:{port}/", "wait": "complete"},
            )
            assert "reached" not in await _text(client, context)
            allowed = await client.call(
                "browsingContext.navigate",
                {"context": context, "url": fixture_server.url("form.html"), "wait": "complete"},
            )
            assert allowed["type"] == "success", allowed
        assert heard == []
    await lease.release()


async def test_bounds_on_size_rate_and_pages(broker_factory: BrokerFactory) -> None:
    broker = await firefox_broker(
        broker_factory,
        attach_max_message_bytes=64 * 1024,
        attach_messages_per_s=5.0,
        attach_burst=10,
        attach_max_targets=3,
    )
    lease = await bidi_lease(broker, ttl=60)
    async with raw(lease.connect_url) as client:
        answers = [await client.call("session.status") for _ in range(30)]
        over = [a for a in answers if "messages a second" in a.get("message", "")]
        assert len(over) >= 15, answers
        await asyncio.sleep(3.0)  # the bucket refills
        pages: list[dict[str, Any]] = [
            await client.call("browsingContext.create", {"type": "tab"}) for _ in range(3)
        ]
        assert all(p["type"] == "success" for p in pages[:2]), pages
        refused(pages[2], "browsingContext.create", "attach_max_targets")
        with pytest.raises(ConnectionClosed):
            await client.socket.send(
                json.dumps({"id": 1, "method": "x.y", "params": {"a": "x" * 70_000}})
            )
            await client.socket.recv()
        assert client.socket.close_code == 1009
    async with raw(lease.connect_url) as client:
        # A key given twice counts once, with its last value: only that reaches Firefox.
        await client.socket.send('{"id": 1, "method": "session.status", "params": {}, "id": 2}')
        answer = json.loads(await client.socket.recv())
        assert answer["id"] == 2 and answer["type"] == "success", answer
        await client.socket.send('{"id": 3, "method": "session.status", "params": {"a": 1e400}}')
        code, _ = await closed_with(client.socket)
        assert code == 1007
    async with raw(lease.connect_url) as client:
        await client.socket.send(
            '{"id": 1, "method": "session.status", "params": {}, "sessionId": "x"}'
        )
        code, _ = await closed_with(client.socket)
        assert code == 1007
    await lease.release()


async def test_the_remote_agent_port_gives_a_local_process_nothing(
    broker_factory: BrokerFactory,
) -> None:
    """The broker holds the browser's one session from its start: a process on the host that
    finds the remote agent's port can open no session and drive no page."""
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    engine = broker.broker.engines[EngineName.FIREFOX]
    assert isinstance(engine, FirefoxEngine) and engine.bidi is not None
    bidi = engine.bidi
    (port,) = [session.remote_port for session in bidi.sessions]
    async with raw(f"ws://127.0.0.1:{port}/session") as local:
        new = await local.call("session.new", {"capabilities": {}})
        assert new["type"] == "error" and "Maximum number of active sessions" in new["message"]
        tree = await local.call("browsingContext.getTree", {})
        assert tree["type"] == "error" and tree["error"] == "invalid session id", tree
    await lease.release()
