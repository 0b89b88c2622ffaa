"""A Run's steps are decoded by their kind and validated on the way in: every bad field named,
every size bounded (uploads, cookies, patterns), before anything reaches a browser. Every step
kind is declared once, and every layer knows each of them."""

from __future__ import annotations

from typing import Any

import pytest

from broker.api import decode
from broker.errors import InvalidArgument
from broker.model.steps.input import SetInputFiles
from broker.model.steps.pages import SwitchPage
from broker.model.steps.storage import AddCookies
from broker.runtime.settings import Settings
from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb

SETTINGS = Settings(max_upload_bytes=1024)  # type: ignore[call-arg]


def run(*items: pb.Step) -> Any:
    return decode.run_options(pb.RunRequest(lease_id="l", token="t", steps=items), SETTINGS)


def refused(*items: pb.Step) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        run(*items)
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


def test_every_step_kind_is_known_to_every_layer() -> None:
    """Each kind declared in broker.model.steps has exactly one proto oneof field, one decoder
    and one Playwright handler: none is missing and none is left over."""
    from broker.api.decode.steps import DECODERS
    from broker.engines.playwright.steps import HANDLERS
    from broker.model.steps.base import KINDS_BY_NAME

    registered = set(KINDS_BY_NAME)
    on_the_wire = {f.name for f in pb.Step.DESCRIPTOR.oneofs_by_name["action"].fields}
    assert registered == on_the_wire
    assert set(DECODERS) == registered
    assert set(HANDLERS) == {kind.type for kind in KINDS_BY_NAME.values()}
    assert all(kind.type.kind is kind for kind in KINDS_BY_NAME.values())


def test_only_steps_of_another_shape_have_a_decoder_of_their_own() -> None:
    from broker.api.decode.steps import ACTION_MESSAGES, EXPLICIT, generic_misfits
    from broker.model.steps.base import KINDS_BY_NAME

    for name, kind in KINDS_BY_NAME.items():
        misfits = generic_misfits(kind, ACTION_MESSAGES[name])
        assert bool(misfits) == (name in EXPLICIT), (name, misfits)


def test_an_empty_string_means_the_default() -> None:
    options = run(
        pb.Step(goto=pb.Goto(url="https://example.org/")),
        pb.Step(wait_for_selector=pb.WaitForSelector(selector="#a")),
        pb.Step(wait_for_load_state=pb.WaitForLoadState()),
        steps.get_cookies("https://example.org/"),
        steps.screenshot(full_page=True),
    )
    goto, wait, load, cookies, shot = (step.action for step in options.steps)
    assert (goto.url, goto.wait_until) == ("https://example.org/", "load")
    assert (wait.selector, wait.state) == ("#a", "visible")
    assert load.state == "load"
    assert cookies.urls == ("https://example.org/",) and shot.full_page is True


def test_goto_reaches_no_local_scheme_the_operator_did_not_allow() -> None:
    bad = refused(steps.goto("file:///etc/passwd"), steps.goto("about:config"))
    assert bad == {
        "steps[0].goto.url": "file: URLs are not allowed on this broker",
        "steps[1].goto.url": "the only about: URL allowed is about:blank",
    }
    run(steps.goto("about:blank"), steps.goto("about:blank#top"))
    allowed = Settings(allow_file_urls=True)  # type: ignore[call-arg]
    request = pb.RunRequest(lease_id="l", token="t", steps=[steps.goto("file:///tmp/a.html")])
    assert decode.run_options(request, allowed).steps[0].name == "goto"


def test_frame_selectors_only_where_a_step_acts_in_a_frame() -> None:
    from broker.model.steps.base import KINDS_BY_NAME, Target

    not_in_frames = sorted(n for n, k in KINDS_BY_NAME.items() if k.target is not Target.FRAME)
    assert {"goto", "screenshot", "pdf", "list_pages", "get_cookies"} <= set(not_in_frames)
    assert "click" not in not_in_frames and "evaluate" not in not_in_frames
    bad = refused(
        steps.within(steps.screenshot(), frame_selector="iframe"),
        steps.within(steps.clear_cookies(), frame_selector="iframe"),
        steps.within(steps.evaluate("1"), frame_selector="  "),
    )
    assert bad == {
        "steps[0].frame_selector": "not for screenshot",
        "steps[1].frame_selector": "not for clear_cookies",
        "steps[2].frame_selector": "must not be empty",
    }
    assert run(steps.within(steps.evaluate("1"), frame_selector="iframe#x")).steps[0].frame_selector


def test_bring_to_front_takes_a_page_but_no_frame() -> None:
    """The step has no fields of its own: only the page it acts on, bounded like any other."""
    (step,) = run(steps.within(steps.bring_to_front(), page_id="p2")).steps
    assert step.name == "bring_to_front" and step.page_id == "p2"
    bad = refused(
        steps.within(steps.bring_to_front(), frame_selector="iframe"),
        steps.within(steps.bring_to_front(), page_id="p" * 65),
        steps.within(steps.bring_to_front(), page_id="p\x00"),
    )
    assert bad["steps[0].frame_selector"] == "not for bring_to_front"
    assert "not a page id" in bad["steps[1].page_id"]
    assert "not a page id" in bad["steps[2].page_id"]
