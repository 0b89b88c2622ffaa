"""The attach relay's allow list: every CDP command is allowed or refused on purpose, what real
clients send is allowed, and parameters are judged. The protocol checked here is the one the
installed Playwright ships (its `types/protocol.d.ts`); tests/attach/test_attach_protocol.py
checks the one the real Chromium serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import playwright
import pytest

from broker.attach.allowed import ALLOWED, REFUSED_DOMAINS, REFUSED_METHODS, judged, refusal
from broker.attach.rules import decode, judge
from tests.conftest import require

# What clients send through the relay. Python Playwright 1.62's connect_over_cdp (logged by
# the relay while tests/attach ran a login, popup, route, download, file chooser, dialog,
# screenshot, screencast, tracing, emulation, cookies and permissions), then Puppeteer 24 and
# chromedp at connect and for pages (from their sources: coverage, PDFs, traces, accessibility
# queries, DOM searches).
PLAYWRIGHT = (
    "Browser.cancelDownload Browser.getVersion Browser.getWindowForTarget "
    "Browser.grantPermissions Browser.resetPermissions Browser.setDownloadBehavior "
    "Browser.setWindowBounds DOM.describeNode DOM.getBoxModel DOM.getContentQuads "
    "DOM.resolveNode DOM.scrollIntoViewIfNeeded Emulation.setDeviceMetricsOverride "
    "Emulation.setEmulatedMedia Emulation.setFocusEmulationEnabled "
    "Emulation.setGeolocationOverride Emulation.setLocaleOverride Emulation.setTimezoneOverride "
    "Emulation.setTouchEmulationEnabled Emulation.setUserAgentOverride Fetch.continueRequest "
    "Fetch.enable Fetch.failRequest Fetch.fulfillRequest Input.dispatchKeyEvent "
    "Input.dispatchMouseEvent Input.dispatchTouchEvent Input.insertText Log.enable "
    "Network.emulateNetworkConditions Network.enable Network.getResponseBody "
    "Network.setCacheDisabled Network.setExtraHTTPHeaders Page.addScriptToEvaluateOnNewDocument "
    "Page.captureScreenshot Page.createIsolatedWorld Page.enable Page.getFrameTree "
    "Page.getLayoutMetrics Page.getNavigationHistory Page.handleJavaScriptDialog Page.navigate "
    "Page.navigateToHistoryEntry Page.reload Page.screencastFrameAck Page.setBypassCSP "
    "Page.setFontFamilies Page.setInterceptFileChooserDialog Page.setLifecycleEventsEnabled "
    "Page.startScreencast Page.stopScreencast Performance.enable Performance.getMetrics "
    "Runtime.addBinding Runtime.callFunctionOn Runtime.enable Runtime.evaluate "
    "Runtime.releaseObject Runtime.runIfWaitingForDebugger Security.setIgnoreCertificateErrors "
    "Storage.clearCookies Storage.getCookies Storage.setCookies Target.attachToBrowserTarget "
    "Target.attachToTarget Target.closeTarget Target.createBrowserContext Target.createTarget "
    "Target.detachFromTarget Target.disposeBrowserContext Target.getTargetInfo "
    "Target.setAutoAttach Target.getBrowserContexts Target.getTargets DOM.getDocument"
)
PUPPETEER = (
    "Target.setDiscoverTargets Target.getBrowserContexts Target.setAutoAttach "
    "Target.attachToTarget Target.activateTarget Target.createTarget Target.closeTarget "
    "Target.createBrowserContext Target.disposeBrowserContext Target.getTargetInfo "
    "Browser.getVersion Browser.setDownloadBehavior Browser.grantPermissions "
    "Browser.resetPermissions Browser.setPermission Browser.getWindowForTarget "
    "Browser.getWindowBounds Browser.setWindowBounds Page.bringToFront Page.close "
    "Page.printToPDF Page.stopLoading Page.resetNavigationHistory Page.setBypassCSP "
    "Page.removeScriptToEvaluateOnNewDocument Page.setDocumentContent "
    "Network.setBypassServiceWorker Network.setUserAgentOverride Network.getCookies "
    "Network.setCookie Network.deleteCookies Network.emulateNetworkConditionsByRule "
    "Network.overrideNetworkState Fetch.continueWithAuth Fetch.disable Fetch.continueResponse "
    "Fetch.getResponseBody Fetch.takeResponseBodyAsStream IO.read IO.close Tracing.start "
    "Tracing.end Accessibility.getFullAXTree Accessibility.getPartialAXTree "
    "Accessibility.queryAXTree DOM.getFrameOwner DOM.setFileInputFiles "
    "CSS.enable CSS.startRuleUsageTracking CSS.stopRuleUsageTracking CSS.takeCoverageDelta "
    "Profiler.enable Profiler.startPreciseCoverage Profiler.takePreciseCoverage "
    "Profiler.stopPreciseCoverage Profiler.disable Debugger.enable Debugger.disable "
    "Debugger.getScriptSource Debugger.setSkipAllPauses Runtime.getProperties "
    "Runtime.awaitPromise Runtime.queryObjects Runtime.removeBinding "
    "Runtime.getExceptionDetails HeapProfiler.collectGarbage Emulation.setCPUThrottlingRate "
    "Emulation.setEmulatedVisionDeficiency Emulation.setIdleOverride "
    "Emulation.clearIdleOverride Emulation.setScriptExecutionDisabled "
    "Emulation.setDefaultBackgroundColorOverride Emulation.clearDeviceMetricsOverride "
    "Input.dispatchDragEvent Input.setInterceptDrags Page.setWebLifecycleState "
    "Page.captureSnapshot Performance.getMetrics WebAuthn.enable "
    "WebAuthn.addVirtualAuthenticator BluetoothEmulation.enable ServiceWorker.enable "
    "Schema.getDomains Security.enable"
)
CHROMEDP = (
    "Target.setDiscoverTargets Target.attachToTarget Target.createTarget Target.getTargets "
    "Target.closeTarget Target.detachFromTarget Target.createBrowserContext "
    "Target.disposeBrowserContext Target.activateTarget Inspector.enable Page.enable "
    "Page.setLifecycleEventsEnabled Runtime.enable DOM.enable CSS.enable Log.enable "
    "DOM.getDocument DOM.querySelector DOM.querySelectorAll DOM.performSearch "
    "DOM.getSearchResults DOM.discardSearchResults DOM.pushNodesByBackendIdsToFrontend "
    "DOM.requestChildNodes DOM.setAttributeValue DOM.getOuterHTML DOM.setOuterHTML DOM.focus "
    "DOM.removeAttribute DOM.getAttributes DOM.setNodeValue DOM.getBoxModel "
    "DOM.getContentQuads DOM.resolveNode DOM.describeNode DOM.scrollIntoViewIfNeeded "
    "CSS.getComputedStyleForNode Page.navigate Page.captureScreenshot Page.printToPDF "
    "Page.navigateToHistoryEntry Page.getNavigationHistory Page.reload Page.stopLoading "
    "Page.getFrameTree Page.getLayoutMetrics Page.handleJavaScriptDialog "
    "Browser.setDownloadBehavior Network.enable Fetch.enable Emulation.setDeviceMetricsOverride "
    "Emulation.setUserAgentOverride Input.dispatchKeyEvent Input.dispatchMouseEvent "
    "Input.insertText Runtime.evaluate Runtime.callFunctionOn"
)
# What a client's browser code sends but the relay refuses on purpose (their errors name it).
REFUSED_FROM_CLIENTS = {"DOM.setFileInputFiles"}


def _shipped_protocol() -> set[str]:
    types = Path(playwright.__file__).parent / "driver" / "package" / "types" / "protocol.d.ts"
    text = types.read_text()
    block = text[text.index("export interface CommandParameters {") :]
    block = block[: block.index("\n  }")]
    return set(re.findall(r'^\s+"(\w+\.\w+)":', block, re.MULTILINE))


def test_every_command_of_the_shipped_protocol_is_judged() -> None:
    commands = _shipped_protocol()
    assert len(commands) > 500, "the protocol's commands were not found"
    unjudged = sorted(c for c in commands if not judged(c))
    assert not unjudged, f"commands neither allowed nor refused on purpose: {unjudged}"


# Puppeteer's pinned copy of the protocol, where the attach examples installed it (npm ci).
PUPPETEER_PROTOCOL = (
    Path(__file__).parents[2] / "examples/attach/node/node_modules/devtools-protocol/json"
)


def test_every_command_of_puppeteers_protocol_is_judged() -> None:
    require(PUPPETEER_PROTOCOL.is_dir(), "the Node attach examples (scripts/polyglot.sh)")
    commands = []
    for name in ("browser_protocol.json", "js_protocol.json"):
        protocol = json.loads((PUPPETEER_PROTOCOL / name).read_text())
        commands += [
            f"{d['domain']}.{c['name']}" for d in protocol["domains"] for c in d["commands"]
        ]
    unjudged = sorted(c for c in commands if not judged(c))
    assert not unjudged, f"commands neither allowed nor refused on purpose: {unjudged}"


def test_the_lists_do_not_overlap() -> None:
    assert not ALLOWED & set(REFUSED_METHODS)
    assert not {m for m in ALLOWED if m.partition(".")[0] in REFUSED_DOMAINS}


@pytest.mark.parametrize("client", [PLAYWRIGHT, PUPPETEER, CHROMEDP])
def test_what_real_clients_send_is_allowed(client: str) -> None:
    blocked = [m for m in client.split() if refusal(m) and m not in REFUSED_FROM_CLIENTS]
    assert not blocked


@pytest.mark.parametrize(
    "method", ["Page.someFutureCommand", "Future.domain", "Browser.someFutureCommand", "x"]
)
def test_an_unlisted_command_is_refused_by_name(method: str) -> None:
    reason = judge(decode(json.dumps({"id": 1, "method": method})), "/d")
    assert reason is not None
    assert reason.startswith(method) and "not allowed on an attached lease" in reason


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("SystemInfo.getInfo", "describes the host"),
        ("SystemInfo.someFutureCommand", "describes the host"),
        ("Cast.startDesktopMirroring", "around the route"),
        ("DeviceAccess.selectPrompt", "devices"),
        ("DOM.getFileInfo", "path"),
        ("Storage.overrideQuotaForOrigin", "disk"),
        ("Page.addCompilationCache", "code cache"),
        ("LayerTree.loadSnapshot", "picture"),
        ("Target.getDevToolsTarget", "DevTools"),
    ],
)
def test_refused_on_purpose_says_why(method: str, words: str) -> None:
    reason = refusal(method)
    assert reason is not None and reason.startswith(f"{method} is refused") and words in reason


def _judge(method: str, params: dict[str, object]) -> str | None:
    return judge(decode(json.dumps({"id": 1, "method": method, "params": params})), "/d")


@pytest.mark.parametrize(
    ("method", "params", "refused"),
    [
        ("Fetch.continueRequest", {"requestId": "1"}, False),
        ("Fetch.continueRequest", {"requestId": "1", "url": "https://a.test/x"}, False),
        ("Fetch.continueRequest", {"requestId": "1", "url": "file:///etc/passwd"}, True),
        ("Fetch.continueRequest", {"requestId": "1", "url": " FILE:/etc/passwd"}, True),
        ("Fetch.continueRequest", {"requestId": "1", "url": 7}, True),
        ("Network.continueInterceptedRequest", {"interceptionId": "1", "url": "chrome://x"}, True),
        ("Tracing.start", {"transferMode": "ReturnAsStream"}, False),
        ("Tracing.start", {"perfettoConfig": "AAAA"}, True),
        ("Tracing.start", {"tracingBackend": "system"}, True),
        ("Tracing.start", {"tracingBackend": "chrome"}, False),
        ("Browser.grantPermissions", {"permissions": ["geolocation", "clipboardReadWrite"]}, False),
        ("Browser.grantPermissions", {"permissions": ["geolocation", "videoCapture"]}, True),
        ("Browser.grantPermissions", {"permissions": ["midiSysex"]}, True),
        (
            "Browser.setPermission",
            {"permission": {"name": "audioCapture"}, "setting": "granted"},
            True,
        ),
        (
            "Browser.setPermission",
            {"permission": {"name": "audioCapture"}, "setting": "denied"},
            False,
        ),
        (
            "Browser.setPermission",
            {"permission": {"name": "geolocation"}, "setting": "granted"},
            False,
        ),
    ],
)
def test_parameters_are_judged(method: str, params: dict[str, object], refused: bool) -> None:
    reason = _judge(method, params)
    assert (reason is not None) is refused, reason
    if reason is not None:
        assert reason.startswith(method)
