"""The download step reads the browser's file from a folder the browser's user owns: a link or
a special file put where the download was is refused, never followed to a host file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.engines.playwright.bounded_results import StepRefused
from broker.engines.playwright.steps.reading import _read_bounded
from broker.model.steps.base import StepErrorKind


def test_a_regular_file_is_read_within_the_bound(tmp_path: Path) -> None:
    file = tmp_path / "download"
    file.write_bytes(b"report")
    assert _read_bounded(str(file), 16) == b"report"


def test_a_link_to_a_host_file_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    link = tmp_path / "download"
    link.symlink_to(secret)
    with pytest.raises(StepRefused) as refused:
        _read_bounded(str(link), 1024)
    assert refused.value.kind is StepErrorKind.BLOCKED
    assert "link" in str(refused.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "download"
    os.mkfifo(fifo)
    with pytest.raises(StepRefused, match="not a regular file"):
        _read_bounded(str(fifo), 1024)
