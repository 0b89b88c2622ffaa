"""Attachable warm pools in the settings: `attach = "cdp"` on a chromium/browser pool, beside the
plain pools; anything else is refused naming the pool, and the daemon leaves such a pool out
when attached clients are off. The metrics tell such a pool from the plain one of its pair."""

from __future__ import annotations

import pytest
from opentelemetry.metrics import CallbackOptions
from pydantic import ValidationError

from broker.daemon.cli import _warm_pool
from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.observe.lease_telemetry import LeaseTelemetry
from broker.runtime.settings import load_settings
from broker.runtime.wiring import Broker
from broker.warm.pool import PoolStatus
from tests.fakes import FakeEngine

CDP_POOL = {"engine": "chromium", "isolation": "browser", "size": 1, "attach": "cdp"}


def test_an_attachable_pool_sits_beside_the_plain_ones() -> None:
    plain = {"engine": "chromium", "isolation": "browser", "size": 2}
    settings = load_settings(warm_pools=[plain, CDP_POOL])
    pools = {p.pair: (p.size, p.attach) for p in settings.pool_configs()}
    assert pools == {
        "chromium/context": (2, None),  # the default pair, warm_pool_size
        "chromium/browser": (2, None),
        "chromium/browser+cdp": (1, AttachProtocol.CDP),
    }
    flags = [_warm_pool("chromium/browser+cdp=1:3")]
    (pool,) = load_settings(warm_pool_size=0, warm_pools=flags).pool_configs()
    assert (pool.pair, pool.size, pool.ceiling) == ("chromium/browser+cdp", 1, 3)


@pytest.mark.parametrize(
    "pool",
    [
        {**CDP_POOL, "isolation": "context"},
        {**CDP_POOL, "engine": "firefox"},
        {**CDP_POOL, "attach": "bidi"},
    ],
)
def test_attachable_pools_are_chromium_browser_cdp(pool: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=r"attachable pools are chromium/browser"):
        load_settings(engines=["chromium", "firefox"], warm_pools=[pool])


@pytest.mark.parametrize("attach", ["", "CDP ", "ws", "none"])
def test_an_unknown_attach_protocol_is_refused(attach: str) -> None:
    with pytest.raises(ValidationError, match="attach"):
        load_settings(warm_pools=[{**CDP_POOL, "attach": attach}])


def test_one_attachable_pool_per_pair() -> None:
    with pytest.raises(ValidationError, match="one entry per engine and isolation"):
        load_settings(warm_pools=[CDP_POOL, {**CDP_POOL, "size": 2}])


def test_with_attached_clients_off_the_pool_is_left_out() -> None:
    on = load_settings(warm_pool_size=0, warm_pools=[CDP_POOL])
    assert [pool.name for pool in Broker(on).pools] == ["chromium/browser+cdp"]
    off = load_settings(warm_pool_size=0, warm_pools=[CDP_POOL], attach_listen="")
    assert not Broker(off).pools
    # An engine that serves no attached clients has no attachable pool either.
    assert not Broker(on, engines={EngineName.CHROMIUM: FakeEngine()}).pools


def test_metrics_tell_an_attachable_pool_from_the_plain_one() -> None:
    statuses = [
        PoolStatus(EngineName.CHROMIUM, Isolation.BROWSER, 2, 2, 2, 2, 0, 5, 1),
        PoolStatus(EngineName.CHROMIUM, Isolation.BROWSER, 1, 1, 1, 1, 0, 3, 0, AttachProtocol.CDP),
    ]
    telemetry = LeaseTelemetry(pools=lambda: statuses)
    observed = list(telemetry._observe_pools("hits")(CallbackOptions()))
    assert [(o.value, dict(o.attributes or {})) for o in observed] == [
        (5, {"engine": "chromium", "isolation": "browser"}),
        (3, {"engine": "chromium", "isolation": "browser", "attach": "cdp"}),
    ]
    assert [s.name for s in statuses] == ["chromium/browser", "chromium/browser+cdp"]
