"""The Playwright-protocol rules on their own: what a call is judged by (its object's type, its
method, its parameters), and how strictly a message is read."""

from __future__ import annotations

import pytest

from broker.attach.playwright_rules import Call, decode_call, judge
from broker.attach.rules import BadMessage

ROUTE = "http://127.0.0.1:3128"


def call(method: str, **params: object) -> Call:
    return Call(1, "x@1", method, dict(params), {})


@pytest.mark.parametrize(
    ("kind", "method", "params", "words"),
    [
        ("BrowserType", "launch", {}, "own browser only"),
        ("BrowserType", "connectOverCDP", {"endpointURL": "http://h:9222"}, "own browser"),
        ("Electron", "launch", {}, "own browser"),
        ("Browser", "newBrowserCDPSession", {}, "raw CDP"),
        ("Browser", "startServer", {"title": "t"}, "server"),
        ("Browser", "newContext", {"proxy": {"server": "http://h:1"}}, "proxy"),
        ("Browser", "newContext", {"clientCertificates": [{"origin": "x"}]}, "clientCert"),
        ("Browser", "newContext", {"recordVideo": {"dir": "/tmp"}}, "recordVideo"),
        ("Frame", "goto", {"url": "file:///etc/passwd"}, "file:"),
        ("Frame", "goto", {"url": "FILE:///etc/passwd"}, "file:"),
        ("Frame", "goto", {"url": "view-source:https://a/"}, "view-source:"),
        ("Frame", "goto", {"url": "javascript:alert(1)"}, "javascript:"),
        ("Browser", "newContext", {"baseURL": "file:///etc/"}, "baseURL"),
        ("Browser", "newContext", {"baseURL": "view-source:http://a/"}, "baseURL"),
        (
            "Browser",
            "newContext",
            {"storageState": {"origins": [{"origin": "file://", "localStorage": []}]}},
            "storageState",
        ),
        (
            "BrowserContext",
            "setStorageState",
            {"storageState": {"origins": [{"origin": "chrome://settings"}]}},
            "storageState",
        ),
        ("Route", "continue", {"url": "file:///etc/passwd"}, "file:"),
        ("Route", "redirectNavigationRequest", {"url": "chrome://version"}, "chrome:"),
        ("APIRequestContext", "fetch", {"url": "file:///etc/passwd"}, "http(s)"),
        ("Frame", "setInputFiles", {"selector": "i", "localPaths": ["/etc/passwd"]}, "local"),
        ("ElementHandle", "setInputFiles", {"localDirectory": "/etc"}, "localDirectory"),
        ("Frame", "drop", {"selector": "i", "localPaths": ["/x"]}, "localPaths"),
        ("Artifact", "saveAs", {"path": "/tmp/x"}, "broker's host"),
        ("Artifact", "pathAfterFinished", {}, "broker's host"),
        ("Tracing", "tracingStart", {}, "tracing"),
        ("Playwright", "newRequest", {}, "broker's host"),
        ("BrowserContext", "newCDPSession", {}, "raw CDP"),
        ("BrowserContext", "createTempFiles", {"items": [{"name": "../x"}]}, "its folder"),
        ("BrowserContext", "createTempFiles", {"items": [{"name": "/x"}]}, "its folder"),
        ("Page", "screencastStart", {"record": True}, "record"),
        ("Page", "madeUpLater", {}, "allow list"),
        ("Unknown", "anything", {}, "allow list"),
    ],
)
def test_refused_by_name(kind: str, method: str, params: dict[str, object], words: str) -> None:
    reason = judge(kind, call(method, **params), ROUTE)
    assert reason is not None and reason.startswith(f"{kind}.{method} is refused")
    assert words in reason, reason


def test_allowed_and_a_new_context_gets_the_route() -> None:
    allowed: list[tuple[str, str, dict[str, object]]] = [
        ("Root", "initialize", {"sdkLanguage": "python"}),
        ("Frame", "goto", {"url": "https://example.com/"}),
        ("Frame", "goto", {"url": "about:blank"}),
        ("Frame", "goto", {"url": "data:text/html,x"}),
        ("Frame", "goto", {"url": "localhost:8080/"}),  # Playwright completes it with http://
        ("Frame", "goto", {"url": "relative/path"}),  # resolved against an http(s) base
        ("Browser", "newContext", {"baseURL": "https://example.com/app/"}),
        ("APIRequestContext", "fetch", {"url": "/api/items"}),
        (
            "BrowserContext",
            "setStorageState",
            {"storageState": {"origins": [{"origin": "https://a"}]}},
        ),
        ("Frame", "setInputFiles", {"selector": "i", "payloads": []}),
        ("Artifact", "saveAsStream", {}),
        ("APIRequestContext", "fetch", {"url": "https://example.com/"}),
        ("Page", "__waitInfo__", {}),
    ]
    for kind, method, params in allowed:
        assert judge(kind, call(method, **params), ROUTE) is None, (kind, method)
    context = call("newContext", viewport={"width": 1, "height": 1})
    assert judge("Browser", context, ROUTE) is None
    assert context.params["proxy"] == {"server": ROUTE}


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"id": 1, "guid": "", "method": "x", "id": -2}',  # the last of a key given twice
        '{"id": -1, "guid": "", "method": "x"}',
        f'{{"id": {2**31}, "guid": "", "method": "x"}}',  # the hub's own ids
        '{"id": 1, "guid": 5, "method": "x"}',
        '{"id": 1, "guid": "", "method": ""}',
        '{"id": 1, "guid": "", "method": "x", "params": []}',
        '{"id": 1, "guid": "", "method": "x", "extra": 1}',
        '{"id": 1, "guid": "", "method": "x", "params": {"n": NaN}}',
        '{"id": 1, "guid": "", "method": "x", "params": ' + "[" * 200 + "]" * 200 + "}",
    ],
)
def test_not_a_call(raw: str) -> None:
    with pytest.raises(BadMessage):
        decode_call(raw)


def test_a_call_is_sent_with_metadata() -> None:
    sent = decode_call('{"id": 3, "guid": "", "method": "initialize", "params": {}}').wire()
    assert '"metadata":{}' in sent
