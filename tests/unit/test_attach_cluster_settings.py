"""The connect URLs of a cluster node name that node, at an address clients elsewhere reach
(docs/cluster.md#attached-clients): a loopback URL on a node the others reach elsewhere is
refused at start, or attached clients are off when attach_listen was left at its default."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from broker.daemon.attach_edge import start_attach_edge
from broker.runtime.settings import Settings, load_settings

REMOTE: dict[str, Any] = {
    "cluster_url": "redis://10.0.0.9:6379/0",
    "listen": "0.0.0.0:50051",
    "cluster_advertise": "10.0.0.5:50051",
    "allow_insecure_remote": True,
}


def node(**overrides: Any) -> Settings:
    """A cluster node the others reach at 10.0.0.5, with `overrides`."""
    return load_settings(None, **(REMOTE | overrides))


def test_a_default_loopback_attach_edge_is_off_on_a_node_reached_elsewhere() -> None:
    settings = node()
    assert settings.attach_listen == ""  # Acquires with attach are refused, naming it
    assert "10.0.0.5:50051" in settings.attach_off_reason
    assert "attach_listen" in settings.attach_off_reason


@pytest.mark.parametrize(
    ("attach", "named"),
    [
        ({"attach_listen": "127.0.0.1:0"}, "attach_listen names 127.0.0.1"),
        ({"attach_listen": "[::1]:50052"}, "attach_listen names [::1]"),
        ({"attach_listen": "localhost:50052"}, "attach_listen names localhost"),
        ({"attach_public_url": "ws://127.0.0.2:50052"}, "attach_public_url names 127.0.0.2"),
        (
            {"attach_listen": "0.0.0.0:50052", "attach_public_url": "wss://LOCALHOST:1"},
            "attach_public_url names localhost",
        ),
    ],
)
def test_an_explicit_loopback_url_on_a_node_reached_elsewhere_is_refused(
    attach: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError) as refused:
        node(**attach)
    message = str(refused.value)
    assert named in message and "10.0.0.5:50051" in message
    assert 'attach_listen = ""' in message  # and how to turn it off


def test_a_wildcard_attach_listen_names_the_advertised_host() -> None:
    settings = node(attach_listen="0.0.0.0:50052")
    advertise = settings.advertised(settings.listen)
    assert settings.connect_base(50052, False, advertise) == "ws://10.0.0.5:50052"
    assert settings.connect_base(50052, True, advertise) == "wss://10.0.0.5:50052"
    v6 = node(cluster_advertise="[fd00::5]:50051", attach_listen=":0")
    assert v6.connect_base(4100, False, "[fd00::5]:50051") == "ws://[fd00::5]:4100"


@pytest.mark.parametrize(
    "overrides",
    [
        {"attach_listen": "10.0.0.5:50052"},  # an address of its own
        {"attach_listen": "127.0.0.1:50052", "attach_public_url": "wss://node-5.example:443"},
        {"attach_listen": ""},  # off, as asked
    ],
)
def test_urls_others_reach_are_kept(overrides: dict[str, Any]) -> None:
    settings = node(**overrides)
    assert settings.attach_listen == overrides["attach_listen"]
    assert settings.attach_off_reason == ""


def test_nodes_on_one_machine_and_single_brokers_keep_loopback() -> None:
    on_loopback = load_settings(cluster_url="redis://r", listen="127.0.0.1:50051")
    assert on_loopback.attach_listen == "127.0.0.1:0"
    assert on_loopback.connect_base(4100, False, "127.0.0.1:50051") == "ws://127.0.0.1:4100"
    single = load_settings(listen="0.0.0.0:50051", allow_insecure_remote=True)
    assert single.attach_listen == "127.0.0.1:0" and single.attach_off_reason == ""
    wildcard = load_settings(attach_listen="0.0.0.0:0")
    assert wildcard.connect_base(4100, False, None) == "ws://127.0.0.1:4100"


@pytest.mark.parametrize(
    ("advertise", "expected"),
    [("localhost:50051", "ws://localhost:"), (None, "ws://127.0.0.1:")],
)
async def test_the_edge_puts_the_advertised_host_in_grants(
    advertise: str | None, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's attach edge, bound to every address: a cluster node's URLs name the host
    the other nodes reach it at; a single broker's name 127.0.0.1, with a warning."""
    cluster = {"cluster_url": "redis://r", "cluster_advertise": advertise} if advertise else {}
    settings = load_settings(None, listen="127.0.0.1:50051", attach_listen="0.0.0.0:0", **cluster)
    desk = SimpleNamespace(resolve=lambda *_: None, base_url="")
    broker: Any = SimpleNamespace(attach=desk, egress=None, leases=SimpleNamespace(draining=False))
    server = await start_attach_edge(settings, broker)
    assert server is not None
    try:
        assert desk.base_url.startswith(expected)
        assert int(desk.base_url.rsplit(":", 1)[1]) > 0  # the port it bound
        assert ("connect URLs name 127.0.0.1" in caplog.text) is (advertise is None)
    finally:
        await server.close()


async def test_the_edge_says_why_attached_clients_are_off(caplog: pytest.LogCaptureFixture) -> None:
    broker: Any = SimpleNamespace(attach=SimpleNamespace(base_url=""), egress=None)
    assert await start_attach_edge(node(), broker) is None
    assert "attached clients are off: attach_listen defaults to loopback" in caplog.text
    assert broker.attach.base_url == ""
