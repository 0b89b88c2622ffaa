"""Every CDP command an attached client may send, domain by domain, and those refused on purpose.

An allow list: a command named nowhere here (one a later Chromium adds, say) is refused, naming
it, until someone judges it and lists it. Each domain was judged for host files, egress around
the lease's route, resources beyond the lease's own browser, the relay itself, and the lease's
end; the reasoning is the comment above it. What is allowed may still be judged by its
parameters (`rules.py`: URLs, download folders, proxies, files, tracing backends, permissions).

The browser holds nothing but the lease (attachable leases are ISOLATION_BROWSER), so commands
that reach "every origin" or "the whole browser" (Storage, Network.clearBrowserCookies, Memory,
Browser.*Permission*) reach only the lease's own data. Heavy commands (heap snapshots, traces,
profiles, CPU throttling) spend the lease's own browser's memory and CPU, within its jail, and
end with the lease; what they send back passes the client's bounded send buffer.

`tests/unit/test_attach_allowed.py` checks this list against the protocol Playwright ships, and
`tests/attach/test_attach_protocol.py` against the protocol the real Chromium serves.
"""

from __future__ import annotations

_ALLOWED: dict[str, str] = {
    # Reads of the page's accessibility tree.
    "Accessibility": "disable enable getPartialAXTree getFullAXTree getRootAXNode "
    "getAXNodeAndAncestors getChildAXNodes queryAXTree",
    # Reads about the page's ads.
    "Ads": "getAdMetrics getAdScripts",
    # The page's animations.
    "Animation": "disable enable getCurrentTime getPlaybackRate releaseAnimations "
    "resolveAnimation seekAnimations setPaused setPlaybackRate setTiming",
    # Page issues; getEncodedResponse re-encodes a body the browser holds.
    "Audits": "getEncodedResponse disable enable checkFormsIssues",
    # Fills a page's form with data the client gives.
    "Autofill": "trigger setAddresses disable enable",
    # Records background-service events in the lease's own profile.
    "BackgroundService": "startObserving stopObserving setRecording clearEvents",
    # Simulated Bluetooth adapters and peripherals (no host device is used).
    "BluetoothEmulation": "enable setSimulatedCentralState disable "
    "simulatePreconnectedPeripheral simulateAdvertisement simulateGATTOperationResponse "
    "simulateCharacteristicOperationResponse simulateDescriptorOperationResponse addService "
    "removeService addCharacteristic removeCharacteristic addDescriptor removeDescriptor "
    "simulateGATTDisconnection",
    # The browser's window, version, permissions (device permissions are judged: rules.py),
    # downloads (their folder is rewritten: rules.py), histograms, a mock camera. Closing or
    # crashing it, its command line and browser commands are refused below.
    "Browser": "setPermission grantPermissions resetPermissions setDownloadBehavior "
    "cancelDownload getVersion addMockCamera getHistograms getHistogram getWindowBounds "
    "getWindowForTarget setWindowBounds setContentsSize setDockTile "
    "addPrivacySandboxEnrollmentOverride addPrivacySandboxCoordinatorKeyConfig "
    "getGlobalPrivacyControl setGlobalPrivacyControl",
    # The page's style sheets; local fonts are the host's font list, as any page may see.
    "CSS": "addRule collectClassNames createStyleSheet disable enable forcePseudoState "
    "forceStartingStyle getBackgroundColors getComputedStyleForNode resolveValues "
    "getLonghandProperties getInlineStylesForNode getAnimatedStylesForNode "
    "getMatchedStylesForNode getEnvironmentVariables getMediaQueries getPlatformFontsForNode "
    "getStyleSheetText getLayersForNode getLocationForSelector "
    "trackComputedStyleUpdatesForNode trackComputedStyleUpdates takeComputedStyleUpdates "
    "setEffectivePropertyValueForNode setPropertyRulePropertyName setKeyframeKey setMediaText "
    "setContainerQueryText setContainerQueryConditionText setSupportsText setNavigationText "
    "setScopeText setRuleSelector setStyleSheetText setStyleTexts startRuleUsageTracking "
    "stopRuleUsageTracking takeCoverageDelta setLocalFontsEnabled",
    # Origins' caches in the lease's own profile.
    "CacheStorage": "deleteCache deleteEntry requestCacheNames requestCachedResponse "
    "requestEntries",
    "Console": "clearMessages disable enable",
    "CrashReportContext": "getEntries",
    # The page's DOM. setFileInputFiles and getFileInfo (host paths) are refused below.
    "DOM": "collectClassNamesFromSubtree copyTo describeNode scrollIntoViewIfNeeded disable "
    "discardSearchResults enable focus getAttributes getBoxModel getContentQuads getDocument "
    "getFlattenedDocument getNodesForSubtreeByStyle getNodeForLocation getOuterHTML "
    "getRelayoutBoundary getSearchResults hideHighlight highlightNode highlightRect "
    "markUndoableState moveTo performSearch pushNodeByPathToFrontend "
    "pushNodesByBackendIdsToFrontend querySelector querySelectorAll getTopLayerElements "
    "getElementByRelation redo removeAttribute removeNode requestChildNodes requestNode "
    "resolveNode setAttributeValue setAttributesAsText setNodeStackTracesEnabled "
    "getNodeStackTraces getDetachedDomNodes setInspectedNode setNodeName setNodeValue "
    "setOuterHTML undo getFrameOwner getContainerForNode getQueryingDescendantsForContainer "
    "getAnchorElement forceShowPopover getImplicitAnchorCandidates forceShowInterest "
    "setTextMarker clearTextMarkers",
    # Breakpoints in the page's own scripts (a paused page is the lease's own).
    "DOMDebugger": "getEventListeners removeDOMBreakpoint removeEventListenerBreakpoint "
    "removeInstrumentationBreakpoint removeXHRBreakpoint setBreakOnCSPViolation "
    "setDOMBreakpoint setEventListenerBreakpoint setInstrumentationBreakpoint "
    "setXHRBreakpoint",
    "DOMSnapshot": "disable enable getSnapshot captureSnapshot",
    "DOMStorage": "clear disable enable getDOMStorageItems removeDOMStorageItem setDOMStorageItem",
    # Debugging, profiling and heap snapshots of the lease's own pages (Puppeteer's coverage
    # uses Debugger and Profiler; snapshots stream back through the bounded send buffer).
    "Debugger": "continueToLocation disable enable evaluateOnCallFrame getPossibleBreakpoints "
    "getScriptSource disassembleWasmModule nextWasmDisassemblyChunk getWasmBytecode "
    "getStackTrace pause pauseOnAsyncCall removeBreakpoint restartFrame resume searchInContent "
    "setAsyncCallStackDepth setBlackboxExecutionContexts setBlackboxPatterns "
    "setBlackboxedRanges setBreakpoint setInstrumentationBreakpoint setBreakpointByUrl "
    "setBreakpointOnFunctionCall setBreakpointsActive setPauseOnExceptions setReturnValue "
    "setScriptSource setSkipAllPauses setVariableValue stepInto stepOut stepOver",
    "DeviceOrientation": "clearDeviceOrientationOverride setDeviceOrientationOverride",
    # A virtual wallet (no host credential is used).
    "DigitalCredentials": "setVirtualWalletBehavior",
    # What the page is told about its device, clock, locale and CPU: all emulation.
    "Emulation": "canEmulate clearDeviceMetricsOverride clearGeolocationOverride "
    "resetPageScaleFactor setFocusEmulationEnabled setAutoDarkModeOverride "
    "setCPUThrottlingRate setDefaultBackgroundColorOverride setSafeAreaInsetsOverride "
    "setVirtualKeyboardGeometryOverride setDeviceMetricsOverride setDevicePostureOverride "
    "clearDevicePostureOverride setDisplayFeaturesOverride clearDisplayFeaturesOverride "
    "setScrollbarsHidden setDocumentCookieDisabled setEmitTouchEventsForMouse "
    "setEmulatedMedia setEmulatedVisionDeficiency setEmulatedOSTextScale "
    "setGeolocationOverride getOverriddenSensorInformation setSensorOverrideEnabled "
    "setSensorOverrideReadings setPressureSourceOverrideEnabled setPressureStateOverride "
    "setPressureDataOverride "
    "setIdleOverride clearIdleOverride setNavigatorOverrides setPageScaleFactor "
    "setScriptExecutionDisabled setTouchEmulationEnabled setVirtualTimePolicy "
    "setLocaleOverride setTimezoneOverride setVisibleSize setDisabledImageTypes "
    "setDataSaverOverride setHardwareConcurrencyOverride setCPUPerformanceOverride "
    "setUserAgentOverride setAutomationOverride setSmallViewportHeightDifferenceOverride "
    "getScreenInfos addScreen updateScreen removeScreen setPrimaryScreen",
    "EventBreakpoints": "setInstrumentationBreakpoint removeInstrumentationBreakpoint disable",
    # The FedCM dialog; openUrl opens the identity provider's own http(s) pages, via the route.
    "FedCm": "enable disable selectAccount clickDialogButton openUrl dismissDialog resetCooldown",
    # Request interception: a continued request still leaves through the route, and a URL it
    # is continued to is judged (rules.py); a fulfilled one never leaves.
    "Fetch": "disable enable failRequest fulfillRequest continueRequest continueWithAuth "
    "continueResponse getResponseBody takeResponseBodyAsStream",
    # An origin's private file system, in the lease's own profile (not the host's files).
    "FileSystem": "getDirectory",
    "FindInPage": "findFirst findNext findPrev stop",
    "HeadlessExperimental": "beginFrame disable enable",
    # Heap snapshots and sampling of the lease's own pages (a snapshot is streamed back in
    # chunks through the client's bounded send buffer).
    "HeapProfiler": "addInspectedHeapObject collectGarbage disable enable getHeapObjectId "
    "getObjectByHeapObjectId getSamplingProfile startSampling startTrackingHeapObjects "
    "stopSampling stopTrackingHeapObjects takeHeapSnapshot",
    # Streams the browser made (traces, PDFs, response bodies) by their opaque handles: no
    # command names a path.
    "IO": "close read resolveBlob",
    "IndexedDB": "clearObjectStore deleteDatabase deleteObjectStoreEntries disable enable "
    "requestData getMetadata requestDatabase requestDatabaseNames",
    # Synthetic input. A drag carrying files is refused (rules.py).
    "Input": "dispatchDragEvent dispatchKeyEvent insertText imeSetComposition "
    "dispatchMouseEvent dispatchTouchEvent cancelDragging emulateTouchFromMouseEvent "
    "setIgnoreInputEvents setInterceptDrags synthesizePinchGesture synthesizeScrollGesture "
    "synthesizeTapGesture",
    "Inspector": "disable enable",
    # Layer trees and their snapshots; loadSnapshot is refused below.
    "LayerTree": "compositingReasons disable enable makeSnapshot profileSnapshot "
    "releaseSnapshot replaySnapshot snapshotCommandLog",
    "Log": "clear disable enable startViolationsReport stopViolationsReport",
    "Media": "enable disable",
    # The lease's own browser's memory: counters, pressure, sampling.
    "Memory": "getDOMCounters getDOMCountersForLeakDetection prepareForLeakDetection "
    "forciblyPurgeJavaScriptMemory setPressureNotificationsSuppressed "
    "simulatePressureNotification startSampling stopSampling getAllTimeSamplingProfile "
    "getBrowserSamplingProfile getSamplingProfile",
    # The network as the page sees it: every request still leaves through the route (the
    # browser's --proxy-server). loadNetworkResource and an intercepted request continued to
    # another URL are judged (rules.py); cookies and caches are the lease's own browser's.
    "Network": "canClearBrowserCache canClearBrowserCookies canEmulateNetworkConditions "
    "clearBrowserCache clearBrowserCookies deleteCookies disable emulateNetworkConditions "
    "emulateNetworkConditionsByRule overrideNetworkState enable configureDurableMessages "
    "getAllCookies getCertificate getCookies getResponseBody getRequestPostData replayXHR "
    "searchInResponseBody setBlockedURLs setBypassServiceWorker setCacheDisabled setCookie "
    "setCookies setExtraHTTPHeaders setAttachDebugStack setUserAgentOverride "
    "streamResourceContent getSecurityIsolationStatus enableReportingApi "
    "enableDeviceBoundSessions deleteDeviceBoundSession fetchSchemefulSite "
    "loadNetworkResource setCookieControls setAcceptedEncodings "
    "clearAcceptedEncodingsOverride setRequestInterception continueInterceptedRequest "
    "getResponseBodyForInterception takeResponseBodyForInterceptionAsStream",
    # Highlights drawn over the page.
    "Overlay": "disable enable getHighlightObjectForTest getGridHighlightObjectsForTest "
    "getSourceOrderHighlightObjectForTest hideHighlight highlightFrame highlightNode "
    "highlightQuad highlightRect highlightSourceOrder setInspectMode setShowAdHighlights "
    "setPausedInDebuggerMessage setShowDebugBorders setShowFPSCounter setShowGridOverlays "
    "setShowFlexOverlays setShowScrollSnapOverlays setShowContainerQueryOverlays "
    "setShowInspectedElementAnchor setShowPaintRects setShowLayoutShiftRegions "
    "setShowScrollBottleneckRects setShowHitTestBorders setShowWebVitals "
    "setShowViewportSizeOnResize setShowHinge setShowDisplayCutout setShowIsolatedElements "
    "setShowWindowControlsOverlay",
    # The page: navigations are judged by scheme and the download folder is rewritten
    # (rules.py); screenshots, PDFs, screencasts and recordings come back as data or streams,
    # never as files. Page.crash ends a renderer of the lease's, not the browser.
    # addCompilationCache is refused below.
    "Page": "addScriptToEvaluateOnLoad addScriptToEvaluateOnNewDocument bringToFront "
    "captureScreenshot captureSnapshot clearDeviceMetricsOverride "
    "clearDeviceOrientationOverride clearGeolocationOverride createIsolatedWorld deleteCookie "
    "disable enable getAppManifest getInstallabilityErrors getManifestIcons getAppId "
    "getSubApps getSiblingSubApps getAdScriptAncestry getFrameTree getLayoutMetrics "
    "getNavigationHistory resetNavigationHistory getResourceContent getResourceTree "
    "handleJavaScriptDialog navigate navigateToHistoryEntry printToPDF reload "
    "removeScriptToEvaluateOnLoad removeScriptToEvaluateOnNewDocument screencastFrameAck "
    "searchInResource setAdBlockingEnabled setBypassCSP getPermissionsPolicyState "
    "getOriginTrials setDeviceMetricsOverride setDeviceOrientationOverride setFontFamilies "
    "setFontSizes setDocumentContent setDownloadBehavior setGeolocationOverride "
    "setLifecycleEventsEnabled setTouchEmulationEnabled startScreencast startScreenRecording "
    "stopScreenRecording stopLoading crash close setWebLifecycleState stopScreencast "
    "produceCompilationCache clearCompilationCache setSPCTransactionMode "
    "setRPHRegistrationMode generateTestReport waitForDebugger setInterceptFileChooserDialog "
    "setPrerenderingAllowed getAnnotatedPageContent",
    "Performance": "disable enable setTimeDomain getMetrics",
    "PerformanceTimeline": "enable",
    "Preload": "enable disable",
    "Profiler": "disable enable getBestEffortCoverage setSamplingInterval start "
    "startPreciseCoverage stop stopPreciseCoverage takePreciseCoverage",
    # Scripts in the lease's own pages.
    "Runtime": "awaitPromise callFunctionOn compileScript disable discardConsoleEntries enable "
    "evaluate getIsolateId getHeapUsage getProperties globalLexicalScopeNames queryObjects "
    "releaseObject releaseObjectGroup runIfWaitingForDebugger runScript "
    "setAsyncCallStackDepth setCustomObjectFormatterEnabled setMaxCallStackSizeToCapture "
    "terminateExecution addBinding removeBinding getExceptionDetails",
    "Schema": "getDomains",
    # Certificate errors of the client's own pages (Playwright's ignore_https_errors).
    "Security": "disable enable setIgnoreCertificateErrors handleCertificateError "
    "setOverrideCertificateErrors",
    # Service workers of the lease's own pages.
    "ServiceWorker": "deliverPushMessage disable dispatchSyncEvent dispatchPeriodicSyncEvent "
    "enable setForceUpdateOnPageLoad skipWaiting startWorker stopAllWorkers stopWorker "
    "unregister updateRegistration",
    # Simulated smart card readers (no host reader is used).
    "SmartCardEmulation": "enable disable reportEstablishContextResult "
    "reportReleaseContextResult reportListReadersResult reportGetStatusChangeResult "
    "reportBeginTransactionResult reportPlainResult reportConnectResult reportDataResult "
    "reportStatusResult reportError",
    # Every origin's storage, but only in the lease's own browser and profile (the browser
    # holds nothing else). overrideQuotaForOrigin is refused below.
    "Storage": "getStorageKeyForFrame getStorageKey clearDataForOrigin clearDataForStorageKey "
    "getCookies setCookies clearCookies getUsageAndQuota trackCacheStorageForOrigin "
    "trackCacheStorageForStorageKey trackIndexedDBForOrigin trackIndexedDBForStorageKey "
    "untrackCacheStorageForOrigin untrackCacheStorageForStorageKey untrackIndexedDBForOrigin "
    "untrackIndexedDBForStorageKey getTrustTokens clearTrustTokens "
    "getPrivateVerificationTokens getPrivateVerificationTokensIssuerConfigs "
    "clearPrivateVerificationTokens deletePrivateVerificationToken "
    "setPrivateVerificationTokensTracking setStorageBucketTracking deleteStorageBucket "
    "runBounceTrackingMitigations getInterestGroupDetails setInterestGroupTracking "
    "setInterestGroupAuctionTracking getSharedStorageMetadata getSharedStorageEntries "
    "setSharedStorageEntry deleteSharedStorageEntry clearSharedStorageEntries "
    "resetSharedStorageBudget setSharedStorageTracking getRelatedWebsiteSets "
    "setProtectedAudienceKAnonymity getAffectedUrlsForThirdPartyCookieMetadata",
    # Targets of the lease's own browser, on flat sessions the hub gives the client (flatten,
    # contexts' proxies and navigations are judged: rules.py). The relay's bypasses and
    # DevTools windows are refused below.
    "Target": "activateTarget attachToTarget attachToBrowserTarget closeTarget "
    "createBrowserContext getBrowserContexts createTarget detachFromTarget "
    "disposeBrowserContext getTargetInfo getTargets setAutoAttach autoAttachRelated "
    "setDiscoverTargets",
    # Traces come back as events or an IO stream, never a file; the system backend and
    # Perfetto configurations (which can name outputs) are refused (rules.py).
    "Tracing": "end getCategories getTrackEventDescriptor recordClockSyncMarker "
    "requestMemoryDump start",
    "WebAudio": "enable disable getRealtimeData",
    # Virtual authenticators (no host authenticator is used).
    "WebAuthn": "enable disable addVirtualAuthenticator setResponseOverrideBits "
    "removeVirtualAuthenticator addCredential getCredential getCredentials removeCredential "
    "clearCredentials setUserVerified setAutomaticPresenceSimulation setCredentialProperties",
    # Tools a page declares, invoked in that page.
    "WebMCP": "enable disable invokeTool cancelInvocation",
}
ALLOWED: frozenset[str] = frozenset(
    f"{domain}.{name}" for domain, names in _ALLOWED.items() for name in names.split()
)

# Refused on purpose: every command of a domain (later ones too), and why.
REFUSED_DOMAINS: dict[str, str] = {
    "Tethering": "it opens ports on the host",
    "Extensions": "extensions are not loaded into a leased browser",
    "PWA": "it installs apps and opens files in them",
    "Cast": "it streams to cast receivers on the network, around the route",
    "DeviceAccess": "it hands the host's devices to pages",
    "SystemInfo": "it describes the host (its GPU, processes and the browser's command line)",
    # Schema.getDomains still names these; their commands are gone from Chromium.
    "ApplicationCache": "the domain is gone from Chromium",
    "Database": "the domain is gone from Chromium",
}
# Refused on purpose: one command, and why.
REFUSED_METHODS: dict[str, str] = {
    "DOM.setFileInputFiles": "it hands host files to the page (send the file's bytes instead)",
    "DOM.getFileInfo": "it tells a host file's path",
    "Target.exposeDevToolsProtocol": "it lets a page drive the browser around this relay",
    "Target.setRemoteLocations": "it makes the browser connect to other hosts",
    "Target.sendMessageToTarget": "only flat sessions are relayed (flatten: true)",
    "Target.openDevTools": "no DevTools window in a leased browser",
    "Target.getDevToolsTarget": "no DevTools window in a leased browser",
    "Browser.executeBrowserCommand": "browser commands are not for leased browsers",
    "Browser.getBrowserCommandLine": "the command line is the broker's",
    "Browser.close": "Release ends a lease; disconnect instead",
    "Browser.crash": "Release ends a lease; disconnect instead",
    "Browser.crashGpuProcess": "Release ends a lease; disconnect instead",
    "Storage.overrideQuotaForOrigin": "it lifts the browser's own bound on a site's disk use",
    # V8 trusts a code cache it is given, and Skia a picture: neither parser is hardened
    # against a hostile client's bytes.
    "Page.addCompilationCache": "V8 does not check a code cache against hostile bytes",
    "LayerTree.loadSnapshot": "Skia does not check a picture against hostile bytes",
}
# Every domain judged, in part or whole.
DOMAINS: frozenset[str] = frozenset(_ALLOWED) | frozenset(REFUSED_DOMAINS)


def refusal(method: str) -> str | None:
    """Why `method` may not be sent at all (None: it is on the list, judged by its params)."""
    if method in ALLOWED:
        return None
    domain = method.partition(".")[0]
    if domain in REFUSED_DOMAINS:
        return f"{method} is refused: {REFUSED_DOMAINS[domain]}"
    if method in REFUSED_METHODS:
        return f"{method} is refused: {REFUSED_METHODS[method]}"
    return (
        f"{method} is not allowed on an attached lease (the relay passes only the commands it "
        "has judged)"
    )


def judged(method: str) -> bool:
    """`method` is allowed or refused on purpose (not merely unknown)."""
    return (
        method in ALLOWED
        or method in REFUSED_METHODS
        or method.partition(".")[0] in REFUSED_DOMAINS
    )
