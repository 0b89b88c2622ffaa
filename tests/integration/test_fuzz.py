"""Property-based fuzzing of the whole gRPC surface against a live broker with real Chromium.

Random and malformed messages for every method (random field combinations, out-of-range enums,
odd strings), requests on a real lease with random steps, undecodable bytes, oversized frames
and raw garbage on the port. Whatever comes in, the broker answers only documented status codes,
stays healthy, and leaks no lease, context, page, browser process or task.

The suite runs a bounded number of examples; `BROKER_FUZZ_EXAMPLES=5000` with pytest's
`--timeout 0` runs a longer fuzz (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from browserbroker import AsyncLease, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

EXAMPLES = int(os.environ.get("BROKER_FUZZ_EXAMPLES", "120"))
SERVICE = "/browserbroker.v1.BrowserBrokerService/"
# The error contract (protos/browserbroker/v1/broker.proto), plus what gRPC itself answers for
# an oversized message (RESOURCE_EXHAUSTED) or an unknown method (UNIMPLEMENTED).
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
}

# Strings that mean something somewhere: selectors, URLs of every kind, JSON, scripts.
INTERESTING = [
    "",
    " ",
    "#title",
    "h1",
    "[[[",
    "a" * 5000,
    "about:blank",
    "about:config",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:text/html,<h1>x</h1>",
    "http://127.0.0.2:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:1/",
    "https://localhost/",
    "http://nonexistent.invalid/",
    "1",
    "null",
    "[1,2,3]",
    '{"a": [1, {"b": null}]}',
    "() => document.title",
    "new Promise(() => {})",
    "while(false){}",
    "\x00",
    "\u202e",
    "load",
    "visible",
    "Enter",
]

scalar_text = st.one_of(st.sampled_from(INTERESTING), st.text(max_size=60))


def message_of(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Random values for a message's fields (each maybe absent), nested messages included."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field(field, depth)
        if value is not None:
            fields[field.name] = st.one_of(st.none(), value)
    return st.fixed_dictionaries({}, optional=fields)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    single: st.SearchStrategy[Any]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        child = field.message_type
        if depth >= 3 or child is None:
            return None
        if child.GetOptions().map_entry:
            return st.dictionaries(scalar_text, scalar_text, max_size=4)
        single = message_of(child, depth + 1)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        single = st.integers(-2, 12)  # valid values, and some no enum has
    elif field.type == FieldDescriptor.TYPE_BOOL:
        single = st.booleans()
    elif field.type == FieldDescriptor.TYPE_STRING:
        single = scalar_text
    elif field.type == FieldDescriptor.TYPE_BYTES:
        single = st.binary(max_size=64)
    elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        single = st.integers(-(2**40), 2**40)
    elif field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        single = st.integers(0, 2**32 - 1)
    else:
        single = st.integers(-(2**31), 2**31 - 1)
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def build(cls: Any, values: dict[str, Any]) -> Any:
    """A message from `message_of`'s values; values protobuf itself refuses are dropped."""
    message = cls()
    for name, value in values.items():
        if value is None:
            continue
        field = cls.DESCRIPTOR.fields_by_name[name]
        try:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    target = getattr(message, name)
                    for key, item in value.items():
                        if isinstance(target[key], str) or target[key] == "":
                            target[key] = item
                elif field.is_repeated:
                    child = getattr(pb, field.message_type.name, None)
                    for item in value:
                        getattr(message, name).append(
                            build(child or type(getattr(message, name).add()), item)
                        )
                else:
                    getattr(message, name).CopyFrom(build(type(getattr(message, name)), value))
            elif field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError):
            continue  # e.g. a duration's nanos out of range: protobuf refuses to hold it
    return message


SITE: list[str] = ["http://127.0.0.1/"]  # set by the test to the fixture site's base URL

METHODS = {
    "Acquire": (pb.AcquireRequest, False),
    "Run": (pb.RunRequest, True),
    "KeepAlive": (pb.KeepAliveRequest, False),
    "Release": (pb.ReleaseRequest, False),
    "GetStatus": (pb.GetStatusRequest, False),
}


selectors = st.sampled_from(["#title", "#name", "#go", "h1", "#missing", "a#link", "[[["])
urls = st.sampled_from(
    [
        "{site}form.html",
        "{site}slow?seconds=5",
        "{site}redirect?to=http://127.0.0.2:8080/",
        "{site}iframe?src=http://169.254.169.254/",
        "{site}big?kb=2000",
        "http://127.0.0.2:8080/",
        "http://10.0.0.1/",
        "https://nonexistent.invalid/",
        "data:text/html,<h1 id=title>x</h1>",
        "about:blank",
    ]
)
valid_step = st.one_of(
    st.builds(lambda u: steps.goto(u, timeout_s=3), urls),
    st.builds(lambda s: steps.click(s, timeout_s=1), selectors),
    st.builds(lambda s, v: steps.fill(s, v, timeout_s=1), selectors, scalar_text),
    st.builds(lambda s: steps.text(s, timeout_s=1), selectors),
    st.builds(lambda s: steps.attribute(s, "href", timeout_s=1), selectors),
    st.builds(lambda e: steps.evaluate(e, timeout_s=1), st.sampled_from(INTERESTING)),
    st.builds(lambda f: steps.screenshot(full_page=f), st.booleans()),
    st.just(steps.content()),
    st.just(steps.pdf()),
)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, Any, str]:
    """(method, request or raw bytes, how the lease reference is filled)."""
    method = draw(st.sampled_from(sorted(METHODS)))
    kind = draw(st.sampled_from(["message", "message", "bytes", "valid-run", "valid-run"]))
    if kind == "bytes":
        return method, draw(st.binary(min_size=1, max_size=200)), "none"
    if kind == "valid-run":  # well-formed steps on the real lease: work in the browser
        request = pb.RunRequest(
            steps=draw(st.lists(valid_step, min_size=1, max_size=4)),
            on_cancel=draw(st.sampled_from(list(pb.OnCancel.values()))),
            continue_on_error=draw(st.booleans()),
        )
        return "Run", request, draw(st.sampled_from(["real", "real", "real-wrong-token"]))
    cls, _ = METHODS[method]
    values = draw(message_of(cls.DESCRIPTOR))  # type: ignore[attr-defined]
    reference = draw(st.sampled_from(["random", "real", "real-wrong-token"]))
    return method, build(cls, values), reference


async def _call(
    channel: aio.Channel, method: str, request: Any, lease: AsyncLease, reference: str
) -> grpc.StatusCode:
    streaming = METHODS[method][1]
    if isinstance(request, pb.RunRequest):
        for step in request.steps:  # the fixture site's address, known only at run time
            if step.HasField("goto"):
                step.goto.url = step.goto.url.replace("{site}", SITE[0])
    if not isinstance(request, bytes) and hasattr(request, "lease_id") and reference != "random":
        request.lease_id = lease.id
        request.token = lease.grant.token if reference == "real" else "forged-token"
    if isinstance(request, pb.AcquireRequest):
        request.ttl.Clear()  # a granted lease is released right away anyway
    payload = request if isinstance(request, bytes) else request.SerializeToString()
    identity = None  # raw bytes on the wire, so malformed requests get through the client
    try:
        if streaming:
            stream = channel.unary_stream(
                SERVICE + method,
                request_serializer=identity,
                response_deserializer=pb.RunResponse.FromString,
            )
            async for _ in stream(payload, timeout=3):
                pass
        else:
            unary = channel.unary_unary(SERVICE + method, identity, None)
            answer = await unary(payload, timeout=10)
            if method == "Acquire":  # give the lease back
                granted = pb.AcquireResponse.FromString(answer)
                release = channel.unary_unary(SERVICE + "Release", None, None)
                await release(
                    pb.ReleaseRequest(
                        lease_id=granted.lease_id, token=granted.token
                    ).SerializeToString(),
                    timeout=10,
                )
        return grpc.StatusCode.OK
    except aio.AioRpcError as error:
        return error.code()


async def test_the_grpc_surface_answers_only_documented_codes_and_leaks_nothing(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await broker_factory(
        # Nothing leaves the machine, whatever URL a random step names.
        egress_allow_listed_only=True,
        max_message_bytes=1024 * 1024,
        max_result_bytes=512 * 1024,
        capacity=2,
        queue_limit=2,
    )
    SITE[0] = fixture_server.url("")
    tasks_before = len(asyncio.all_tasks())
    outcomes: Counter[str] = Counter()
    channel = aio.insecure_channel(running.address)
    held = [await running.client.acquire(ttl=600)]
    loop = asyncio.get_running_loop()

    async def real_lease() -> AsyncLease:
        """The lease calls marked "real" use; a new one when fuzzing has ended the last."""
        if held[-1].id not in {lease.id for lease in running.broker.leases.active_leases()}:
            held.append(await running.client.acquire(ttl=600))
        return held[-1]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=os.environ.get("CI", "") != "",
    )
    @given(call=calls())
    def one(call: tuple[str, Any, str]) -> None:
        method, request, reference = call
        lease = asyncio.run_coroutine_threadsafe(real_lease(), loop).result(timeout=60)
        future = asyncio.run_coroutine_threadsafe(
            _call(channel, method, request, lease, reference), loop
        )
        code = future.result(timeout=60)
        outcomes[f"{method} {code.name}"] += 1
        assert code in DOCUMENTED, (method, code, request)

    await asyncio.to_thread(one)

    # Oversized frames, and raw garbage on the port.
    huge = channel.unary_unary(SERVICE + "Acquire", None, None)
    with pytest.raises(aio.AioRpcError) as oversized:
        await huge(b"\x0a" + b"\xff" * (2 * 1024 * 1024), timeout=10)
    assert oversized.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    host, _, port = running.address.rpartition(":")
    for garbage in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096)):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(garbage)
            raw.settimeout(5)
            with contextlib.suppress(OSError):
                raw.recv(1024)

    # Still healthy, still serving the real lease, and nothing left behind.
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    for lease in held:  # (fuzzed Releases have ended most already)
        await lease.release()
    async with running.client.lease() as fresh:
        page = await fresh.run(steps.goto(fixture_server.url("form.html")), timeout=30)
        assert page.ok, page[0]
    await channel.close(None)
    await running.broker.leases.wait_all_closed()
    assert running.broker.leases.active_count == 0
    for _ in range(100):  # Runs cut short settle within their bounds
        if len(asyncio.all_tasks()) <= tasks_before + 1:
            break
        await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= tasks_before + 1, sorted(
        repr(t.get_coro()) for t in asyncio.all_tasks()
    )
    print("fuzz outcomes:", dict(sorted(outcomes.items())))
