"""A lease grant's repr (a log line, a traceback) shows neither of its secrets."""

from __future__ import annotations

from datetime import datetime

from browserbroker._requests import LeaseGrant
from browserbroker.models import Engine, Isolation


def test_the_grants_repr_names_the_lease_but_not_its_tokens() -> None:
    grant = LeaseGrant(
        lease_id="lease-abc",
        token="lease-token-secret",
        expires_at=datetime(2030, 1, 1),
        engine=Engine(1),
        isolation=Isolation(1),
        ttl_s=60.0,
        idle_timeout_s=30.0,
        warm=False,
        queue_wait_s=0.0,
        connect_url="ws://127.0.0.1:1/cdp/lease-abc?token=attach-token-secret",
    )
    shown = repr(grant) + str(grant)
    assert "lease-abc" in shown
    assert "lease-token-secret" not in shown and "attach-token-secret" not in shown
    assert grant.token == "lease-token-secret" and "attach-token-secret" in grant.connect_url
