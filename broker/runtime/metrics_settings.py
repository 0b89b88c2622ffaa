"""Where the broker serves its Prometheus metrics (docs/operations.md#metrics)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    """The Prometheus endpoint: off unless `prometheus_port` is set."""

    model_config = ConfigDict(extra="forbid")

    prometheus_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus metrics on prometheus_host:PORT/metrics"
    )
    prometheus_host: str = Field(
        "127.0.0.1",
        description="address the metrics endpoint binds; 0.0.0.0 where a scraper on another "
        "host must reach it (a Kubernetes pod)",
    )
