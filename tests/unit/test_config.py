"""Settings precedence (defaults < file < environment < flags) and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from broker.daemon.cli import _warm_pool, main
from broker.model.options import EngineName, Isolation
from broker.runtime.settings import load_settings


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('capacity = 3\nqueue_limit = 7\nlisten = "127.0.0.1:6000"\n')
    monkeypatch.setenv("BROKER_QUEUE_LIMIT", "9")
    settings = load_settings(config, listen="127.0.0.1:7000")
    assert (settings.capacity, settings.queue_limit, settings.listen) == (3, 9, "127.0.0.1:7000")
    assert settings.warm_pool_size == 2  # default


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_CAPACITY", "0")
    with pytest.raises(ValidationError, match="capacity"):
        load_settings()


def test_inconsistent_ttls_are_refused() -> None:
    with pytest.raises(ValidationError, match="default_ttl_s"):
        load_settings(default_ttl_s=100, max_ttl_s=10)


def test_cli_reports_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "nonsense"]) == 2
    assert "listen" in capsys.readouterr().err


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.toml")


# ----------------------------------------------------------------------------- warm pools

POOLS_TOML = """
engines = ["chromium", "firefox", "camoufox"]
[[warm_pools]]
engine = "firefox"
isolation = "browser"
size = 2
max_size = 8
max_age_s = 600
[[warm_pools]]
engine = "camoufox"
isolation = "browser"
size = 1
"""


def test_warm_pools_from_file_env_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(POOLS_TOML)
    settings = load_settings(config)
    pools = {p.pair: (p.size, p.ceiling, p.max_age_s) for p in settings.pool_configs()}
    # The default pair keeps warm_pool_size (2) beside the listed pools.
    assert pools == {
        "chromium/context": (2, 2, 0.0),
        "firefox/browser": (2, 8, 600.0),
        "camoufox/browser": (1, 1, 0.0),
    }
    monkeypatch.setenv(
        "BROKER_WARM_POOLS", '[{"engine": "firefox", "isolation": "context", "size": 3}]'
    )
    monkeypatch.setenv("BROKER_MEMORY_BUDGET_MB", "4096")
    monkeypatch.setenv("BROKER_SESSION_MEMORY_MB", '{"firefox/context": 90}')
    settings = load_settings(config)
    assert [p.pair for p in settings.pool_configs()] == ["chromium/context", "firefox/context"]
    assert settings.memory_budget_mb == 4096
    assert settings.session_memory(EngineName.FIREFOX, Isolation.CONTEXT) == 90
    assert settings.session_memory(EngineName.FIREFOX, Isolation.BROWSER) == 330  # a default
    flags = [_warm_pool("chromium/browser=1:4"), _warm_pool("chromium=0")]
    settings = load_settings(config, warm_pools=flags)
    sized = {p.pair: (p.size, p.ceiling) for p in settings.pool_configs()}
    assert sized == {"chromium/browser": (1, 4)}  # chromium/context=0: no pool at all


def test_warm_pool_size_still_sizes_the_default_pair() -> None:
    settings = load_settings(warm_pool_size=5)
    (pool,) = settings.pool_configs()
    assert (pool.engine, pool.isolation, pool.size, pool.ceiling) == (
        EngineName.CHROMIUM,
        Isolation.CONTEXT,
        5,
        5,
    )
    assert not load_settings(warm_pool_size=0).pool_configs()


BAD_POOLS = {
    "engine not enabled": ([{"engine": "firefox", "size": 1}], "firefox not enabled"),
    "twice": (
        [{"engine": "chromium", "isolation": "browser", "size": 1}] * 2,
        "one entry per engine and isolation",
    ),
    "ceiling below floor": ([{"engine": "chromium", "size": 3, "max_size": 2}], "max_size"),
    "negative": ([{"engine": "chromium", "size": -1}], "size"),
    "unknown key": ([{"engine": "chromium", "size": 1, "sized": 2}], "sized"),
    "unknown isolation": ([{"engine": "chromium", "isolation": "vm", "size": 1}], "isolation"),
}


@pytest.mark.parametrize(("pools", "message"), BAD_POOLS.values(), ids=BAD_POOLS.keys())
def test_bad_warm_pools_are_refused_clearly(pools: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(warm_pools=pools)


def test_warm_pool_size_and_a_default_pair_entry_conflict() -> None:
    with pytest.raises(ValidationError, match="set one"):
        load_settings(warm_pool_size=3, warm_pools=[{"engine": "chromium", "size": 1}])
    load_settings(warm_pools=[{"engine": "chromium", "size": 1}])  # alone: fine


def test_bad_memory_estimates_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown key 'webkit/context'"):
        load_settings(session_memory_mb={"webkit/context": 10})
    with pytest.raises(ValidationError, match="above 0"):
        load_settings(session_memory_mb={"chromium/context": 0})


def test_cli_warm_pool_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert _warm_pool("firefox/browser=2:8") == {
        "engine": "firefox",
        "isolation": "browser",
        "size": "2",
        "max_size": "8",
    }
    assert main(["serve", "--warm-pool", "firefox/browser=2"]) == 2  # firefox is not enabled
    assert "warm pool firefox/browser" in capsys.readouterr().err


def test_cluster_mode_is_off_by_default_and_set_by_url() -> None:
    assert load_settings().cluster_url is None
    settings = load_settings(
        cluster_url="redis://10.0.0.5:6379/0", cluster_advertise="10.0.0.7:50051"
    )
    assert settings.advertised("127.0.0.1:50051") == "10.0.0.7:50051"
    assert load_settings(cluster_url="redis://r").advertised("127.0.0.1:50051") == "127.0.0.1:50051"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cluster_url": "http://redis:6379"}, "is not a redis://"),
        (
            {"cluster_url": "redis://r", "cluster_heartbeat_s": 2, "cluster_dead_after_s": 3},
            "at least twice cluster_heartbeat_s",
        ),
        (
            {"cluster_url": "redis://r", "cluster_advertise": "0.0.0.0:50051"},
            "not an address other nodes can dial",
        ),
        (
            {
                "cluster_url": "redis://r",
                "tenants": [{"name": "a", "token_sha256": ["00" * 32]}],
            },
            "cluster_secret is required",
        ),
        (
            {"cluster_url": "redis://r", "cluster_client_cert_file": "/tmp/node.pem"},
            "cluster_client_cert_file and cluster_client_key_file go together",
        ),
    ],
    ids=["not-redis", "dead-too-soon", "unroutable-advertise", "tenants-no-secret", "cert-no-key"],
)
def test_bad_cluster_settings_are_refused_clearly(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(**overrides)


def test_cli_cluster_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--cluster", "ftp://nope"]) == 2
    assert "cluster_url" in capsys.readouterr().err


def test_metrics_stay_on_loopback_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics endpoint binds 127.0.0.1 by default; a pod's scraper needs prometheus_host."""
    assert load_settings(prometheus_port=9464).prometheus_host == "127.0.0.1"
    monkeypatch.setenv("BROKER_PROMETHEUS_HOST", "0.0.0.0")
    assert load_settings(prometheus_port=9464).prometheus_host == "0.0.0.0"
