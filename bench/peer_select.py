"""Which of bench.peers' systems a run measures (`--only`): a key per row, and groups of them."""

from __future__ import annotations

from bench.peer_warm_attach import WARM_PROTOCOLS

WARM_KEYS = tuple(f"warm-attach-{protocol}" for protocol in WARM_PROTOCOLS)
# Every row, in the order a run lists them.
KEYS = (
    "sdk",
    "stub",
    "attach-cdp",
    "attach-playwright",
    *WARM_KEYS,
    "playwright",
    "playwright-warm-page",
    "run-server",
    "grid",
    "browserless-function",
    "browserless-cdp",
)
# The connect-per-session peers an attach cycle is compared with.
CONNECT_PEERS = ("run-server", "browserless-cdp")
GROUPS = {
    "all": KEYS,
    "attach": ("attach-cdp", "attach-playwright", *WARM_KEYS, *CONNECT_PEERS),
    "warm-attach": (*WARM_KEYS, *CONNECT_PEERS),
}
# The rows served by the run's shared broker (warm pool of 4); the warm attach rows start their own.
MAIN_BROKER = frozenset({"sdk", "stub", "attach-cdp", "attach-playwright"})


def parse_only(text: str) -> list[str]:
    """`--only`'s comma-separated keys and groups, as the keys they name, in KEYS order."""
    chosen: set[str] = set()
    for word in (w.strip() for w in text.split(",")):
        if word in GROUPS:
            chosen.update(GROUPS[word])
        elif word in KEYS:
            chosen.add(word)
        else:
            known = ", ".join([*GROUPS, *KEYS])
            raise ValueError(f"--only: no system or group {word[:40]!r} (known: {known})")
    return [key for key in KEYS if key in chosen]
