"""Which WebDriver BiDi commands an attached client may send, judged as Firefox will read them.

A client's message is parsed as strictly as a CDP one (`rules.decode`: no NaN, no integer
beyond 2**53 - 1, nesting at most 100 deep; an integer `id`, a string `method`, an object
`params`, and no `sessionId`: BiDi has none), and Firefox is sent the broker's own
serialization of what was judged, never the client's bytes (so a key given twice counts once,
with its last value).

A command must be on the allow list below (each module judged for host files, egress, the
lease's end and the relay itself; the reason is beside it); anything else, a command a later
Firefox adds or a vendor extension (`moz:`, `goog:`), is refused naming it until someone judges
it. An allowed command may still be refused by its parameters (`judge`). Every refusal is an
error answer naming the command and why (docs/security.md#attached-clients).
"""

from __future__ import annotations

from typing import Any

from broker.attach.rules import Command, _fetch, _navigation  # judged as CDP's are

# Answered by the relay itself: the lease's one BiDi session is the broker's (Firefox serves one
# at a time), so a client's session.new is answered with it, and session.end only lets it go.
LOCAL = frozenset({"session.new", "session.end"})

ALLOWED = frozenset(
    {
        # session: subscriptions the client makes are undone when it leaves.
        "session.status",
        "session.subscribe",
        "session.unsubscribe",
        # browser: user contexts and windows of the lease's own browser (it holds nothing else).
        "browser.createUserContext",  # judged: no proxy of its own
        "browser.getUserContexts",
        "browser.removeUserContext",
        "browser.getClientWindows",
        "browser.setClientWindowState",
        "browser.setDownloadBehavior",  # judged: never a folder the client names
        # browsingContext: pages of the lease; navigations judged by scheme.
        "browsingContext.activate",
        "browsingContext.captureScreenshot",
        "browsingContext.close",
        "browsingContext.create",  # bounded by attach_max_targets
        "browsingContext.getTree",
        "browsingContext.handleUserPrompt",
        "browsingContext.locateNodes",
        "browsingContext.navigate",  # judged: http, https, data and about:blank only
        "browsingContext.print",
        "browsingContext.reload",
        "browsingContext.setViewport",
        "browsingContext.traverseHistory",
        # emulation: what pages are told; nothing of the host.
        "emulation.setForcedColorsModeThemeOverride",
        "emulation.setGeolocationOverride",
        "emulation.setLocaleOverride",
        "emulation.setNetworkConditions",
        "emulation.setScreenOrientationOverride",
        "emulation.setScreenSettingsOverride",
        "emulation.setScriptingEnabled",
        "emulation.setScrollbarTypeOverride",
        "emulation.setTimezoneOverride",
        "emulation.setTouchOverride",
        "emulation.setUserAgentOverride",
        # input: synthetic events in pages; files are refused (input.setFiles).
        "input.performActions",
        "input.releaseActions",
        "input.setFiles",  # judged: no files (they are the host's)
        # network: requests of the lease's pages, which go through the route whatever is done
        # to them; a request continued elsewhere is judged by scheme.
        "network.addDataCollector",
        "network.addIntercept",
        "network.continueRequest",  # judged: http(s) only
        "network.continueResponse",
        "network.continueWithAuth",
        "network.disownData",
        "network.failRequest",
        "network.getData",
        "network.provideResponse",
        "network.removeDataCollector",
        "network.removeIntercept",
        "network.setCacheBehavior",
        "network.setExtraHeaders",
        # script: the pages' realms (content, never chrome: no moz:scope, and Firefox is not
        # started with --remote-allow-system-access).
        "script.addPreloadScript",
        "script.callFunction",
        "script.disown",
        "script.evaluate",
        "script.getRealms",
        "script.removePreloadScript",
        # storage: cookies of the lease's own browser.
        "storage.deleteCookies",
        "storage.getCookies",
        "storage.setCookie",
        # permissions: judged, no host device.
        "permissions.setPermission",
    }
)

REFUSED = {
    "browser.close": "Release ends a lease; a client disconnects (session.end)",
    "webExtension.install": "it loads an extension from the broker's host",
    "webExtension.uninstall": "extensions are not served",
}

# Permissions that hand a page one of the host's devices (Permissions API names).
DEVICE_PERMISSIONS = frozenset(
    {
        "camera",
        "microphone",
        "display-capture",
        "speaker-selection",
        "midi",
        "nfc",
        "screen-wake-lock",
        "window-management",
    }
)


def refusal(method: str) -> str | None:
    if method in REFUSED:
        return f"{method} is not allowed on an attached lease: {REFUSED[method]}"
    if method not in ALLOWED and method not in LOCAL:
        return f"{method} is not allowed on an attached lease"
    return None


def judge(command: Command, max_pages: int, pages: int) -> str | None:
    """Why `command` is refused (None: it may go). `pages`: top-level pages open now."""
    method, params = command.method, command.params
    refused = refusal(method)
    if refused is not None:
        return refused
    vendor = next((key for key in params if ":" in key), None)
    if vendor is not None:
        return f"{method} is refused with {vendor}: vendor extensions are not judged"
    if method == "session.new":
        return _capabilities(method, params.get("capabilities"))
    if method == "browser.createUserContext" and params.get("proxy") is not None:
        return f"{method} is refused with proxy: every context uses the lease's route"
    # Only denying is the client's to choose: allowing, a folder, or null (Firefox's own
    # default, the same folder) would undo the hub's denial once a bound is reached.
    if method == "browser.setDownloadBehavior" and params.get("downloadBehavior") != {
        "type": "denied"
    }:
        return (
            f"{method} is refused unless it denies downloads (a destinationFolder, allowed "
            "or null would undo the broker's bound): they land in the lease's own folder"
        )
    if method == "input.setFiles" and params.get("files"):
        return f"{method} is refused with files: they would be read from the broker's host"
    if method == "browsingContext.navigate":
        return _navigation(method, params.get("url"))
    if method == "browsingContext.create" and pages >= max_pages:
        return f"{method} is refused: {pages} pages are open (attach_max_targets {max_pages})"
    if method == "network.continueRequest" and "url" in params:
        return _fetch(method, params["url"])
    if method == "permissions.setPermission" and params.get("state") == "granted":
        descriptor = params.get("descriptor")
        name = descriptor.get("name") if isinstance(descriptor, dict) else None
        if name in DEVICE_PERMISSIONS:
            return f"{method} is refused for {name}: it hands a host device to pages"
    return None


def _capabilities(method: str, capabilities: object) -> str | None:
    if capabilities is None:
        return None
    if not isinstance(capabilities, dict):
        return f"{method} is refused: capabilities must be an object"
    sets = [capabilities.get("alwaysMatch")]
    first = capabilities.get("firstMatch")
    sets += first if isinstance(first, list) else [first]
    for wanted in sets:
        if isinstance(wanted, dict) and wanted.get("proxy") is not None:
            return f"{method} is refused with a proxy capability: pages use the lease's route"
    return None


# What a client's command leaves in the lease's one session, and how it is undone when the
# client leaves (the next client must not inherit its intercepts, scripts or subscriptions):
# method -> (the answer's field naming it, the command that removes it, its parameter).
UNDO = {
    "session.subscribe": ("subscription", "session.unsubscribe", "subscriptions"),
    "network.addIntercept": ("intercept", "network.removeIntercept", "intercept"),
    "script.addPreloadScript": ("script", "script.removePreloadScript", "script"),
    "network.addDataCollector": ("collector", "network.removeDataCollector", "collector"),
}


def undo(method: str, result: object) -> tuple[str, dict[str, Any]] | None:
    """The command that undoes what `method`'s answer `result` made, if anything."""
    found = UNDO.get(method)
    if found is None or not isinstance(result, dict):
        return None
    field, remover, parameter = found
    made = result.get(field)
    if not isinstance(made, str):
        return None
    return remover, {parameter: [made] if parameter == "subscriptions" else made}
