"""Settings precedence (defaults < file < environment < flags) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.cli import main
from broker.config import load_settings


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
