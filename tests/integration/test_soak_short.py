"""A short run of the chaos soak (`python -m bench.soak` runs the long one)."""

from __future__ import annotations

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.browser


@pytest.mark.timeout(900)
def test_short_chaos_soak_leaves_nothing_behind() -> None:
    report = run_soak(cycles=150, clients=6, seed=20261126, recycle_after=40)
    print(report.table())
    assert not report.unexpected, report.unexpected[:10]
    figures = report.figures
    assert figures["leases not released exactly once"] == 0
    assert figures["leaked leases"] == 0
    assert figures["leaked contexts"] == 0 and figures["leaked pages"] == 0
    assert figures["leaked browser processes"] == 0
    assert figures["drift repairs"] == 0
    assert figures["leases granted"] > 50  # the soak really lent browsers
    assert figures["browsers recycled"] >= 1  # and recycled them under chaos
