"""Settings: defaults, then an optional TOML file, then BROKER_* environment variables, then flags."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.engines.base import RecyclePolicy
from broker.lease_table import Limits
from broker.options import EngineName, Isolation

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("broker_config_file", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="forbid")

    listen: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds")
    capacity: int = Field(8, ge=1, le=10_000, description="maximum concurrent leases")
    queue_limit: int = Field(64, ge=0, le=100_000, description="Acquire calls that may wait")
    warm_pool_size: int = Field(
        2, ge=0, le=1_000, description="ready sessions kept for the default engine and isolation"
    )
    engines: list[EngineName] = Field(
        default_factory=lambda: [EngineName.CHROMIUM], description="engines to enable"
    )
    default_engine: EngineName = EngineName.CHROMIUM
    default_isolation: Isolation = Isolation.CONTEXT
    default_ttl_s: float = Field(300.0, gt=0)
    max_ttl_s: float = Field(3600.0, gt=0)
    default_idle_timeout_s: float = Field(120.0, gt=0)
    max_idle_timeout_s: float = Field(3600.0, gt=0)
    ttl_jitter_fraction: float = Field(0.1, ge=0, le=0.5)
    max_jitter_s: float = Field(30.0, ge=0)
    default_step_timeout_s: float = Field(30.0, gt=0)
    max_run_timeout_s: float = Field(
        600.0, gt=0, description="bound for a Run sent without deadline"
    )
    max_steps_per_run: int = Field(100, ge=1, le=10_000)
    shutdown_grace_s: float = Field(10.0, ge=0, description="time running Runs get on SIGTERM")
    reconcile_interval_s: float = Field(30.0, gt=0)
    tombstone_ttl_s: float = Field(600.0, gt=0, description="how long a late Release is answered")
    cleanup_timeout_s: float = Field(10.0, gt=0)
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024)
    recycle_after_leases: int = Field(
        500,
        ge=0,
        description="replace a shared browser after this many sessions were opened in it; 0: never",
    )
    recycle_above_mb: float = Field(
        0.0,
        ge=0,
        description="replace a shared browser whose processes' PSS exceeds this (MiB); 0: never",
    )
    recycle_check_interval_s: float = Field(
        15.0, gt=0, description="how often shared browsers are measured against recycle_above_mb"
    )
    chromium_path: str | None = None
    chromium_args: list[str] = Field(default_factory=list)
    firefox_path: str | None = None
    headless: bool = True
    prometheus_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus metrics on 127.0.0.1:PORT/metrics"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_ttl_s > self.max_ttl_s:
            raise ValueError("default_ttl_s must not exceed max_ttl_s")
        if self.default_idle_timeout_s > self.max_idle_timeout_s:
            raise ValueError("default_idle_timeout_s must not exceed max_idle_timeout_s")
        if self.default_engine not in self.engines:
            raise ValueError(f"default_engine {self.default_engine.value} is not in engines")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def limits(self) -> Limits:
        return Limits(
            capacity=self.capacity,
            queue_limit=self.queue_limit,
            default_ttl_s=self.default_ttl_s,
            max_ttl_s=self.max_ttl_s,
            default_idle_timeout_s=self.default_idle_timeout_s,
            max_idle_timeout_s=self.max_idle_timeout_s,
            ttl_jitter_fraction=self.ttl_jitter_fraction,
            max_jitter_s=self.max_jitter_s,
            tombstone_ttl_s=self.tombstone_ttl_s,
            cleanup_timeout_s=self.cleanup_timeout_s,
        )

    def recycle_policy(self) -> RecyclePolicy:
        return RecyclePolicy(
            after_sessions=self.recycle_after_leases, above_mb=self.recycle_above_mb
        )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from all sources; `overrides` (command-line flags) win over everything else."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE.reset(token)
