"""Steps that act on an element as a user would: click, fill, keys, the mouse, form controls,
scrolling and files chosen for an upload."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.errors import FieldViolation
from broker.model.steps.base import Action, ElementAction, StepBounds, Target, step_kind
from broker.model.steps.checks import (
    MAX_URL_CHARS,
    MAX_VALUE_CHARS,
    check_not_blank,
    check_selector,
    check_text,
)

MAX_KEY_CHARS = 64
MAX_SELECT_VALUES = 64
MAX_TYPE_CHARS = 64 * 1024
MAX_TYPE_DELAY_S = 1.0
MAX_SCROLL_PX = 1_000_000
MAX_FILES = 16
MAX_FILE_NAME_CHARS = 255
MAX_MIME_CHARS = 255


@step_kind("click", Target.FRAME)
@dataclass(frozen=True)
class Click(ElementAction):
    pass


@step_kind("hover", Target.FRAME)
@dataclass(frozen=True)
class Hover(ElementAction):
    pass


@step_kind("check", Target.FRAME)
@dataclass(frozen=True)
class Check(ElementAction):
    pass


@step_kind("uncheck", Target.FRAME)
@dataclass(frozen=True)
class Uncheck(ElementAction):
    pass


@step_kind("fill", Target.FRAME)
@dataclass(frozen=True)
class Fill(Action):
    selector: str
    value: str

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        check_text(f"{prefix}.value", self.value, MAX_VALUE_CHARS, out)


@step_kind("press", Target.FRAME)
@dataclass(frozen=True)
class Press(Action):
    selector: str
    key: str

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        check_not_blank(f"{prefix}.key", self.key, out)
        check_text(f"{prefix}.key", self.key, MAX_KEY_CHARS, out)


@step_kind("select_option", Target.FRAME)
@dataclass(frozen=True)
class SelectOption(Action):
    selector: str
    values: tuple[str, ...]

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        if not 1 <= len(self.values) <= MAX_SELECT_VALUES:
            out.append(FieldViolation(f"{prefix}.values", f"1..{MAX_SELECT_VALUES} values"))
        for i, value in enumerate(self.values):
            check_text(f"{prefix}.values[{i}]", value, MAX_URL_CHARS, out)


@step_kind("type", Target.FRAME)
@dataclass(frozen=True)
class Type(Action):
    selector: str
    text: str
    delay_s: float = 0.0

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        check_text(f"{prefix}.text", self.text, MAX_TYPE_CHARS, out)
        if not 0 <= self.delay_s <= MAX_TYPE_DELAY_S:
            out.append(
                FieldViolation(f"{prefix}.delay", f"must be within 0..{MAX_TYPE_DELAY_S:g}s")
            )


@step_kind("scroll", Target.FRAME)
@dataclass(frozen=True)
class Scroll(Action):
    selector: str = ""  # into view; empty: by delta_x/delta_y
    delta_x: int = 0
    delta_y: int = 0

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        if self.selector:
            check_selector(prefix, self.selector, out)
        elif self.delta_x == 0 and self.delta_y == 0:
            out.append(FieldViolation(prefix, "set a selector or a non-zero delta"))
        for name, delta in (("delta_x", self.delta_x), ("delta_y", self.delta_y)):
            if abs(delta) > MAX_SCROLL_PX:
                out.append(FieldViolation(f"{prefix}.{name}", f"beyond ±{MAX_SCROLL_PX}"))


@dataclass(frozen=True)
class InputFile:
    name: str
    mime_type: str
    data: bytes = field(repr=False)


@step_kind("set_input_files", Target.FRAME)
@dataclass(frozen=True)
class SetInputFiles(Action):
    selector: str
    files: tuple[InputFile, ...]

    def validate(self, prefix: str, bounds: StepBounds, out: list[FieldViolation]) -> None:
        check_selector(prefix, self.selector, out)
        files, max_bytes = self.files, bounds.max_upload_bytes
        if len(files) > MAX_FILES:
            out.append(FieldViolation(f"{prefix}.files", f"at most {MAX_FILES} files"))
        total = sum(len(f.data) for f in files)
        if total > max_bytes:
            out.append(
                FieldViolation(
                    f"{prefix}.files",
                    f"{total} bytes in all; the limit is {max_bytes} (too large)",
                )
            )
        for i, f in enumerate(files[:MAX_FILES]):
            name_field = f"{prefix}.files[{i}].name"
            if not 1 <= len(f.name) <= MAX_FILE_NAME_CHARS:
                out.append(FieldViolation(name_field, f"1..{MAX_FILE_NAME_CHARS} characters"))
            elif "/" in f.name or "\\" in f.name or f.name in {".", ".."} or "\x00" in f.name:
                out.append(FieldViolation(name_field, "must be a base name, without a path"))
            check_text(f"{prefix}.files[{i}].mime_type", f.mime_type, MAX_MIME_CHARS, out)
