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
from broker.attach.held_folder import HeldFolder


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
            if asked and sorted(os.listdir(tmp_path)) == ["done", "link"]:
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


def test_each_download_counts_once_however_many_sessions_hear_of_it(tmp_path: Path) -> None:
    # Chromium sends a download's events to every session that asked for them: the broker's own
    # Playwright on the lease and each attached client.
    asked: list[str] = []
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=asked.append)
    copies = [_progress("a", "completed", 90) for _ in range(3)]
    for copy in copies:
        watch.event("Browser.downloadProgress", copy)
    assert [c["state"] for c in copies] == ["completed"] * 3 and watch.finished == 90
    over = [
        {**_progress("b", "completed", 500), "filePath": str(tmp_path / "b.bin")},
        _progress("b", "completed", 500),
    ]
    for copy in over:
        watch.event("Page.downloadProgress", copy)
    assert [c["state"] for c in over] == ["canceled", "canceled"]
    assert "filePath" not in over[0] and watch.finished == 90
    # cancelled in flight, and finished anyway: every copy says canceled
    watch.event("Browser.downloadProgress", _progress("c", "inProgress", 101))
    assert asked == ["c"]
    late = [_progress("c", "completed", 120), _progress("c", "completed", 120)]
    for copy in late:
        watch.event("Browser.downloadProgress", copy)
    assert [c["state"] for c in late] == ["canceled", "canceled"]
    assert watch.doomed == {"b.bin", "c"}


def test_the_files_said_canceled_go_first_whatever_their_age(tmp_path: Path) -> None:
    watch = DownloadWatch(str(tmp_path), max_file=100, max_total=150, cancel=print)
    (tmp_path / "kept.bin").write_bytes(b"k" * 90)
    os.utime(tmp_path / "kept.bin", (2000, 2000))  # newer than the one removed
    (tmp_path / "gone.bin").write_bytes(b"g" * 60)
    os.utime(tmp_path / "gone.bin", (1000, 1000))
    watch.event("Browser.downloadProgress", _progress("k", "completed", 90))
    told = {**_progress("g", "completed", 90), "filePath": str(tmp_path / "gone.bin")}
    watch.event("Browser.downloadProgress", told)  # 180 in all: over the total
    assert told["state"] == "canceled"
    assert watch.trim() is False
    assert os.listdir(tmp_path) == ["kept.bin"]
    (tmp_path / "gone.bin").write_bytes(b"n" * 10)  # a later download of the same name stays
    assert watch.trim() is False and sorted(os.listdir(tmp_path)) == ["gone.bin", "kept.bin"]


def test_a_folder_swapped_for_a_link_never_has_the_daemon_touch_what_it_names(
    tmp_path: Path,
) -> None:
    # The browser's user owns the folder: a hostile browser can rename it and leave a symlink to
    # a folder of the daemon's in its place.
    folder, victim = tmp_path / "downloads", tmp_path / "daemon-state"
    folder.mkdir()
    victim.mkdir()
    for name in ("big.db", "a.crdownload", "newest"):
        (victim / name).write_bytes(b"v" * 500)
    watch = DownloadWatch(str(folder), max_file=100, max_total=150, cancel=print)
    watch.event("Browser.downloadProgress", _progress("a", "inProgress", 10))
    (folder / "mine.bin").write_bytes(b"m" * 50)
    folder.rename(tmp_path / "moved")
    os.symlink(victim, folder)
    watch.over_total()
    assert watch.trim() is False and watch.folder_bytes() == 50  # the folder it made
    watch.remove_partial()
    assert sorted(os.listdir(victim)) == ["a.crdownload", "big.db", "newest"]
    watch.close()
    # made on a path that is a link already: nothing is measured or removed through it
    linked = DownloadWatch(str(folder), max_file=100, max_total=150, cancel=print)
    assert linked.trim() is False and linked.folder_bytes() == 0
    linked.remove_partial()
    assert sorted(os.listdir(victim)) == ["a.crdownload", "big.db", "newest"]


def test_a_folder_closed_while_a_thread_measures_it_is_closed_by_that_thread(
    tmp_path: Path,
) -> None:
    folder = HeldFolder(str(tmp_path))
    (tmp_path / "a").write_bytes(b"a" * 10)
    with folder._lock:  # a worker thread mid-measure
        folder.close()  # the event loop does not wait for it
        assert folder._fd is not None
    assert folder.total_bytes() == 10  # a measure under way ends...
    assert folder._fd is None  # ...and closes the folder as it lets go
    assert folder.total_bytes() == 0
    folder.remove("a")
    assert (tmp_path / "a").exists()
    assert HeldFolder(str(tmp_path / "missing")).entries() == []
