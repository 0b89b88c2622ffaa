"""How a lease's context is made and shaped: its Playwright options, the requests it blocks,
the media its pages emulate."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import BrowserContext, Page, Route

from broker.egress.proxy import EgressRoute
from broker.engines.playwright import trace_sweep
from broker.model.options import ContextOptions
from broker.model.steps.globs import matches_any, url_glob


def context_kwargs(options: ContextOptions, egress: EgressRoute | None) -> dict[str, Any]:
    # Downloads are accepted only to be captured by a download step (and deleted once read);
    # any other is cancelled as it starts (LeasePages), so a page cannot fill the host's disk.
    kwargs: dict[str, Any] = {"accept_downloads": True}
    if options.viewport is not None:
        kwargs["viewport"] = {"width": options.viewport.width, "height": options.viewport.height}
    if options.user_agent:
        kwargs["user_agent"] = options.user_agent
    if options.locale:
        kwargs["locale"] = options.locale
    if options.timezone_id:
        kwargs["timezone_id"] = options.timezone_id
    if options.extra_http_headers:
        kwargs["extra_http_headers"] = dict(options.extra_http_headers)
    if options.proxy is not None:
        proxy = {"server": options.proxy.server}
        for key in ("username", "password", "bypass"):
            if getattr(options.proxy, key):
                proxy[key] = getattr(options.proxy, key)
        kwargs["proxy"] = proxy
    elif egress is not None:
        kwargs["proxy"] = {"server": egress.server_url}
    if options.ignore_https_errors:
        kwargs["ignore_https_errors"] = True
    if options.java_script_disabled:
        kwargs["java_script_enabled"] = False
    if options.storage_state:
        kwargs["storage_state"] = json.loads(options.storage_state)
    if options.color_scheme:
        kwargs["color_scheme"] = options.color_scheme
    if options.geolocation is not None:
        g = options.geolocation
        kwargs["geolocation"] = {
            "latitude": g.latitude,
            "longitude": g.longitude,
            "accuracy": g.accuracy,
        }
    if options.permissions:
        kwargs["permissions"] = list(options.permissions)
    return kwargs


async def open_first_page(context: BrowserContext, options: ContextOptions) -> Page:
    """Install the lease's request blocking on the context, then open its first page."""
    if options.block_resource_types or options.block_url_patterns:
        # Every URL, by a predicate: Playwright matches a glob with a backtracking regex.
        await context.route(_every_url, _blocker(options))
    if options.trace:
        # Named, and known to the sweep before it records (see trace_sweep).
        name = await trace_sweep.starting(context)
        await context.tracing.start(name=name, screenshots=True, snapshots=True)
    return await context.new_page()


async def shape_page(page: Page, options: ContextOptions) -> None:
    """What each page of the lease emulates (popups included): the CSS media type. Called once
    the page's interrupter is attached: on Chromium, the emulation of the CDP session attached
    last is the one that lasts across navigations (Playwright's own is lost once another
    session is attached), so it is set through a session of its own, attached after."""
    if not options.media:
        return
    browser = page.context.browser
    if browser is not None and browser.browser_type.name == "chromium":
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Emulation.setEmulatedMedia", {"media": options.media})
    else:
        await page.emulate_media(media=options.media)  # type: ignore[arg-type]


def _every_url(url: str) -> bool:
    return True


def _blocker(options: ContextOptions) -> Any:
    kinds = frozenset(options.block_resource_types)
    patterns = [url_glob(p) for p in options.block_url_patterns]

    async def handle(route: Route) -> None:
        request = route.request
        if request.resource_type in kinds or await matches_any(patterns, request.url):
            await route.abort("blockedbyclient")
        else:
            await route.fallback()

    return handle
