"""The new steps and context options are validated on the way in: every bad field named, every
size bounded (uploads, cookies, storage state, patterns), before anything reaches a browser."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.api.decode import core as decode
from broker.errors import InvalidArgument
from broker.model.options import Geolocation
from broker.model.steps.extra import AddCookies, SetInputFiles, SwitchPage
from broker.runtime.settings import Settings
from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb

SETTINGS = Settings(max_upload_bytes=1024, max_storage_state_bytes=4096)  # type: ignore[call-arg]


def run(*items: pb.Step) -> Any:
    return decode.run_options(pb.RunRequest(lease_id="l", token="t", steps=items), SETTINGS)


def refused(*items: pb.Step) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        run(*items)
    return {v.field: v.description for v in caught.value.violations}


def acquire_refused(**context: Any) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        decode.lease_spec(pb.AcquireRequest(context=pb.ContextOptions(**context)), SETTINGS)
    return {v.field: v.description for v in caught.value.violations}


def test_every_new_step_decodes() -> None:
    options = run(
        steps.hover("#a"),
        steps.check("#a"),
        steps.uncheck("#a"),
        steps.select_option("#s", "x", "y"),
        steps.type_text("#a", "hi", delay_s=0.05),
        steps.scroll(delta_y=100),
        steps.go_back(),
        steps.go_forward(),
        steps.reload("domcontentloaded"),
        steps.wait_for_url("**/done"),
        steps.wait_for_response("**/api/*"),
        steps.wait_for_function("window.ok", arg=1),
        steps.set_input_files("#f", steps.input_file("a.txt", b"abc")),
        steps.download("#d"),
        steps.list_pages(),
        steps.switch_page(url="**/popup*"),
        steps.close_page("p2"),
        steps.storage_state(),
        steps.get_cookies("https://example.org/"),
        steps.add_cookies(pb.Cookie(name="a", value="1", url="https://example.org/")),
        steps.clear_cookies(),
        steps.within(steps.click("#in"), page_id="p2", frame_selector="iframe#x"),
    )
    names = [step.name for step in options.steps]
    assert names[:3] == ["hover", "check", "uncheck"] and names[-2] == "clear_cookies"
    assert options.steps[-1].page_id == "p2" and options.steps[-1].frame_selector == "iframe#x"
    assert options.steps[8].action.wait_until == "domcontentloaded"
    assert options.steps[4].action.delay_s == pytest.approx(0.05)
    assert isinstance(options.steps[12].action, SetInputFiles)
    assert isinstance(options.steps[15].action, SwitchPage)
    assert isinstance(options.steps[19].action, AddCookies)


def test_uploads_are_bounded_and_named_safely() -> None:
    big = steps.input_file("big.bin", b"x" * 2000)
    assert (
        "too large" in refused(steps.set_input_files("#f", big))["steps[0].set_input_files.files"]
    )
    bad = refused(steps.set_input_files("#f", steps.input_file("../etc/passwd", b"")))
    assert "base name" in bad["steps[0].set_input_files.files[0].name"]
    many = [steps.input_file(f"{i}.txt", b"") for i in range(17)]
    assert (
        "at most 16"
        in refused(steps.set_input_files("#f", *many))["steps[0].set_input_files.files"]
    )


def test_cookie_fields_are_checked() -> None:
    bad = refused(
        steps.add_cookies(
            pb.Cookie(name="", value="1", url="https://example.org/"),
            pb.Cookie(name="a", value="x;y", domain="example.org", path="/"),
            pb.Cookie(name="a", value="1"),
            pb.Cookie(name="a", value="1", url="ftp://example.org/"),
            pb.Cookie(name="a", value="1", url="https://example.org/", same_site="lax"),
            pb.Cookie(name="a", value="v" * 5000, url="https://example.org/"),
        ),
        steps.add_cookies(),
        steps.get_cookies(*[f"https://e{i}.org/" for i in range(65)]),
    )
    assert "1..256" in bad["steps[0].add_cookies.cookies[0].name"]
    assert "';'" in bad["steps[0].add_cookies.cookies[1].value"]
    assert "url or domain" in bad["steps[0].add_cookies.cookies[2].domain"]
    assert "ftp" in bad["steps[0].add_cookies.cookies[3].url"]
    assert "not one of" in bad["steps[0].add_cookies.cookies[4].same_site"]
    assert "4096" in bad["steps[0].add_cookies.cookies[5].value"]
    assert "1..1000" in bad["steps[1].add_cookies.cookies"]
    assert "at most 64" in bad["steps[2].get_cookies.urls"]


def test_page_frame_and_wait_fields_are_checked() -> None:
    bad = refused(
        steps.switch_page(),
        steps.switch_page(page_id="p1", url="**"),
        steps.within(steps.goto("https://example.org/"), frame_selector="iframe"),
        steps.within(steps.click("#a"), frame_selector="iframe[x"),
        steps.within(steps.click("#a"), page_id="p" * 65),
        steps.wait_for_url(""),
        steps.wait_for_function("  "),
        steps.type_text("#a", "x", delay_s=2),
        steps.scroll(),
        steps.select_option("#s"),
        steps.go_back("soon"),
    )
    assert "exactly one" in bad["steps[0].switch_page"]
    assert "exactly one" in bad["steps[1].switch_page"]
    assert "not for goto" in bad["steps[2].frame_selector"]
    assert "unbalanced" in bad["steps[3].frame_selector"]
    assert "page id" in bad["steps[4].page_id"]
    assert "empty" in bad["steps[5].wait_for_url.url"]
    assert "empty" in bad["steps[6].wait_for_function.expression"]
    assert "0..1s" in bad["steps[7].type.delay"]
    assert "non-zero" in bad["steps[8].scroll"]
    assert "1..64" in bad["steps[9].select_option.values"]
    assert "not one of" in bad["steps[10].go_back.wait_until"]


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
