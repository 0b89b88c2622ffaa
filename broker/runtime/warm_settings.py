"""Warm pools in the settings: one entry per engine, isolation and attach protocol
(docs/operations.md#warm-pools), and the memory estimates the budget uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation

# Estimated MiB of one session per engine/isolation (PSS per lease in docs/benchmarks.md, rounded up).
DEFAULT_SESSION_MEMORY_MB = {
    "chromium/context": 60.0,
    "chromium/browser": 170.0,
    "firefox/context": 60.0,
    "firefox/browser": 330.0,
    "camoufox/context": 80.0,
    "camoufox/browser": 400.0,
}


class WarmPoolConfig(BaseModel):
    """Ready sessions kept for one engine and isolation (attachable ones with `attach`)."""

    model_config = ConfigDict(extra="forbid")

    engine: EngineName
    isolation: Isolation = Isolation.CONTEXT
    size: int = Field(ge=0, le=1_000, description="ready sessions kept (the floor)")
    max_size: int | None = Field(
        None, ge=0, le=1_000, description="follow demand up to this many; unset: size (fixed)"
    )
    max_age_s: float = Field(0.0, ge=0, description="replace a ready session this old; 0: never")
    attach: AttachProtocol | None = Field(
        None,
        description="cdp: attachable browsers (chromium, isolation browser), for attachable "
        "leases only; unset: plain sessions",
    )

    @model_validator(mode="after")
    def _ceiling(self) -> WarmPoolConfig:
        if self.max_size is not None and self.max_size < self.size:
            raise ValueError(f"warm pool {self.pair}: max_size must not be below size")
        if self.attach is not None and (
            self.attach is not AttachProtocol.CDP
            or self.engine is not EngineName.CHROMIUM
            or self.isolation is not Isolation.BROWSER
        ):
            raise ValueError(
                f"warm pool {self.pair}: attachable pools are chromium/browser with attach = cdp"
            )
        return self

    @property
    def pair(self) -> str:
        attach = f"+{self.attach.value}" if self.attach else ""
        return f"{self.engine.value}/{self.isolation.value}{attach}"

    @property
    def ceiling(self) -> int:
        return self.size if self.max_size is None else self.max_size
