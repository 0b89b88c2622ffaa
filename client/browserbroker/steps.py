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
