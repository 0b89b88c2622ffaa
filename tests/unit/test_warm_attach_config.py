"""Attachable warm pools in the settings: `attach = "cdp"` on a chromium/browser pool,
`"playwright"` on a chromium or firefox one, `"bidi"` on a firefox one, beside the plain pools;
any other pairing is refused naming the pool and the field, and the daemon leaves such a pool out
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
    ("pool", "refusal"),
    [
        ({**CDP_POOL, "isolation": "context"}, "isolation must be browser"),
        ({**CDP_POOL, "engine": "firefox"}, "engine firefox has no attach = cdp"),
        ({**CDP_POOL, "attach": "bidi"}, "engine chromium has no attach = bidi"),
        ({**CDP_POOL, "attach": "playwright", "engine": "camoufox"}, "engine camoufox has no"),
        ({**CDP_POOL, "attach": "bidi", "engine": "camoufox"}, "bidi pools are firefox"),
        ({**CDP_POOL, "attach": "playwright", "isolation": "context"}, "isolation must be"),
    ],
)
def test_an_impossible_attachable_pool_is_refused_naming_the_field(
    pool: dict[str, object], refusal: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        load_settings(engines=["chromium", "firefox", "camoufox"], warm_pools=[pool])


@pytest.mark.parametrize(
    "spec",
    ["chromium/browser+playwright=1", "firefox/browser+playwright=1:2", "firefox/browser+bidi=1"],
)
def test_playwright_and_bidi_pools_are_accepted(spec: str) -> None:
    (pool,) = load_settings(
        engines=["chromium", "firefox"], warm_pool_size=0, warm_pools=[_warm_pool(spec)]
    ).pool_configs()
    assert pool.pair == spec.partition("=")[0] and pool.attach is not None


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
    served = load_settings(warm_pool_size=0, warm_pools=[{**CDP_POOL, "attach": "playwright"}])
    assert [pool.name for pool in Broker(served).pools] == ["chromium/browser+playwright"]
    assert not Broker(served, engines={EngineName.CHROMIUM: FakeEngine()}).pools


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


def test_a_pool_whose_engine_serves_no_clients_of_its_protocol_is_left_out_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bidi = {**CDP_POOL, "engine": "firefox", "attach": "bidi"}
    settings = load_settings(engines=["chromium", "firefox"], warm_pool_size=0, warm_pools=[bidi])
    with caplog.at_level("WARNING", logger="broker.app"):
        assert not Broker(settings, engines={EngineName.FIREFOX: FakeEngine()}).pools
    assert "firefox/browser+bidi left out: its engine serves no bidi clients" in caplog.text
