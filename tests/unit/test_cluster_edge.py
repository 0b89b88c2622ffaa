"""How a Release on the owner is answered once the cluster's record has spoken."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.cluster.records import Finished, from_us, to_us
from broker.cluster.routing import agreed
from broker.leases.lease import ReleaseOutcome, ReleaseReason

AT = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
LOCAL = ReleaseOutcome(ReleaseReason.CLIENT_RELEASE, AT, True)


def test_microseconds_survive_the_round_trip() -> None:
    assert from_us(to_us(AT)) == AT


def test_this_node_s_own_outcome_stands_whoever_wrote_it() -> None:
    assert agreed(LOCAL, None) is LOCAL  # the store is away: answered locally
    assert agreed(LOCAL, Finished(True, "client_release", to_us(AT))) is LOCAL
    # The heartbeat's journal wrote it a moment before this call did: still this call's outcome.
    assert agreed(LOCAL, Finished(False, "client_release", to_us(AT))) is LOCAL


def test_an_outcome_the_cluster_recorded_first_is_the_answer() -> None:
    lost = agreed(LOCAL, Finished(False, "node_lost", to_us(AT) - 5_000_000))
    assert lost.reason is ReleaseReason.NODE_LOST and not lost.released_now
    assert lost.released_at == from_us(to_us(AT) - 5_000_000)
