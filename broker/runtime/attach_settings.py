"""Attached clients: where their sockets are served, the URL grants carry, and their bounds
(docs/clients.md#attached-clients, docs/security.md#attached-clients)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from broker.attach.bounds import AttachLimits


class AttachSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attach_listen: str = Field(
        "127.0.0.1:0",
        description="host:port of the attach WebSocket server (port 0: any free port); empty: "
        "no attachable leases. It serves wss:// when tls_cert_file is set",
    )
    attach_public_url: str = Field(
        "",
        description="the base URL put in connect URLs (e.g. wss://broker.example:50052) when "
        "clients reach the attach server by another name; empty: ws(s)://<attach_listen>",
    )
    attach_max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    attach_messages_per_s: float = Field(500.0, gt=0, le=100_000)
    attach_burst: int = Field(1000, ge=1, le=100_000)
    attach_max_targets: int = Field(
        16, ge=1, le=1000, description="pages open at once in an attachable lease's browser"
    )
    attach_max_clients: int = Field(4, ge=1, le=64, description="clients attached to one lease")
    attach_max_browser_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="the largest message from the browser an attached client is sent: a bigger "
        "answer (a screenshot, a PDF, an evaluated value) is an error naming its size, a bigger "
        "event is dropped; neither is held by the broker",
    )

    attach_max_downloads_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="all the files attached clients download on one lease; a file is also held "
        "to max_download_bytes. A download past either is cancelled",
    )

    @field_validator("attach_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("ws://", "wss://")):
            raise ValueError("attach_public_url must start with ws:// or wss://")
        return value.rstrip("/")

    def attach_limits(self, max_download_bytes: int = 8 * 1024 * 1024) -> AttachLimits:
        return AttachLimits(
            max_download_bytes=max_download_bytes,
            max_downloads_bytes=self.attach_max_downloads_bytes,
            max_message_bytes=self.attach_max_message_bytes,
            messages_per_s=self.attach_messages_per_s,
            burst=self.attach_burst,
            max_targets=self.attach_max_targets,
            max_clients=self.attach_max_clients,
            max_browser_message_bytes=self.attach_max_browser_message_bytes,
        )
