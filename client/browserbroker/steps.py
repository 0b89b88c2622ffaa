"""Builders for Run steps: `steps.goto(url)`, `steps.click("#go")`, ..."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.duration_pb2 import Duration

from browserbroker.v1 import broker_pb2 as pb


def _step(timeout_s: float | None, **action: Any) -> pb.Step:
    step = pb.Step(**action)
    if timeout_s is not None:
        step.timeout.CopyFrom(_duration(timeout_s))
    return step


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def goto(url: str, wait_until: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, goto=pb.Goto(url=url, wait_until=wait_until))


def click(selector: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, click=pb.Click(selector=selector))


def fill(selector: str, value: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, fill=pb.Fill(selector=selector, value=value))


def press(selector: str, key: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, press=pb.Press(selector=selector, key=key))


def wait_for_selector(selector: str, state: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, wait_for_selector=pb.WaitForSelector(selector=selector, state=state))


def wait_for_load_state(state: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, wait_for_load_state=pb.WaitForLoadState(state=state))


def evaluate(expression: str, arg: Any = None, timeout_s: float | None = None) -> pb.Step:
    arg_json = "" if arg is None else json.dumps(arg)
    return _step(timeout_s, evaluate=pb.Evaluate(expression=expression, arg_json=arg_json))


def content(timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, get_content=pb.GetContent())


def text(selector: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, get_text=pb.GetText(selector=selector))


def attribute(selector: str, name: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, get_attribute=pb.GetAttribute(selector=selector, name=name))


def screenshot(full_page: bool = False, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, screenshot=pb.Screenshot(full_page=full_page))


def pdf(timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, pdf=pb.Pdf())


def hover(selector: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, hover=pb.Hover(selector=selector))


def check(selector: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, check=pb.Check(selector=selector))


def uncheck(selector: str, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, uncheck=pb.Uncheck(selector=selector))


def select_option(selector: str, *values: str, timeout_s: float | None = None) -> pb.Step:
    """Select options of a <select> by value or label; the result's `.value` lists those selected."""
    return _step(timeout_s, select_option=pb.SelectOption(selector=selector, values=values))


def type_text(
    selector: str, text: str, delay_s: float = 0.0, timeout_s: float | None = None
) -> pb.Step:
    """Type `text` key by key into `selector`, pausing `delay_s` between keys."""
    return _step(timeout_s, type=pb.Type(selector=selector, text=text, delay=_duration(delay_s)))


def scroll(
    selector: str = "", delta_x: int = 0, delta_y: int = 0, timeout_s: float | None = None
) -> pb.Step:
    """Scroll `selector` into view, or (without one) the page by delta_x/delta_y pixels."""
    return _step(timeout_s, scroll=pb.Scroll(selector=selector, delta_x=delta_x, delta_y=delta_y))


def go_back(wait_until: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, go_back=pb.GoBack(wait_until=wait_until))


def go_forward(wait_until: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, go_forward=pb.GoForward(wait_until=wait_until))


def reload(wait_until: str = "", timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, reload=pb.Reload(wait_until=wait_until))


def wait_for_url(url: str, wait_until: str = "", timeout_s: float | None = None) -> pb.Step:
    """Wait until the page's URL matches `url` (a glob such as "**/done*", or the exact URL)."""
    return _step(timeout_s, wait_for_url=pb.WaitForUrl(url=url, wait_until=wait_until))


def wait_for_response(url: str, timeout_s: float | None = None) -> pb.Step:
    """Wait for a response whose URL matches the glob `url` (one already received counts)."""
    return _step(timeout_s, wait_for_response=pb.WaitForResponse(url=url))


def wait_for_function(expression: str, arg: Any = None, timeout_s: float | None = None) -> pb.Step:
    """Wait until `expression` is truthy in the page; the result's `.value` is that value."""
    arg_json = "" if arg is None else json.dumps(arg)
    return _step(
        timeout_s, wait_for_function=pb.WaitForFunction(expression=expression, arg_json=arg_json)
    )


def input_file(name: str, data: bytes, mime_type: str = "") -> pb.InputFile:
    return pb.InputFile(name=name, data=data, mime_type=mime_type)


def set_input_files(selector: str, *files: pb.InputFile, timeout_s: float | None = None) -> pb.Step:
    """Set the files of an <input type=file> (none clears it); see `input_file`."""
    return _step(timeout_s, set_input_files=pb.SetInputFiles(selector=selector, files=files))


def download(selector: str, timeout_s: float | None = None) -> pb.Step:
    """Click `selector` and capture the download it starts: `.data` its bytes, `.text` its name."""
    return _step(timeout_s, download=pb.Download(selector=selector))


def list_pages(timeout_s: float | None = None) -> pb.Step:
    """The lease's open pages: the result's `.pages`."""
    return _step(timeout_s, list_pages=pb.ListPages())


def switch_page(page_id: str = "", url: str = "", timeout_s: float | None = None) -> pb.Step:
    """Make a page current: by id, or the first whose URL matches the glob `url` (waiting for
    it to open, e.g. a popup)."""
    return _step(timeout_s, switch_page=pb.SwitchPage(page_id=page_id, url=url))


def close_page(page_id: str = "", timeout_s: float | None = None) -> pb.Step:
    """Close a page (by default the current one)."""
    return _step(timeout_s, close_page=pb.ClosePage(page_id=page_id))


def bring_to_front(timeout_s: float | None = None) -> pb.Step:
    """Bring the page to the front (activate its tab); the current page stays current."""
    return _step(timeout_s, bring_to_front=pb.BringToFront())


def storage_state(timeout_s: float | None = None) -> pb.Step:
    """The context's cookies and local storage as Playwright storage-state JSON in `.data`;
    start a later lease from it with ContextOptions(storage_state=...)."""
    return _step(timeout_s, storage_state=pb.StorageState())


def get_cookies(*urls: str, timeout_s: float | None = None) -> pb.Step:
    """The context's cookies (only those sent to `urls` when given) in `.value`."""
    return _step(timeout_s, get_cookies=pb.GetCookies(urls=urls))


def add_cookies(*cookies: pb.Cookie, timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, add_cookies=pb.AddCookies(cookies=cookies))


def clear_cookies(timeout_s: float | None = None) -> pb.Step:
    return _step(timeout_s, clear_cookies=pb.ClearCookies())


def within(step: pb.Step, page_id: str = "", frame_selector: str = "") -> pb.Step:
    """`step` acting in the page `page_id` (not the current one) and/or inside the <iframe>
    that `frame_selector` names."""
    out = pb.Step()
    out.CopyFrom(step)
    out.page_id = page_id
    out.frame_selector = frame_selector
    return out
