"""Signatures on the calls one node sends another (docs/cluster.md#security).

A forwarded call is signed with HMAC-SHA256 under the cluster's current secret, over what it
is (method, lease, tenant, hop, placement, a digest of the request bytes), when it was signed
and a random nonce. The receiving node accepts the current secret and the previous ones (a
rotation window), a signature at most `MAX_SKEW_S` old or early, and each nonce once (remembered
until its signing time alone refuses it): the secret itself never travels, and a call seen on the
wire can neither be replayed nor changed.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence

from broker.errors import Unauthenticated, Unavailable

MAX_SKEW_S = 30.0  # the nodes' clocks must agree this closely (NTP does far better)
MAX_NONCES = 200_000  # nonces remembered at once: forwarded calls in a 2 * MAX_SKEW_S window
_CONTEXT = "browser-broker/forwarded-call/v1"


class CallSigner:
    def __init__(
        self,
        current: str,
        previous: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not current:
            raise ValueError("cluster_secret: must not be empty")
        self._current = current.encode()
        self._accepted = [self._current, *(p.encode() for p in previous if p)]
        self._clock = clock
        self._seen: set[str] = set()
        self._expiry: list[tuple[int, str]] = []  # heap: (when it may be forgotten (ms), nonce)

    def sign(self, fields: Sequence[str]) -> tuple[int, str, str]:
        """(signed_at_ms, nonce, signature hex) for a call with these fields."""
        signed_at = int(self._clock() * 1000)
        nonce = secrets.token_hex(16)
        return signed_at, nonce, _mac(self._current, fields, signed_at, nonce)

    def check(self, fields: Sequence[str], signed_at_ms: int, nonce: str, signature: str) -> None:
        """Unauthenticated unless a secret in the window signed exactly this call, recently,
        and its nonce was not seen before."""
        valid = False
        for key in self._accepted:  # (every key, no early exit)
            if hmac.compare_digest(_mac(key, fields, signed_at_ms, nonce), signature):
                valid = True
        if not valid:
            raise Unauthenticated("the signature of the forwarded call is not valid")
        now = int(self._clock() * 1000)
        skew_ms = int(MAX_SKEW_S * 1000)
        if abs(now - signed_at_ms) > skew_ms:
            raise Unauthenticated(
                f"the forwarded call was signed {(now - signed_at_ms) / 1000:.0f} s ago, beyond "
                f"the {MAX_SKEW_S:.0f} s the nodes' clocks may differ"
            )
        self._forget(now)
        if nonce in self._seen:
            raise Unauthenticated("the forwarded call was replayed (its nonce was seen before)")
        if len(self._seen) >= MAX_NONCES:
            raise Unavailable("too many forwarded calls in the replay window; retry shortly")
        # Remembered until its signing time alone refuses it; forgotten in that order (a
        # heap, not arrival order: the signers' clocks differ, and an entry must not wait
        # behind an earlier arrival that expires later).
        self._seen.add(nonce)
        heapq.heappush(self._expiry, (signed_at_ms + skew_ms, nonce))

    def _forget(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            self._seen.discard(heapq.heappop(self._expiry)[1])


def request_digest(serialized: bytes) -> str:
    return hashlib.sha256(serialized).hexdigest()


def _mac(key: bytes, fields: Sequence[str], signed_at_ms: int, nonce: str) -> str:
    message = json.dumps([_CONTEXT, *fields, signed_at_ms, nonce], separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
