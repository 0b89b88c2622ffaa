"""What SIGTERM does: the drain, its deadline, and the grace of Runs at it (docs/operations.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DrainSettings(BaseModel):
    """How a broker stops: a single node and a cluster node alike."""

    model_config = ConfigDict(extra="forbid")

    # 15 + shutdown_grace_s (10) leaves 5 s of Kubernetes' default terminationGracePeriodSeconds
    # (30) for closing the browsers, writing the outcomes and stopping the server.
    drain_timeout_s: float = Field(
        15.0,
        ge=0,
        le=86_400,
        description="on SIGTERM, how long leases may go on (and end as they would) before the "
        "broker ends them drained; 0: no drain, leases end shutdown at once",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="after drain_timeout_s, how long Runs still running may finish before "
        "their leases end",
    )
