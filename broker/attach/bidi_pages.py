"""The page bound (attach_max_targets) of a BiDi lease, kept by its hub from the browser's own
events: the hub subscribes to WATCHED for itself and counts the top-level contexts open plus
the clients' `browsingContext.create` commands relayed and not answered yet. A create is
refused once those reach the bound (so creates sent together cannot all pass one count), and a
context the browser opens past it (a site's `window.open` or `target=_blank` popup) is closed.

The session is the client's too: it is relayed WATCHED events only while a subscription of its
own names them (by event or module; a subscription filtered to some contexts or user contexts
is relayed every such event).
"""

from __future__ import annotations

from typing import Any

WATCHED = ("browsingContext.contextCreated", "browsingContext.contextDestroyed")


class PageCount:
    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.open: set[str] = set()  # top-level contexts
        self.opening: set[int] = set()  # wire ids of clients' creates not answered yet
        self.recent: set[str] = set()  # opened since a recount's getTree was sent
        self.closing: set[str] = set()  # closed past the bound by the hub, not destroyed yet

    def full(self) -> bool:
        return len(self.open) + len(self.opening) >= self.bound

    def refusal(self, method: str) -> str:
        return (
            f"{method} is refused: {len(self.open)} pages are open and {len(self.opening)} "
            f"being opened (attach_max_targets {self.bound})"
        )

    def opened(self, context: object) -> bool:
        """A top-level context exists: whether it is past the bound (to be closed)."""
        if not isinstance(context, str) or context in self.open:
            return False
        self.open.add(context)
        self.recent.add(context)
        if len(self.open - self.closing) <= self.bound:
            return False
        self.closing.add(context)
        return True

    def event(self, method: str, params: object) -> str | None:
        """A WATCHED event: the context to close, if it opened past the bound."""
        if not isinstance(params, dict) or params.get("parent") is not None:
            return None
        context = params.get("context")
        if method == "browsingContext.contextDestroyed":
            self.open.discard(str(context))
            self.recent.discard(str(context))
            self.closing.discard(str(context))
            return None
        return str(context) if self.opened(context) else None

    def recounted(self, tree: dict[str, Any]) -> list[str]:
        """The top-level contexts of a getTree (sent after `recent` was emptied): those past
        the bound, to be closed. The pages known open before are kept first (the tree's order
        is not the order pages opened in), and one already being closed is not closed again."""
        known = self.open - self.closing - self.recent  # (those opened meanwhile are new)
        found = [c.get("context") for c in tree.get("contexts") or [] if isinstance(c, dict)]
        ordered = [c for c in found if isinstance(c, str)]
        ordered += [c for c in self.recent if c not in ordered]
        self.open = set(ordered)
        self.closing &= self.open
        live = [c for c in ordered if c not in self.closing]
        kept_first = [c for c in live if c in known] + [c for c in live if c not in known]
        past = kept_first[self.bound :]
        self.closing.update(past)
        return past


class Subscriptions:
    """The event names a client's own subscriptions name, by subscription id."""

    def __init__(self) -> None:
        self.names: dict[str, frozenset[str]] = {}

    def wants(self, method: str) -> bool:
        module = method.split(".")[0]
        return any(method in names or module in names for names in self.names.values())

    def answered(self, method: str, params: dict[str, Any], result: object) -> None:
        """A client's session.subscribe or session.unsubscribe succeeded."""
        if method == "session.subscribe" and isinstance(result, dict):
            events = params.get("events")
            if isinstance(result.get("subscription"), str) and isinstance(events, list):
                names = frozenset(e for e in events if isinstance(e, str))
                self.names[result["subscription"]] = names
        elif method == "session.unsubscribe":
            for ident in params.get("subscriptions") or []:
                self.names.pop(str(ident), None)
            gone = {e for e in params.get("events") or [] if isinstance(e, str)}
            for ident, names in list(self.names.items()):
                self.names[ident] = frozenset(
                    n for n in names if n not in gone and n.split(".")[0] not in gone
                )
