"""Warm pools in the settings: one entry per engine, isolation and attach protocol
(docs/operations.md#warm-pools), and the memory estimates the budget uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation

# The engines whose dedicated browsers each attach protocol can pool (docs/operations.md#warm-pools):
# Chromium over CDP, Chromium and Firefox behind a Playwright server of their own, and a stock
# Firefox over WebDriver BiDi. (No Camoufox: its browsers' fingerprints are drawn from each lease's
# own options.)
ATTACHABLE_ENGINES: dict[AttachProtocol, tuple[EngineName, ...]] = {
    AttachProtocol.CDP: (EngineName.CHROMIUM,),
    AttachProtocol.PLAYWRIGHT: (EngineName.CHROMIUM, EngineName.FIREFOX),
    AttachProtocol.BIDI: (EngineName.FIREFOX,),
}

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
        description="attachable browsers (isolation browser), for attachable leases of this "
        "protocol only: cdp (chromium), playwright (chromium, firefox), bidi (firefox); unset: "
        "plain sessions",
    )

    @model_validator(mode="after")
    def _ceiling(self) -> WarmPoolConfig:
        if self.max_size is not None and self.max_size < self.size:
            raise ValueError(f"warm pool {self.pair}: max_size must not be below size")
        if self.attach is not None:
            self._check_attachable(self.attach)
        return self

    def _check_attachable(self, attach: AttachProtocol) -> None:
        engines = ATTACHABLE_ENGINES[attach]
        if self.engine not in engines:
            raise ValueError(
                f"warm pool {self.pair}: engine {self.engine.value} has no attach = "
                f"{attach.value} pool; attach = {attach.value} pools are "
                f"{' or '.join(engine.value for engine in engines)}"
            )
        if self.isolation is not Isolation.BROWSER:
            raise ValueError(
                f"warm pool {self.pair}: isolation must be browser with attach (an attachable "
                "lease has a browser of its own)"
            )

    @property
    def pair(self) -> str:
        attach = f"+{self.attach.value}" if self.attach else ""
        return f"{self.engine.value}/{self.isolation.value}{attach}"

    @property
    def ceiling(self) -> int:
        return self.size if self.max_size is None else self.max_size
