"""Which CDP commands an attached client may send, judged as Chromium will read them.

A client's message is parsed strictly, at C speed (orjson, RE2: `strict_object`), into what
Chromium will read: no NaN or Infinity, no number that is not a finite double (`1e400`), no
integer beyond 2**53 - 1, no nesting deeper than MAX_DEPTH (Chromium never answers what it
cannot read, and the command would wait for ever); an object with an integer `id`, a string
`method`, an object `params`, a string `sessionId`. The browser is sent the broker's own
serialization of what was judged, never the client's bytes, so two parsers cannot read one
message two ways: a key given twice counts once, with its last value, and only that value is
judged and sent; a lone surrogate (`"\\ud800"`) is judged, and sent, as U+FFFD.

A command must be on the allow list (`allowed.py`: every command a client may send, domain by
domain, and those refused on purpose with the reason); anything else is refused naming it. An
allowed command may still be refused or rewritten by its parameters, here
(docs/security.md#attached-clients):

- host files: `Input.dispatchDragEvent` carrying files, `Network.loadNetworkResource` of
  anything but http(s); navigations (`Page.navigate`, `Target.createTarget`) to any scheme but
  http, https, data and about:blank (`file:`, `view-source:`, `chrome:`, `javascript:`, ...);
  an intercepted request continued to a URL that is not http(s);
- download folders a client names: `Browser.setDownloadBehavior` and `Page.setDownloadBehavior`
  are rewritten to the lease's own folder;
- the egress route: `Target.createBrowserContext` with its own `proxyServer` or
  `proxyBypassList`; `Tracing.start` on the system backend or with a Perfetto configuration (a
  host service, outputs it names);
- the host's devices: permissions granted for cameras, microphones, screens, MIDI, NFC, smart
  cards, printers, speakers and XR devices;
- the relay itself: non-flat sessions (`flatten` other than true).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.attach.allowed import refusal
from broker.attach.strict_json import MAX_DEPTH, BadMessage, serialized, strict_object
from broker.common.urls import UrlError, canonical

__all__ = ["MAX_DEPTH", "BadMessage", "Command", "decode", "judge", "strict_object"]

ERROR_CODE = -32000  # what Chromium answers a refused command with, too


@dataclass
class Command:
    id: int
    method: str
    params: dict[str, Any]
    session_id: str | None

    def wire(self, wire_id: int, session_id: str | None) -> bytes:
        message: dict[str, Any] = {"id": wire_id, "method": self.method, "params": self.params}
        if session_id is not None:
            message["sessionId"] = session_id
        return serialized(message)


def decode(raw: str | bytes) -> Command:
    message = strict_object(raw)
    ident = message.get("id")
    if type(ident) is not int or not 0 <= ident < 2**53:
        raise BadMessage("id must be a non-negative integer")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise BadMessage("method must be a string")
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise BadMessage("params must be an object")
    session = message.get("sessionId")
    if session is not None and not isinstance(session, str):
        raise BadMessage("sessionId must be a string")
    extra = set(message) - {"id", "method", "params", "sessionId"}
    if extra:
        raise BadMessage(f"unknown member {sorted(extra)[0][:64]!r}")
    return Command(ident, method, params, session)


NAVIGATION_SCHEMES = frozenset({"http", "https", "data"})
FLATTENED = ("Target.attachToTarget", "Target.setAutoAttach")
CONTINUED = ("Fetch.continueRequest", "Network.continueInterceptedRequest")
# Permissions that hand a page one of the host's devices (CDP's PermissionType names).
DEVICE_PERMISSIONS = frozenset(
    {
        "audioCapture",
        "videoCapture",
        "cameraPanTiltZoom",
        "displayCapture",
        "capturedSurfaceControl",
        "speakerSelection",
        "midi",
        "midiSysex",
        "nfc",
        "smartCard",
        "webPrinting",
        "ar",
        "vr",
        "handTracking",
    }
)


def judge(command: Command, downloads_folder: str) -> str | None:
    """Why `command` is refused (None: it may go, maybe rewritten in place)."""
    method, params = command.method, command.params
    refused = refusal(method)
    if refused is not None:
        return refused
    if method in FLATTENED and params.get("flatten") is not True:
        return f"{method} is refused without flatten: true (only flat sessions are relayed)"
    if method == "Target.createBrowserContext":
        for name in ("proxyServer", "proxyBypassList"):
            if name in params:
                return f"{method} is refused with {name}: every context uses the lease's route"
    if method == "Input.dispatchDragEvent":
        data = params.get("data")
        if isinstance(data, dict) and data.get("files"):
            return f"{method} is refused with files: it hands host files to the page"
    if method in ("Page.navigate", "Target.createTarget"):
        return _navigation(method, params.get("url"))
    if method == "Network.loadNetworkResource":
        return _fetch(method, params.get("url"))
    if method in CONTINUED and "url" in params:
        return _fetch(method, params["url"])
    if method == "Tracing.start":
        return _tracing(method, params)
    if method in ("Browser.grantPermissions", "Browser.setPermission"):
        return _permissions(method, params)
    if method in ("Browser.setDownloadBehavior", "Page.setDownloadBehavior"):
        if params.get("behavior") in ("allow", "allowAndName"):
            params["downloadPath"] = downloads_folder  # the lease's own folder, whatever it says
            if method == "Browser.setDownloadBehavior":
                params["eventsEnabled"] = True  # the hub bounds downloads by their progress
        else:
            params.pop("downloadPath", None)
    return None


def _navigation(method: str, url: object) -> str | None:
    if url is None or (url == "" and method == "Target.createTarget"):
        return None  # about:blank
    if not isinstance(url, str):
        return f"{method} is refused: url must be a string"
    try:
        parsed = canonical(url)
    except UrlError:
        return f"{method} is refused: url is not an absolute URL"
    if parsed.scheme in NAVIGATION_SCHEMES or parsed.href == "about:blank":
        return None
    return (
        f"{method} is refused: a {parsed.scheme}: URL (only http, https, data and about:blank "
        "are opened)"
    )


def _fetch(method: str, url: object) -> str | None:
    try:
        scheme = canonical(url).scheme if isinstance(url, str) else ""
    except UrlError:
        scheme = ""
    if scheme in ("http", "https"):
        return None
    return f"{method} is refused: only http and https resources are loaded"


def _tracing(method: str, params: dict[str, Any]) -> str | None:
    if "perfettoConfig" in params:
        return f"{method} is refused with perfettoConfig: it can name outputs and host services"
    if params.get("tracingBackend") == "system":
        return f"{method} is refused on the system backend: it is a service of the host"
    return None


def _permissions(method: str, params: dict[str, Any]) -> str | None:
    if method == "Browser.setPermission":
        descriptor = params.get("permission")
        name = descriptor.get("name") if isinstance(descriptor, dict) else None
        names = [name] if params.get("setting") == "granted" else []
    else:
        given = params.get("permissions")
        names = given if isinstance(given, list) else []
    for name in names:
        if name in DEVICE_PERMISSIONS:
            return f"{method} is refused for {name}: it hands a host device to pages"
    return None
