"""What an attached client is told about targets: `attached` as if it were alone with the
browser (the broker's own Playwright attaches to every page)."""

from __future__ import annotations

import json
from typing import Any

from broker.attach.bounds import AttachLimits
from broker.attach.clients import HubClient
from broker.attach.hub import CdpHub


class Pipe:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def write(self, message: str) -> None:
        self.sent.append(json.loads(message))


class Peer:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def deliver(self, text: str | bytes) -> None:
        self.got.append(json.loads(text))


def _client(hub: CdpHub, trusted: bool = False) -> tuple[HubClient, Peer]:
    peer = Peer()
    client = HubClient(peer, trusted, None, root=f"root-{len(hub.clients)}")
    client.sessions.add(client.root)
    hub._owner[client.root] = client
    hub.clients.add(client)
    return client, peer


def _info(target: str, attached: bool = True) -> dict[str, Any]:
    return {"targetId": target, "type": "page", "attached": attached, "openerId": "t0"}


async def test_a_target_only_the_broker_is_attached_to_is_not_attached_for_the_client() -> None:
    hub = CdpHub(Pipe(), "/downloads", AttachLimits())  # type: ignore[arg-type]
    client, peer = _client(hub)
    created = {"method": "Target.targetCreated", "params": {"targetInfo": _info("t1")}}
    hub._dispatch({**created, "sessionId": client.root})
    assert peer.got[-1]["params"]["targetInfo"]["attached"] is False
    # once the client attaches (an event on its root session), it is attached for it
    attached = {"sessionId": "s1", "targetInfo": _info("t1"), "waitingForDebugger": False}
    hub._dispatch(
        {"method": "Target.attachedToTarget", "params": attached, "sessionId": client.root}
    )
    changed = {"method": "Target.targetInfoChanged", "params": {"targetInfo": _info("t1")}}
    hub._dispatch({**changed, "sessionId": client.root})
    assert peer.got[-1]["params"]["targetInfo"]["attached"] is True
    hub._dispatch(
        {
            "method": "Target.detachedFromTarget",
            "params": {"sessionId": "s1", "targetId": "t1"},
            "sessionId": client.root,
        }
    )
    hub._dispatch({**changed, "sessionId": client.root})
    assert peer.got[-1]["params"]["targetInfo"]["attached"] is False


async def test_get_targets_answers_attached_as_seen_by_the_client() -> None:
    pipe = Pipe()
    hub = CdpHub(pipe, "/downloads", AttachLimits())  # type: ignore[arg-type]
    client, peer = _client(hub)
    hub.receive(client, json.dumps({"id": 7, "method": "Target.getTargets"}))
    wire = pipe.sent[-1]["id"]
    browser = {"targetId": "b", "type": "browser", "attached": True}
    infos = [_info("t1"), _info("t2", attached=False), browser]
    hub._dispatch({"id": wire, "result": {"targetInfos": infos}, "sessionId": client.root})
    assert peer.got[-1]["id"] == 7
    # the browser target stays attached: the client is, through its root session
    attached = [i["attached"] for i in peer.got[-1]["result"]["targetInfos"]]
    assert attached == [False, False, True]


async def test_the_trusted_client_sees_the_browser_as_it_is() -> None:
    hub = CdpHub(Pipe(), "/downloads", AttachLimits())  # type: ignore[arg-type]
    client, peer = _client(hub, trusted=True)
    created = {"method": "Target.targetCreated", "params": {"targetInfo": _info("t1")}}
    hub._dispatch({**created, "sessionId": client.root})
    assert peer.got[-1]["params"]["targetInfo"]["attached"] is True


async def test_a_closed_clients_commands_are_forgotten_and_old_ones_time_out() -> None:
    now = [0.0]
    pipe = Pipe()
    hub = CdpHub(pipe, "/downloads", AttachLimits(command_timeout_s=60), now=lambda: now[0])  # type: ignore[arg-type]
    gone, _ = _client(hub)
    for ident in range(50):
        hub.receive(gone, json.dumps({"id": ident, "method": "Browser.getVersion"}))
    hub.detach(gone)
    assert hub._pending == {}
    client, peer = _client(hub)
    hub.receive(client, json.dumps({"id": 1, "method": "Runtime.evaluate", "sessionId": "root-0"}))
    now[0] = 30.0
    hub.expire()
    assert len(hub._pending) == 1 and peer.got == []
    now[0] = 61.0
    hub.expire()
    assert hub._pending == {} and client.pending == 0
    assert peer.got[-1]["id"] == 1 and peer.got[-1]["sessionId"] == "root-0"
    assert "no answer from the browser in 60 s" in peer.got[-1]["error"]["message"]
