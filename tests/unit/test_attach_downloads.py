"""The lease's downloads folder is measured as well as the browser's progress events: over the
lease's total, every download under way is cancelled and partial files are removed, while
completed files under the bounds stay (they count; the lease's end deletes the folder)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from broker.attach import downloads
from broker.attach.downloads import DownloadWatch


def _progress(guid: object, state: str, received: object) -> dict[str, object]:
    return {"guid": guid, "state": state, "receivedBytes": received}


def test_progress_events_bound_each_file_and_the_total_and_cancel_once(tmp_path: Path) -> None:
    asked: list[str] = []
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=asked.append)
    watch.event("Browser.downloadProgress", _progress("a", "inProgress", 90))
    watch.event("Browser.downloadProgress", _progress("a", "completed", 90))
    watch.event("Page.downloadProgress", _progress("b", "inProgress", 50))
    assert asked == []
    watch.event("Page.downloadProgress", _progress("b", "inProgress", 70))  # 160 in all
    watch.event("Page.downloadProgress", _progress("b", "inProgress", 80))  # before it stopped
    watch.event("Browser.downloadProgress", _progress("c", "inProgress", 101))  # one file
    assert asked == ["b", "c"]
    assert watch.active == {}


@pytest.mark.parametrize(
    "params",
    [
        _progress(None, "inProgress", 10**9),
        _progress(["a"], "inProgress", 10**9),
        _progress("a", "inProgress", "1e12"),
        _progress("a", "inProgress", None),
        {"guid": "a"},
        {},
    ],
)
def test_malformed_progress_is_ignored(tmp_path: Path, params: dict[str, object]) -> None:
    asked: list[str] = []
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=asked.append)
    watch.event("Browser.downloadProgress", params)
    watch.event("Runtime.consoleAPICalled", _progress("x", "inProgress", 10**9))
    assert asked == [] and watch.active == {}


async def test_over_the_total_the_folder_check_cancels_and_removes_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "POLL_S", 0.01)
    asked: list[str] = []
    watch = DownloadWatch(str(tmp_path), max_file=1000, max_total=1000, cancel=asked.append)
    watch.event("Browser.downloadProgress", _progress("running", "inProgress", 10))
    (tmp_path / "done").write_bytes(b"d" * 500)  # completed: stays
    (tmp_path / "running").write_bytes(b"r" * 10)  # named by its guid (allowAndName)
    (tmp_path / "Unconfirmed 1.crdownload").write_bytes(b"p" * 300)  # no event was heard of it
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"o" * 5000)
    os.symlink(outside, tmp_path / "link")  # counted as a link, never followed or removed
    assert watch.folder_bytes() < 1000
    poll = asyncio.create_task(watch.poll_forever())
    try:
        await asyncio.sleep(0.2)
        assert asked == []  # under the total: nothing happens
        (tmp_path / "more.crdownload").write_bytes(b"m" * 200)  # now over
        for _ in range(500):
            if asked and not (tmp_path / "more.crdownload").exists():
                break
            await asyncio.sleep(0.01)
    finally:
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
    assert asked == ["running"]
    assert sorted(os.listdir(tmp_path)) == ["done", "link"]
    assert outside.read_bytes() == b"o" * 5000
    assert watch.folder_bytes() < 1000


def test_a_download_that_finished_before_its_cancel_is_told_canceled_and_not_counted(
    tmp_path: Path,
) -> None:
    asked: list[str] = []
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=asked.append)
    fast = _progress("fast", "completed", 5000)  # its first event is its last
    watch.event("Browser.downloadProgress", fast)
    assert fast["state"] == "canceled"  # the event the client is sent
    kept = _progress("kept", "completed", 90)
    watch.event("Browser.downloadProgress", kept)
    assert kept["state"] == "completed" and watch.finished == 90
    past_total = _progress("past", "completed", 90)  # 180 in all
    watch.event("Browser.downloadProgress", past_total)
    assert past_total["state"] == "canceled" and watch.finished == 90
    watch.event("Browser.downloadProgress", _progress("fast", "inProgress", 6000))  # stale
    assert asked == [] and watch.active == {}


def test_the_folder_is_trimmed_to_the_bounds_whatever_the_events_said(tmp_path: Path) -> None:
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=print)
    for age, (name, size) in enumerate([("old", 90), ("huge", 500), ("newer", 50), ("new", 30)]):
        (tmp_path / name).write_bytes(b"x" * size)
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    assert watch.trim() is True  # 90 + 50 kept; "new" would take it past 150
    assert sorted(os.listdir(tmp_path)) == ["newer", "old"]
    assert watch.trim() is False and watch.folder_bytes() == 140
