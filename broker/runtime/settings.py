"""Settings: defaults, then an optional TOML file, then BROKER_* environment variables, then flags."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.cluster.settings import ClusterSettings
from broker.common.hosts import host_of, is_loopback_host
from broker.egress.policy import EgressRules, egress_list, parse_cidr
from broker.engines.base import RecyclePolicy
from broker.leases.limits import Limits
from broker.leases.tenants import Tenant
from broker.model.options import EngineName, Isolation
from broker.runtime.attach_settings import AttachSettings
from broker.runtime.drain_settings import DrainSettings
from broker.runtime.metrics_settings import MetricsSettings
from broker.runtime.warm_settings import DEFAULT_SESSION_MEMORY_MB, WarmPoolConfig

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("broker_config_file", default=None)


_HEX_DIGEST = r"^[0-9a-f]{64}$"


class EgressLists(BaseModel):
    """Hosts (`example.com`, or `.example.com` for it and below) and CIDRs, allowed or denied."""

    model_config = ConfigDict(extra="forbid")

    egress_allow_hosts: list[str] = Field(default_factory=list)
    egress_allow_cidrs: list[str] = Field(default_factory=list)
    egress_deny_hosts: list[str] = Field(default_factory=list)
    egress_deny_cidrs: list[str] = Field(default_factory=list)
    egress_allow_listed_only: bool = Field(
        False, description="deny every destination the allow lists do not name"
    )
    egress_allow_loopback: bool = Field(
        False,
        description="let the allow lists open loopback and this host's own addresses (they "
        "still have to name them; the broker's own ports stay closed)",
    )
    egress_allow_metadata: bool = Field(
        False,
        description="let the allow lists open link-local and cloud metadata addresses (they "
        "still have to name them)",
    )

    @field_validator(
        "egress_allow_hosts", "egress_deny_hosts", "egress_allow_cidrs", "egress_deny_cidrs"
    )
    @classmethod
    def _lists(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return egress_list(str(info.field_name), value)  # hosts as the route spells them

    def egress_rules(self) -> EgressRules:
        return EgressRules(
            allow_hosts=tuple(self.egress_allow_hosts),
            allow_cidrs=tuple(parse_cidr(c) for c in self.egress_allow_cidrs),
            deny_hosts=tuple(self.egress_deny_hosts),
            deny_cidrs=tuple(parse_cidr(c) for c in self.egress_deny_cidrs),
            allow_listed_only=self.egress_allow_listed_only,
            allow_loopback=self.egress_allow_loopback,
            allow_metadata=self.egress_allow_metadata,
        )


class TenantConfig(EgressLists):
    """One tenant: its credentials, what it may use, and its quotas."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    token_sha256: list[str] = Field(
        default_factory=list,
        description="SHA-256 (hex) of each bearer token the tenant may present",
    )
    client_cert_names: list[str] = Field(
        default_factory=list,
        description="client certificate names (CN or DNS SAN) that authenticate as this tenant",
    )
    admin: bool = False
    max_leases: int | None = Field(None, ge=0)
    max_queued: int | None = Field(None, ge=0)
    engines: list[EngineName] | None = None
    isolations: list[Isolation] | None = None

    @field_validator("token_sha256")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        import re

        for digest in value:
            if not re.fullmatch(_HEX_DIGEST, digest):
                raise ValueError("token_sha256 entries are 64 lowercase hex digits")
        return value

    def tenant(self) -> Tenant:
        return Tenant(
            name=self.name,
            admin=self.admin,
            max_leases=self.max_leases,
            max_queued=self.max_queued,
            engines=frozenset(self.engines) if self.engines is not None else None,
            isolations=frozenset(self.isolations) if self.isolations is not None else None,
            egress=self.egress_rules(),
        )


class Settings(
    EgressLists, ClusterSettings, DrainSettings, AttachSettings, MetricsSettings, BaseSettings
):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="forbid")

    listen: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds")
    capacity: int = Field(8, ge=1, le=10_000, description="maximum concurrent leases")
    queue_limit: int = Field(64, ge=0, le=100_000, description="Acquire calls that may wait")
    warm_pool_size: int = Field(
        2, ge=0, le=1_000, description="ready sessions kept for the default engine and isolation"
    )
    warm_pools: list[WarmPoolConfig] = Field(
        default_factory=list,
        description="warm pools per engine and isolation (the default pair's overrides "
        "warm_pool_size)",
    )
    warm_launches_per_engine: int = Field(
        1, ge=1, le=16, description="warm sessions one engine opens at once in the background"
    )
    warm_demand_window_s: float = Field(
        300.0, gt=0, description="how far back a pool with max_size looks for its peak demand"
    )
    memory_budget_mb: float = Field(
        0.0, ge=0, description="estimated memory of leases and warm sessions, MiB; 0: no budget"
    )
    session_memory_mb: dict[str, float] = Field(
        default_factory=dict,
        description="estimated MiB of one session per engine/isolation (overrides the "
        "defaults), for memory_budget_mb",
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
    reconcile_interval_s: float = Field(30.0, gt=0)
    tombstone_ttl_s: float = Field(600.0, gt=0, description="how long a late Release is answered")
    cleanup_timeout_s: float = Field(10.0, gt=0)
    session_open_timeout_s: float = Field(
        60.0, gt=0, description="bound on opening a session when the caller's deadline is longer"
    )
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    # ------------------------------------------------------------ security (docs/security.md)
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain; enables TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed"
    )
    tenants: list[TenantConfig] = Field(
        default_factory=list, description="authenticated tenants; empty: authentication off"
    )
    allow_insecure_remote: bool = Field(
        False,
        description="listen beyond loopback without both TLS and tenants (not recommended)",
    )
    egress_enabled: bool = Field(
        True, description="send every page's traffic through the egress policy"
    )
    allow_file_urls: bool = Field(False, description="let goto open file: URLs")
    allow_client_proxies: bool = Field(
        False, description="let leases set context.proxy (the proxy host must pass the policy)"
    )
    browser_sandbox: bool = Field(
        True, description="run renderers in the browser's sandbox; false adds --no-sandbox"
    )
    browser_user: str = Field(
        "browser-broker",
        description="when the daemon runs as root, browsers run as this unprivileged user",
    )
    browser_jail: Literal["auto", "required", "off"] = Field(
        "auto", description="browsers in a bubblewrap jail: auto (if bwrap works), required, off"
    )
    max_concurrent_rpcs: int = Field(512, ge=1, description="RPCs served at once; more wait")
    max_runs_waiting_per_lease: int = Field(
        4, ge=0, le=1_000, description="Runs that may wait behind the running one on a lease"
    )
    max_result_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="largest step result (text, JSON, image, PDF)"
    )
    max_screenshot_pixels: int = Field(
        25_000_000, ge=1, description="largest screenshot, width times height"
    )
    max_pdf_pages: int = Field(200, ge=1, description="longest PDF a pdf step may print")
    max_pages_per_lease: int = Field(
        8, ge=1, le=1_000, description="pages open at once in a lease, popups included"
    )
    max_upload_bytes: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description="bytes a set_input_files step may upload, in all (a Run larger than "
        "max_message_bytes is refused by gRPC first)",
    )
    max_download_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="largest file a download step may capture"
    )
    max_storage_state_bytes: int = Field(
        1024 * 1024, ge=0, description="largest storage_state an Acquire may start from"
    )
    data_dir: Path = Field(
        Path.home() / ".local/share/browser-broker",
        description="where the broker keeps its files (lease traces, in traces/)",
    )
    max_trace_bytes: int = Field(
        100 * 1024 * 1024, ge=0, description="largest lease trace kept; a larger one is dropped"
    )
    trace_retention_s: float = Field(
        3600.0, ge=0, description="how long a lease's trace is kept after the lease ends"
    )
    status_requests_per_s: float = Field(
        20.0, gt=0, description="GetStatus calls per second per tenant"
    )
    redact_urls: bool = Field(
        True, description="strip query strings and fragments from URLs in logs and traces"
    )

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
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        if self.max_result_bytes > self.max_message_bytes - 64 * 1024:
            raise ValueError("max_result_bytes must leave 64 KiB of max_message_bytes for framing")
        self._check_warm_pools()
        self.check_cluster(self.listen, bool(self.tenants), self.tls_cert_file is not None)
        self.check_attach_reach(self.advertised(self.listen) if self.cluster_url else None)
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        if not self.listens_on_loopback and not self.allow_insecure_remote:
            missing = [
                what
                for what, absent in (
                    ("TLS (tls_cert_file)", self.tls_cert_file is None),
                    ("authentication (tenants)", not self.tenants),
                )
                if absent
            ]
            if missing:
                raise ValueError(
                    f"listen {self.listen} is reachable from other machines but "
                    f"{' and '.join(missing)} is off; configure it, listen on 127.0.0.1, or set "
                    "allow_insecure_remote = true to accept the risk"
                )
        return self

    def _check_warm_pools(self) -> None:
        pairs = [pool.pair for pool in self.warm_pools]
        if len(set(pairs)) != len(pairs):
            raise ValueError("warm_pools: one entry per engine and isolation")
        for pool in self.warm_pools:
            if pool.engine not in self.engines:
                raise ValueError(f"warm pool {pool.pair}: engine {pool.engine.value} not enabled")
        default = f"{self.default_engine.value}/{self.default_isolation.value}"
        if default in pairs and "warm_pool_size" in self.model_fields_set:
            raise ValueError(
                f"warm_pool_size and a warm_pools entry for {default} both size the default "
                "pool; set one"
            )
        unknown = set(self.session_memory_mb) - set(DEFAULT_SESSION_MEMORY_MB)
        if unknown:
            raise ValueError(
                f"session_memory_mb: unknown key {sorted(unknown)[0]!r}; keys are "
                f"{', '.join(DEFAULT_SESSION_MEMORY_MB)}"
            )
        if any(mb <= 0 for mb in self.session_memory_mb.values()):
            raise ValueError("session_memory_mb values must be above 0")

    def pool_configs(self) -> list[WarmPoolConfig]:
        """Every warm pool: `warm_pools`, and the default pair sized by warm_pool_size unless
        listed there."""
        pools = list(self.warm_pools)
        if not any(
            p.engine is self.default_engine
            and p.isolation is self.default_isolation
            and p.attach is None
            for p in pools
        ):
            pools.insert(
                0,
                WarmPoolConfig(
                    engine=self.default_engine,
                    isolation=self.default_isolation,
                    size=self.warm_pool_size,
                    max_size=None,
                    max_age_s=0.0,
                    attach=None,
                ),
            )
        return [p for p in pools if p.ceiling > 0]

    def session_memory(self, engine: EngineName, isolation: Isolation) -> float:
        key = f"{engine.value}/{isolation.value}"
        return self.session_memory_mb.get(key, DEFAULT_SESSION_MEMORY_MB[key])

    @property
    def listens_on_loopback(self) -> bool:
        return is_loopback_host(host_of(self.listen))

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tenants)

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
            max_runs_waiting=self.max_runs_waiting_per_lease,
            open_timeout_s=self.session_open_timeout_s,
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
