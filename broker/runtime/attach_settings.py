"""Attached clients: where their sockets are served, the URL grants carry, and their bounds
(docs/clients.md#attached-clients, docs/security.md#attached-clients)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from broker.attach.bounds import AttachLimits
from broker.common.hosts import WILDCARD_HOSTS, host_of, is_loopback_host


class AttachSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attach_listen: str = Field(
        "127.0.0.1:0",
        description="host:port of the attach WebSocket server (port 0: any free port); empty: "
        "no attachable leases. It serves wss:// when tls_cert_file is set. In cluster mode "
        "with a cluster_advertise beyond loopback, the default is empty (off)",
    )
    attach_public_url: str = Field(
        "",
        description="the base URL put in connect URLs (e.g. wss://broker.example:50052) when "
        "clients reach the attach server by another name; empty: ws(s)://<attach_listen> "
        "(for one that binds every address: cluster_advertise's host in cluster mode, else "
        "127.0.0.1). In cluster mode, this node's own",
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

    # Why attached clients are off though attach_listen was not emptied ('' when it was not).
    _attach_off: str = PrivateAttr("")

    @field_validator("attach_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("ws://", "wss://")):
            raise ValueError("attach_public_url must start with ws:// or wss://")
        return value.rstrip("/")

    @property
    def attach_off_reason(self) -> str:
        return self._attach_off

    def url_host(self, advertise: str | None) -> str:
        """The host connect URLs name. `advertise`: where the other nodes of a cluster reach
        this node (None outside a cluster)."""
        if self.attach_public_url:
            return urlsplit(self.attach_public_url).hostname or ""
        host = host_of(self.attach_listen)
        if host in WILDCARD_HOSTS:
            advertised = host_of(advertise) if advertise else ""
            return "127.0.0.1" if advertised in WILDCARD_HOSTS else advertised
        return host

    def connect_base(self, bound_port: int, tls: bool, advertise: str | None) -> str:
        """ws(s)://host:port put before /cdp/<lease id> in the grants of this node."""
        if self.attach_public_url:
            return self.attach_public_url
        return f"{'wss' if tls else 'ws'}://{self.url_host(advertise)}:{bound_port}"

    def check_attach_reach(self, advertise: str | None) -> None:
        """In a cluster a client gets a lease's connect URL through whichever node it called,
        and the URL names the node that holds the lease: it must reach that node from wherever
        the other nodes do. A URL naming loopback on a node the others reach elsewhere would
        send a client on another machine, attach token and all, to its own machine. With
        attach_listen left at its default, attached clients are then off on this node (the
        daemon warns at start); set explicitly, the node refuses to start."""
        if advertise is None or not self.attach_listen or is_loopback_host(host_of(advertise)):
            return
        named = self.url_host(advertise)
        if not is_loopback_host(named):
            return
        if "attach_listen" not in self.model_fields_set and not self.attach_public_url:
            self._attach_off = (
                f"attach_listen defaults to loopback, but the other nodes reach this node at "
                f"{advertise}: connect URLs would name {named}, which clients elsewhere cannot "
                "reach. Set attach_listen to an address they reach (0.0.0.0:<port> names "
                "cluster_advertise's host) or attach_public_url"
            )
            self.attach_listen = ""
            return
        where = "attach_public_url" if self.attach_public_url else "attach_listen"
        raise ValueError(
            f"{where} names {named}, a loopback address, but the other nodes reach this node "
            f"at {advertise}: a client that acquires through any node gets this node's connect "
            "URLs, and could not reach them. Set attach_listen to an address clients reach "
            "(0.0.0.0:<port> names cluster_advertise's host), attach_public_url to this "
            'node\'s own URL, or attach_listen = "" to turn attached clients off'
        )

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
