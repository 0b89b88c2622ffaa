"""Attached clients: a lease's browser driven over its own protocol socket (CDP for now).

The broker launches an attachable lease's Chromium with `--remote-debugging-pipe`, so no
DevTools port is ever open on the host, and every message to and from the browser passes
through one hub (`hub`): the broker's own Playwright (trusted, on a one-shot loopback endpoint)
and the tenant's clients (filtered by `rules`, bounded by `bounds`) share the pipe, each on
browser-target sessions of its own. `server` is the WebSocket edge tenants connect to.
"""
