"""An Acquire's context options that shape a lease's pages (storage state, blocking,
emulation) are decoded straight into ContextOptions and validated on the way in: every bad
field named, every size bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.api import decode
from broker.errors import InvalidArgument
from broker.model.options import Geolocation
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

SETTINGS = Settings(max_storage_state_bytes=4096)  # type: ignore[call-arg]


def acquire_refused(**context: Any) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        decode.lease_spec(pb.AcquireRequest(context=pb.ContextOptions(**context)), SETTINGS)
    return {v.field: v.description for v in caught.value.violations}


def test_context_shaping_options_decode() -> None:
    state = json.dumps({"cookies": [], "origins": []}).encode()
    spec = decode.lease_spec(
        pb.AcquireRequest(
            context=pb.ContextOptions(
                storage_state=state,
                block_resource_types=["image", "font", "image"],
                block_url_patterns=["**/*.png"],
                color_scheme="dark",
                media="print",
                geolocation=pb.Geolocation(latitude=52.5, longitude=13.4, accuracy=10),
                permissions=["geolocation"],
            )
        ),
        SETTINGS,
    )
    context = spec.context
    assert context.storage_state == state and context.block_resource_types == ("font", "image")
    assert context.geolocation == Geolocation(52.5, 13.4, 10)
    assert not context.is_default  # a shaped context never comes from the warm pool
    assert "storage_state" not in repr(context) and "origins" not in repr(context)


def test_context_shaping_options_are_checked() -> None:
    bad = acquire_refused(
        block_resource_types=["images"],
        block_url_patterns=[""],
        color_scheme="blue",
        media="tv",
        geolocation=pb.Geolocation(latitude=91),
        permissions=["everything"],
        storage_state=b"x" * 5000,
    )
    assert "not one of" in bad["context.block_resource_types[0]"]
    assert "empty" in bad["context.block_url_patterns[0]"]
    assert "not one of" in bad["context.color_scheme"] and "not one of" in bad["context.media"]
    assert "latitude" in bad["context.geolocation"]
    assert "not a permission" in bad["context.permissions[0]"]
    assert "too large" in bad["context.storage_state"]
    assert "valid JSON" in acquire_refused(storage_state=b"{")["context.storage_state"]
    shape = acquire_refused(storage_state=b'{"cookies": [{"name": 1}], "origins": {}}')
    assert "string name" in shape["context.storage_state.cookies"]
    assert "at most 200" in shape["context.storage_state.origins"]
    many = json.dumps({"cookies": [{"name": "a"}] * 3001}).encode()
    big_settings = Settings(max_storage_state_bytes=1 << 20)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument) as caught:
        decode.lease_spec(
            pb.AcquireRequest(context=pb.ContextOptions(storage_state=many)), big_settings
        )
    assert "at most 3000" in str(caught.value)
