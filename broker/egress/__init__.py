"""What pages may reach: the egress policy, and the proxy that enforces it for every request.

Each browser session talks to the network only through a route of its own, a small HTTP proxy on
loopback. The route resolves every destination itself and connects only to an address the policy
allows, so redirects, subresources, iframes, fetch/XHR, WebSockets, popups and workers are all
held to the same rules, whatever drives the page.
"""
