"""The metadata of calls between cluster nodes, all in one place.

A call one node forwards to another names the tenant the first node authenticated, vouched for
by the cluster's shared secret (checked by `broker.api.auth`); an Acquire placed on another node
says so, and a full node answers it with a trailer (see `broker.api.forwarding`).
"""

from __future__ import annotations

FORWARDED_TENANT = "x-broker-forwarded-tenant"
CLUSTER_SECRET = "x-broker-cluster-secret"
PLACED = "x-broker-placed"  # an Acquire another node placed here: serve it here or say no room
NO_ROOM = "x-broker-no-room"  # the answer of a full node to a placed Acquire
