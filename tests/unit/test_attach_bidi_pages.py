"""The BiDi hub's page count (attach_max_targets) and which page events a client is relayed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from broker.attach.bidi_hub import BidiHub
from broker.attach.bidi_pages import PageCount, Subscriptions
from broker.attach.bounds import AttachLimits

CREATED = "browsingContext.contextCreated"
DESTROYED = "browsingContext.contextDestroyed"


def test_creates_being_answered_count_as_pages() -> None:
    pages = PageCount(3)
    pages.opened("first")
    pages.opening.update({1, 2})
    assert pages.full()
    assert "1 pages are open and 2 being opened" in pages.refusal("browsingContext.create")
    pages.opening.discard(1)  # refused by the browser: its slot is free again
    assert not pages.full()


def test_a_page_past_the_bound_is_named_to_close_and_frees_its_slot_when_gone() -> None:
    pages = PageCount(2)
    assert pages.event(CREATED, {"context": "a", "parent": None}) is None
    assert pages.event(CREATED, {"context": "b", "parent": None}) is None
    assert pages.event(CREATED, {"context": "frame", "parent": "a"}) is None  # not a page
    assert pages.event(CREATED, {"context": "popup", "parent": None}) == "popup"
    assert pages.event(CREATED, {"context": "popup", "parent": None}) is None  # seen once
    pages.event(DESTROYED, {"context": "popup", "parent": None})
    pages.event(DESTROYED, {"context": "b", "parent": None})
    assert pages.open == {"a"} and not pages.full()
    # The answer to a create and its event name one page, whichever comes first.
    assert not pages.opened("c") and not pages.opened("c")
    assert pages.event(CREATED, "not an object") is None


def test_a_recount_keeps_what_opened_meanwhile_and_names_the_pages_past_the_bound() -> None:
    pages = PageCount(2)
    pages.recent.clear()
    pages.opened("new")
    tree = {"contexts": [{"context": "a"}, {"context": "b"}, {"context": 5}, "x"]}
    assert pages.recounted(tree) == ["new"]
    assert pages.open == {"a", "b", "new"}


def test_a_recount_closes_the_new_page_whatever_the_trees_order_and_each_page_once() -> None:
    pages = PageCount(3)
    for context in ("first", "a", "b"):
        assert not pages.opened(context)
    assert pages.opened("popup")  # past the bound: closed, and counted as closing
    pages.recent.clear()  # a recount begins; the popup is not destroyed yet
    tree = {"contexts": [{"context": c} for c in ("first", "popup", "late", "a", "b")]}
    assert pages.recounted(tree) == ["late"]  # not "b": the pages known open are kept
    assert pages.closing == {"popup", "late"}
    pages.event(DESTROYED, {"context": "popup"})
    pages.event(DESTROYED, {"context": "late"})
    assert pages.open == {"first", "a", "b"} and not pages.closing
    assert pages.full() and not pages.opened("b")


def test_a_client_is_relayed_page_events_only_while_it_subscribes_to_them() -> None:
    subscriptions = Subscriptions()
    assert not subscriptions.wants(CREATED)
    subscriptions.answered(
        "session.subscribe", {"events": ["browsingContext"]}, {"subscription": "s1"}
    )
    assert subscriptions.wants(CREATED) and subscriptions.wants(DESTROYED)
    subscriptions.answered("session.unsubscribe", {"subscriptions": ["s1"]}, {})
    assert not subscriptions.wants(CREATED)
    subscriptions.answered(
        "session.subscribe", {"events": [CREATED, "log"]}, {"subscription": "s2"}
    )
    assert subscriptions.wants(CREATED) and not subscriptions.wants(DESTROYED)
    subscriptions.answered("session.unsubscribe", {"events": ["browsingContext"]}, {})
    assert not subscriptions.wants(CREATED) and subscriptions.wants("log.entryAdded")
    subscriptions.answered("session.subscribe", {"events": "x"}, {"subscription": "s3"})
    subscriptions.answered("session.subscribe", {"events": [CREATED]}, {"subscription": 5})
    assert not subscriptions.wants(CREATED)


class Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def last(self, method: str) -> dict[str, Any]:
        return next(m for m in reversed(self.sent) if m["method"] == method)


class Peer:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def deliver(self, text: str | bytes) -> None:
        self.got.append(json.loads(text))


async def test_an_unsubscribe_by_names_has_the_hub_subscribe_again_though_its_client_left() -> None:
    """Firefox removes the hub's own subscription on a client's session.unsubscribe by event
    names: the hub subscribes again and recounts, whether or not the client stayed for the
    answer, and closes what opened past the bound meanwhile."""
    socket = Socket()
    hub = BidiHub(socket, "/nowhere", AttachLimits(max_targets=3))  # type: ignore[arg-type]
    client = await hub.attach(Peer(), trusted=False)
    unsubscribe = {"events": [CREATED, DESTROYED]}
    hub.receive(
        client, json.dumps({"id": 7, "method": "session.unsubscribe", "params": unsubscribe})
    )
    await asyncio.sleep(0)
    wire = socket.last("session.unsubscribe")["id"]
    hub.detach(client)  # before its answer
    hub._dispatch({"type": "success", "id": wire, "result": {}})
    await asyncio.sleep(0.01)
    again = socket.last("session.subscribe")
    assert again["params"] == {"events": [CREATED, DESTROYED]}
    hub._dispatch({"type": "success", "id": again["id"], "result": {"subscription": "hub2"}})
    await asyncio.sleep(0.01)
    tree = socket.last("browsingContext.getTree")
    contexts = [{"context": name} for name in ("a", "b", "c", "popup")]
    hub._dispatch({"type": "success", "id": tree["id"], "result": {"contexts": contexts}})
    await asyncio.sleep(0.01)
    assert socket.last("browsingContext.close")["params"] == {"context": "popup"}
    # The hub's subscription is not the client's to remove, by its id.
    other = await hub.attach(Peer(), trusted=False)
    hub.receive(
        other,
        json.dumps(
            {"id": 8, "method": "session.unsubscribe", "params": {"subscriptions": ["hub2"]}}
        ),
    )
    assert "the broker's own" in other.peer.got[-1]["message"]  # type: ignore[attr-defined]
    await hub.shutdown()
