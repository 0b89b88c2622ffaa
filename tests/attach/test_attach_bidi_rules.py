"""The WebDriver BiDi filter and hub, without a browser: what is refused, naming the command and
why, what a client leaves in the lease's one session to be undone when it goes, and commands
left unanswered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from broker.attach.bidi_hub import BidiHub
from broker.attach.bidi_rules import ALLOWED, REFUSED, judge, refusal, undo
from broker.attach.bounds import AttachLimits
from broker.attach.rules import BadMessage, Command, decode


def _command(method: str, **params: Any) -> Command:
    return decode(json.dumps({"id": 1, "method": method, "params": params}))


def _refused(method: str, *words: str, pages: int = 0, **params: Any) -> None:
    why = judge(_command(method, **params), 16, pages)
    assert why is not None, (method, params)
    assert why.startswith(method), why
    for word in words:
        assert word in why, why


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "view-source:http://127.0.0.1/",
        "about:config",
        "about:preferences",
        "chrome://browser/content/browser.xhtml",
        "resource:///modules/",
        "moz-extension://x/",
        "jar:file:///x.zip!/a",
        "javascript:alert(1)",
        "FILE:///etc/passwd",
        " file:///etc/passwd",
        "not a url",
    ],
)
def test_navigations_leave_the_web_refused(url: str) -> None:
    _refused("browsingContext.navigate", "refused", context="c", url=url)


@pytest.mark.parametrize(
    "url", ["http://example.com/", "https://example.com/a?b", "data:text/html,hi", "about:blank"]
)
def test_web_navigations_pass(url: str) -> None:
    assert judge(_command("browsingContext.navigate", context="c", url=url), 16, 0) is None


def test_each_refusal_names_the_command_and_why() -> None:
    _refused(
        "session.new", "proxy", capabilities={"alwaysMatch": {"proxy": {"proxyType": "direct"}}}
    )
    _refused(
        "session.new",
        "proxy",
        capabilities={"firstMatch": [{}, {"proxy": {"proxyType": "manual", "httpProxy": "x:1"}}]},
    )
    _refused("browser.createUserContext", "proxy", proxy={"proxyType": "direct"})
    _refused(
        "browser.setDownloadBehavior",
        "destinationFolder",
        downloadBehavior={"type": "allowed", "destinationFolder": "/root"},
    )
    # null is Firefox's own default (the same folder): it would undo the hub's denial
    _refused("browser.setDownloadBehavior", "null", downloadBehavior=None)
    _refused("browser.setDownloadBehavior", "allowed", downloadBehavior={"type": "allowed"})
    _refused("input.setFiles", "files", context="c", element={}, files=["/etc/passwd"])
    _refused("webExtension.install", "extension", extensionData={"type": "path", "path": "/"})
    _refused("browser.close", "Release")
    _refused("browsingContext.create", "attach_max_targets", type="tab", pages=16)
    _refused("network.continueRequest", "http", request="r", url="file:///etc/passwd")
    _refused(
        "permissions.setPermission",
        "camera",
        descriptor={"name": "camera"},
        state="granted",
        origin="http://x",
    )
    # Vendor extensions (Firefox's chrome scope) and unknown commands, until judged.
    vendor: dict[str, Any] = {"moz:scope": "chrome"}
    _refused("browsingContext.getTree", "moz:scope", **vendor)
    _refused("goog:cdp.sendCommand", "not allowed")
    _refused("browsingContext.setBypassCSP", "not allowed")


def test_what_puppeteer_needs_passes() -> None:
    puppeteer_new = {
        "alwaysMatch": {
            "acceptInsecureCerts": False,
            "unhandledPromptBehavior": {"default": "ignore"},
            "webSocketUrl": True,
            "goog:prerenderingDisabled": True,
        }
    }
    passing: list[tuple[str, dict[str, Any]]] = [
        ("session.new", {"capabilities": puppeteer_new}),
        ("session.status", {}),
        ("session.subscribe", {"events": ["browsingContext", "network", "log", "script"]}),
        ("browser.createUserContext", {}),
        ("browser.setDownloadBehavior", {"downloadBehavior": {"type": "denied"}}),
        ("input.setFiles", {"context": "c", "element": {}, "files": []}),
        ("browsingContext.create", {"type": "tab"}),
        ("network.addDataCollector", {"dataTypes": ["response"], "maxEncodedDataSize": 1}),
    ]
    for method, params in passing:
        assert judge(_command(method, **params), 16, 0) is None, method


def test_the_lists_do_not_overlap() -> None:
    assert not ALLOWED & set(REFUSED)


def test_a_session_id_is_no_bidi() -> None:
    command = decode(json.dumps({"id": 1, "method": "session.status", "params": {}}))
    assert command.session_id is None
    with pytest.raises(BadMessage):
        decode('{"id": 1, "method": "a.b", "params": {}, "params": []}')  # the last counts


def test_what_a_client_makes_is_undone() -> None:
    assert undo("session.subscribe", {"subscription": "s"}) == (
        "session.unsubscribe",
        {"subscriptions": ["s"]},
    )
    assert undo("network.addIntercept", {"intercept": "i"}) == (
        "network.removeIntercept",
        {"intercept": "i"},
    )
    assert undo("script.addPreloadScript", {"script": "p"}) == (
        "script.removePreloadScript",
        {"script": "p"},
    )
    assert undo("network.addDataCollector", {"collector": "d"}) == (
        "network.removeDataCollector",
        {"collector": "d"},
    )
    assert undo("script.evaluate", {"realm": "r"}) is None
    assert undo("session.subscribe", {"subscription": 5}) is None


async def test_a_command_unanswered_too_long_is_answered_and_forgotten() -> None:
    """A script awaiting a promise that never settles does not hold the client's pending bound
    for ever: after command_timeout_s it is answered with an error naming it."""

    class Socket:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send(self, text: str) -> None:
            self.sent.append(text)

    class Peer:
        def __init__(self) -> None:
            self.got: list[dict[str, Any]] = []

        def deliver(self, text: str | bytes) -> None:
            self.got.append(json.loads(text))

    now = [0.0]
    hub = BidiHub(Socket(), "/nowhere", AttachLimits(command_timeout_s=60), lambda: now[0])  # type: ignore[arg-type]
    peer = Peer()
    client = await hub.attach(peer, trusted=False)
    hub.receive(client, json.dumps({"id": 7, "method": "script.evaluate", "params": {}}))
    await asyncio.sleep(0)
    assert client.pending == 1
    now[0] = 59.0
    hub.expire()
    assert peer.got == []
    now[0] = 61.0
    hub.expire()
    assert client.pending == 0
    assert peer.got[0]["id"] == 7 and "script.evaluate got no answer" in peer.got[0]["message"]
    hub._dispatch({"type": "success", "id": 1, "result": {}})  # the late answer: dropped
    assert len(peer.got) == 1


# What Puppeteer 24.43.1 sent over BiDi while it ran examples/attach/node/puppeteer_bidi.js
# (logged at the hub): every one of them passes the allow list.
PUPPETEER_SENDS = (
    "session.status",
    "session.new",
    "session.subscribe",
    "browser.getUserContexts",
    "browser.createUserContext",
    "browsingContext.getTree",
    "browsingContext.create",
    "browsingContext.setViewport",
    "browsingContext.navigate",
    "emulation.setScreenOrientationOverride",
    "network.addDataCollector",
    "script.addPreloadScript",
    "script.callFunction",
    "script.evaluate",
    "script.disown",
    "input.performActions",
)


@pytest.mark.parametrize("method", PUPPETEER_SENDS)
def test_what_puppeteer_sends_is_allowed(method: str) -> None:
    assert refusal(method) is None
