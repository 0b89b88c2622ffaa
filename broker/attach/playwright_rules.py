"""Which Playwright-protocol calls an attached client may make, and with which parameters.

A client of a `playwright` lease speaks Playwright's own protocol to a `launchServer` of the
lease's browser: JSON calls `{id, guid, method, params, metadata}` on objects the server created
for that connection (`__create__` events name each object's type). Playwright's own launchServer
mode already refuses launching or connecting other browsers and `Playwright.newRequest`
(denyLaunch), ignores `Browser.close`, and shows a connection only the contexts it created;
this is the broker's wall in front of it (docs/security.md#the-playwright-protocol).

A call must be on the allow list, by its object's type; anything else (an unknown type or
method) is refused naming it, as are these, by parameter:

- other browsers and servers: every BrowserType, Android and Electron call, `Browser.startServer`;
- raw CDP around these rules: `Browser.newBrowserCDPSession`, `BrowserContext.newCDPSession`;
- the egress route: `Browser.newContext` with `proxy` or `clientCertificates` (Playwright's TLS
  proxy would open the connection from the broker's host), or with a `baseURL` that is not
  http(s) (the server resolves URLs against it after they are judged); every context gets the lease's route
  as its proxy, so `context.request` fetches go through the route too;
- the broker's files: `setInputFiles` and `drop` with `localPaths` or `localDirectory`,
  `Artifact.saveAs` (a path on the broker's host), `Artifact.pathAfterFinished`, tracing, HAR
  and video recording (files written on the broker's host), a screencast's `record`;
- navigations to anything but http(s), data: and about:blank (`file:`, `view-source:`,
  `chrome:`, `javascript:`...), a route continued or redirected to such a URL, and an API
  request (`context.request`) to anything but http(s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.attach.rules import BadMessage, strict_object
from broker.attach.strict_json import serialized
from broker.common.urls import UrlError, canonical


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Calls Playwright's server handles itself, on any object: a call's wait log, and its abort.
ANY_OBJECT = frozenset({"__waitInfo__", "__abort__"})
_ELEMENT_AND_FRAME = _names(
    "check click dblclick dispatchEvent evalOnSelector evalOnSelectorAll evaluateExpression "
    "evaluateExpressionHandle fill focus getAttribute hover innerHTML innerText inputValue "
    "isChecked isDisabled isEditable isEnabled isHidden isVisible press querySelector "
    "querySelectorAll selectOption setInputFiles tap textContent type uncheck "
    "waitForSelector"
)
_HANDLE = _names(
    "dispose evaluateExpression evaluateExpressionHandle getProperty getPropertyList jsonValue"
)
ALLOWED: dict[str, frozenset[str]] = {
    "Root": _names("initialize"),
    "Browser": _names("close defaultUserAgentForTest newContext"),
    "BrowserContext": _names(
        "addCookies addInitScript clearCookies clearPermissions clockFastForward "
        "clockInstall clockPauseAt clockResume clockRunFor clockSetFixedTime "
        "clockSetSystemTime close cookies createTempFiles exposeBinding grantPermissions "
        "newPage registerSelectorEngine setExtraHTTPHeaders setGeolocation "
        "setHTTPCredentials setNetworkInterceptionPatterns setOffline setStorageState "
        "setTestIdAttributeName setWebSocketInterceptionPatterns storageState "
        "updateSubscription"
    ),
    "Page": _names(
        "addInitScript bringToFront clearConsoleMessages clearPageErrors close "
        "consoleMessages emulateMedia expectScreenshot exposeBinding goBack goForward "
        "keyboardDown keyboardInsertText keyboardPress keyboardType keyboardUp mouseClick "
        "mouseDown mouseMove mouseUp mouseWheel pageErrors pdf registerLocatorHandler "
        "reload requestGC requests resolveLocatorHandlerNoReply runBeforeUnload "
        "screencastFrameAck screencastStart screencastStop screenshot setExtraHTTPHeaders "
        "setNetworkInterceptionPatterns setViewportSize setWebSocketInterceptionPatterns "
        "startCSSCoverage startJSCoverage stopCSSCoverage stopJSCoverage touchscreenTap "
        "unregisterLocatorHandler updateSubscription webStorageClear webStorageGetItem "
        "webStorageItems webStorageRemoveItem webStorageSetItem"
    ),
    "Frame": _ELEMENT_AND_FRAME
    | _names(
        "addScriptTag addStyleTag ariaSnapshot blur content dragAndDrop drop expect "
        "frameElement goto queryCount resolveSelector setContent title waitForFunction "
        "waitForTimeout"
    ),
    "ElementHandle": _ELEMENT_AND_FRAME
    | _HANDLE
    | _names(
        "boundingBox contentFrame ownerFrame screenshot scrollIntoViewIfNeeded selectText "
        "waitForElementState"
    ),
    "JSHandle": _HANDLE,
    "Request": _names("rawRequestHeaders response"),
    "Response": _names("body httpVersion rawResponseHeaders securityDetails serverAddr sizes"),
    "Route": _names("abort continue fulfill redirectNavigationRequest"),
    "WebSocketRoute": _names("closePage closeServer connect ensureOpened sendToPage sendToServer"),
    "APIRequestContext": _names(
        "dispose disposeAPIResponse fetch fetchLog fetchResponseBody storageState"
    ),
    "Artifact": _names("cancel delete failure saveAsStream stream"),
    "Stream": _names("close read"),
    "WritableStream": _names("close write"),
    "Dialog": _names("accept dismiss"),
    "BindingCall": _names("reject resolve"),
    "Worker": _names("evaluateExpression evaluateExpressionHandle updateSubscription"),
    "Disposable": _names("dispose"),
}
_NO_OTHER_BROWSERS = "a lease's client reaches the lease's own browser only"
_HOST_FILES = "it names a file on the broker's host"
_HOST_DISK = "it writes files on the broker's host"
_RAW_CDP = "raw CDP would go around these rules (lease a `cdp` attachable lease for CDP)"
REFUSED_TYPES = {
    "BrowserType": _NO_OTHER_BROWSERS,
    "Android": _NO_OTHER_BROWSERS,
    "AndroidDevice": _NO_OTHER_BROWSERS,
    "AndroidSocket": _NO_OTHER_BROWSERS,
    "Electron": _NO_OTHER_BROWSERS,
    "ElectronApplication": _NO_OTHER_BROWSERS,
    "Tracing": f"tracing and HAR recording are not served: {_HOST_DISK}",
    "LocalUtils": "the server's local utilities work on the broker's host",
    "SocksSupport": "the egress route is the only way out",
    "CDPSession": _RAW_CDP,
}
REFUSED = {
    ("Playwright", "newRequest"): "an API request context would fetch from the broker's host",
    ("Browser", "newBrowserCDPSession"): _RAW_CDP,
    ("BrowserContext", "newCDPSession"): _RAW_CDP,
    ("Browser", "startServer"): "it opens a server on the broker's host",
    ("Browser", "startTracing"): _HOST_DISK,
    ("Browser", "newContextForReuse"): _NO_OTHER_BROWSERS,
    ("Artifact", "saveAs"): f"{_HOST_FILES} (use saveAsStream, as a remote client does)",
    ("Artifact", "pathAfterFinished"): _HOST_FILES,
    ("BrowserContext", "pause"): "the inspector is not served",
    ("BrowserContext", "enableRecorder"): "the recorder is not served",
}
_NEW_CONTEXT_REFUSED = {
    "proxy": "every context goes through the lease's egress route",
    "clientCertificates": (
        "Playwright's client-certificate proxy would connect from the broker's host, around "
        "the lease's egress route"
    ),
    "recordVideo": _HOST_DISK,
    "recordHar": _HOST_DISK,
}
NAVIGABLE = frozenset({"http", "https", "data"})
MAX_TEMP_FILES = 100  # files one createTempFiles may make


@dataclass(frozen=True)
class Call:
    id: int
    guid: str
    method: str
    params: dict[str, Any]
    metadata: dict[str, Any]

    def wire(self) -> str:
        """What the server is sent: the broker's serialization of what was judged, always with
        a `metadata` object (Playwright 1.62's server process dies on a call without one whose
        method its metainfo marks internal, `initialize` among them)."""
        message = {
            "id": self.id,
            "guid": self.guid,
            "method": self.method,
            "params": self.params,
            "metadata": self.metadata,
        }
        return serialized(message).decode()


def decode_call(raw: str | bytes) -> Call:
    """A client's message, parsed as strictly as a CDP command is (rules.decode)."""
    message = strict_object(raw)
    ident, guid, method = message.get("id"), message.get("guid"), message.get("method")
    if type(ident) is not int or not 0 <= ident < 2**31:
        raise BadMessage("id must be a non-negative 32-bit integer")
    if not isinstance(guid, str) or len(guid) > 256:
        raise BadMessage("guid must be a string")
    if not isinstance(method, str) or not method or len(method) > 128:
        raise BadMessage("method must be a string")
    params = message.get("params", {})
    metadata = message.get("metadata")
    if not isinstance(params, dict) or not isinstance(metadata, dict | None):
        raise BadMessage("params and metadata must be objects")
    extra = set(message) - {"id", "guid", "method", "params", "metadata"}
    if extra:
        raise BadMessage(f"unknown member {sorted(extra)[0][:64]!r}")
    return Call(ident, guid, method, params, metadata or {})


def judge(kind: str, call: Call, route_url: str) -> str | None:
    """Why `call` on an object of type `kind` is refused (None: relay it). May rewrite the
    call's parameters (a new context's proxy is the lease's route)."""
    named = f"{kind}.{call.method}"
    if call.method in ANY_OBJECT:
        return None
    reason = REFUSED.get((kind, call.method)) or REFUSED_TYPES.get(kind)
    if reason is None and call.method not in ALLOWED.get(kind, ()):
        reason = "not on the broker's allow list for attached clients"
    if reason is None:
        reason = _by_params(kind, call, route_url)
    return None if reason is None else f"{named} is refused: {reason}"


def _by_params(kind: str, call: Call, route_url: str) -> str | None:
    params = call.params
    if kind == "Browser" and call.method == "newContext":
        for name, why in _NEW_CONTEXT_REFUSED.items():
            if params.get(name) is not None:
                return f"{name}: {why}"
        if params.get("baseURL") is not None and _fetched(params["baseURL"]) is not None:
            # The server resolves a navigation's or a request's URL against it, after the
            # judge: only an http(s) base keeps every URL so resolved http(s).
            return "baseURL: only an http(s) URL is a context's base"
        if route_url:
            params["proxy"] = {"server": route_url}
        return _storage_origins(params.get("storageState"))
    if call.method in ("setInputFiles", "drop"):
        named = [name for name in ("localPaths", "localDirectory") if params.get(name)]
        return f"{named[0]}: {_HOST_FILES}" if named else None
    if kind == "Frame" and call.method == "goto":
        return _navigation(params.get("url"))
    if kind == "Route" and call.method == "continue" and params.get("url") is not None:
        return _navigation(params.get("url"))
    if kind == "Route" and call.method == "redirectNavigationRequest":
        return _navigation(params.get("url"))
    if kind == "APIRequestContext" and call.method == "fetch":
        return _fetched(params.get("url"), relative=True)
    if kind == "Page" and call.method == "screencastStart" and params.get("record"):
        return f"record: {_HOST_DISK}"
    if kind == "BrowserContext" and call.method == "setStorageState":
        return _storage_origins(params.get("storageState"))
    if kind == "BrowserContext" and call.method == "createTempFiles":
        return _temp_files(params)
    return None


def _navigation(url: object) -> str | None:
    if not isinstance(url, str):
        return "url must be a string"
    if url.startswith(("localhost", "127.0.0.1")):  # what Playwright completes with http://
        url = "http://" + url
    if url == "about:blank":
        return None
    try:
        scheme = canonical(url).scheme
    except UrlError:
        # Not absolute: the server resolves it against the context's base (an http(s) URL,
        # Browser.newContext), or the browser refuses it.
        return None
    if scheme not in NAVIGABLE:
        return f"a navigation to {scheme}: (only http, https, data: and about:blank)"
    return None


def _fetched(url: object, relative: bool = False) -> str | None:
    """What Playwright's server fetches itself (through the lease's route): http(s) only; a
    `relative` URL is resolved against the context's base, http(s) too."""
    if not isinstance(url, str):
        return "url must be a string"
    try:
        scheme = canonical(url).scheme
    except UrlError:
        scheme = "" if not relative else "http"
    return None if scheme in ("http", "https") else "url: only an http(s) URL is fetched"


def _storage_origins(state: object) -> str | None:
    """A storage state's origins: the server opens a page at each to set its storage."""
    origins = state.get("origins") if isinstance(state, dict) else None
    for entry in origins if isinstance(origins, list) else []:
        origin = entry.get("origin") if isinstance(entry, dict) else None
        if _fetched(origin) is not None:
            return f"storageState: origin {str(origin)[:100]!r} is not http(s)"
    return None


def _temp_files(params: dict[str, Any]) -> str | None:
    items = params.get("items")
    if not isinstance(items, list) or len(items) > MAX_TEMP_FILES:
        return f"items: at most {MAX_TEMP_FILES} files"
    names = [params.get("rootDirName")] + [i.get("name") for i in items if isinstance(i, dict)]
    for name in names:
        if isinstance(name, str) and (name.startswith("/") or ".." in name.split("/")):
            return f"{name[:100]!r}: a temporary file's name stays in its folder"
    return None
