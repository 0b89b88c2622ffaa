"""browser_jail's three modes where bwrap cannot be used, and the policies the jail carries."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from broker.engines import downloads, jail, sandbox
from tests.conftest import require


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "bwrap" else real(name))


def test_auto_without_bwrap_runs_browsers_unjailed_and_says_so(
    no_bwrap: None, caplog: pytest.LogCaptureFixture
) -> None:
    plan = sandbox.plan(True, "browser-broker", "auto")
    assert plan.jail is None and not plan.problem
    assert "browser jail is OFF" in caplog.text and "browser_jail = required" in caplog.text


def test_required_without_bwrap_starts_no_browser(no_bwrap: None) -> None:
    plan = sandbox.plan(True, "browser-broker", "required")
    assert plan.jail is None
    assert plan.problem.startswith("browser_jail = required, but bubblewrap is not installed")


def test_off_is_said_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    assert sandbox.plan(True, "browser-broker", "off").jail is None
    assert "browser_jail = off" in caplog.text


def test_the_policies_refuse_file_urls_unless_the_operator_allows_them() -> None:
    assert "file://*" in jail.chromium_policy(False)["URLBlocklist"]  # type: ignore[operator]
    assert "file://*" not in jail.chromium_policy(True)["URLBlocklist"]  # type: ignore[operator]
    firefox = jail.firefox_policies(False)["policies"]
    assert firefox["WebsiteFilter"]["Block"] == ["file:///*"]  # type: ignore[index]
    allowed = jail.firefox_policies(True)["policies"]
    assert allowed["WebsiteFilter"]["Block"] == []  # type: ignore[index]


def test_the_jail_binds_only_the_browsers_own_writable_folders() -> None:
    words = jail.Jail("/usr/bin/bwrap", Path("/gen")).command("/usr/bin/chromium")
    writable = re.findall(r"(?<![\w-])--bind(?:-try)? (\S+)", words)
    assert writable == ['"$profile"', '"$downloads"']
    for hidden in ("/root", "/home", "/etc/hostname", "/var/lib", "/work"):
        assert f" {hidden} " not in words


def test_a_crashed_brokers_downloads_folders_are_swept_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    def parent(name: str, lock: bool = True) -> Path:
        folder = tmp_path / f"{downloads.PREFIX}{name}"
        (folder / "browser").mkdir(parents=True)
        (folder / "browser" / "in-flight").write_text("x")
        if lock:
            (folder / downloads.LOCK).touch()
        return folder

    crashed, live, young = parent("crashed"), parent("live"), parent("young", False)
    old = parent("old", False)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / "not-ours"
    other.mkdir()
    with open(live / downloads.LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # its broker runs
        removed = downloads.sweep_stale(str(tmp_path))
    assert sorted(removed) == sorted([str(crashed), str(old)])
    assert live.is_dir() and young.is_dir() and other.is_dir()
    assert not crashed.exists() and not old.exists()


def test_the_launcher_binds_only_a_downloads_folder_the_broker_made() -> None:
    plan = sandbox.plan(True, "browser-broker", "auto")
    require(plan.user is not None or plan.jail is not None, "browsers need no launcher here")
    launcher = plan.executable("/bin/true")
    for wrong in ("/etc", "/root/downloads", f"/tmp/{downloads.PREFIX}x/../../etc"):
        done = subprocess.run(
            [launcher],
            env={"PATH": "/usr/bin:/bin", sandbox.DOWNLOADS_ENV: wrong},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 1 and "refusing downloads folder" in done.stderr, done
    folder = downloads.new_folder(*((plan.user.uid, plan.user.gid) if plan.user else (None, None)))
    try:
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        done = subprocess.run(
            [launcher],
            env={"PATH": "/usr/bin:/bin", sandbox.DOWNLOADS_ENV: str(folder)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    finally:
        downloads.remove(folder)
    assert not folder.exists()


def test_a_parent_first_made_for_the_daemons_own_browsers_opens_to_the_browser_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One process may make folders of both kinds (tests do): a parent made 0700 for a browser
    of the daemon's own user opens to a browser user (0711) when it is handed a folder there."""
    monkeypatch.setattr(downloads, "_parent", [])
    monkeypatch.setattr(downloads, "_lock_fd", [])
    mine = downloads.new_folder(None, None)
    parent = mine.parent
    try:
        assert oct(parent.stat().st_mode & 0o777) == "0o700"
        theirs = downloads.new_folder(os.getuid(), os.getgid())
        assert theirs.parent == parent
        assert oct(parent.stat().st_mode & 0o777) == "0o711"
    finally:
        os.close(downloads._lock_fd[0])
        shutil.rmtree(parent, ignore_errors=True)


def test_a_crashed_brokers_claimed_profiles_are_swept_and_nothing_else(tmp_path: Path) -> None:
    """An attachable browser's profile lives beside the parent, named in its `claimed` folder:
    the sweep of a crashed broker's parent removes those profiles, and only those."""

    def parent(name: str, claims: list[str]) -> Path:
        folder = tmp_path / f"{downloads.PREFIX}{name}"
        (folder / downloads.CLAIMED).mkdir(parents=True)
        (folder / downloads.LOCK).touch()
        for claim in claims:
            (folder / downloads.CLAIMED / claim).touch()
        return folder

    def profile(name: str) -> Path:
        folder = tmp_path / name
        (folder / "Default").mkdir(parents=True)
        return folder

    crashed_profile = profile("playwright_attach_profile-crashed")
    live_profile = profile("playwright_attach_profile-live")
    not_claimable = profile("precious")
    victim = profile("victim")
    (tmp_path / "playwright_attach_profile-link").symlink_to(victim)
    parent("crashed", [crashed_profile.name, not_claimable.name, "playwright_attach_profile-link"])
    live = parent("live", [live_profile.name])
    with open(live / downloads.LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = downloads.sweep_stale(str(tmp_path))
    assert str(crashed_profile) in removed and not crashed_profile.exists()
    assert live_profile.is_dir() and not_claimable.is_dir()
    assert (victim / "Default").is_dir()  # a link named in a claim is not followed


def test_a_folder_is_claimed_until_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(downloads, "_parent", [])
    monkeypatch.setattr(downloads, "_lock_fd", [])
    made = downloads.new_claimed("playwright_attach_profile-")
    claims = downloads._parent[0] / downloads.CLAIMED
    assert made.parent == tmp_path and [p.name for p in claims.iterdir()] == [made.name]
    downloads.remove_claimed(made)
    assert not made.exists() and list(claims.iterdir()) == []
    with pytest.raises(ValueError, match="prefix"):
        downloads.new_claimed("anything-")
    os.close(downloads._lock_fd[0])


@pytest.mark.parametrize("remover", ["remove_tree", "shutil.rmtree"])
def test_a_folder_swapped_for_a_link_to_a_fifo_while_removed_neither_blocks_nor_is_followed(
    remover: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The browser's user owns the trees the daemon removes, and can swap a folder in one for a
    link between the remover's look at it and its open: to a FIFO (an open that never returns,
    as root, on the daemon's loop) or to the daemon's own files. shutil.rmtree opens the link;
    remove_tree does not."""
    tree = tmp_path / "profile"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    real_open = os.open

    def swapping_open(
        path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
    ) -> int:
        if os.fspath(path) == "sub" and (tree / "sub").is_dir():
            shutil.rmtree(tree / "sub")
            (tree / "sub").symlink_to(fifo)  # between the look and the open
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", swapping_open)
    remove = downloads.remove_tree if remover == "remove_tree" else shutil.rmtree

    def run() -> None:
        with contextlib.suppress(OSError):  # (rmtree refuses the link once it is let go)
            remove(tree)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    blocked = worker.is_alive()
    if blocked:
        with open(fifo, "w"):  # (lets the blocked open return)
            pass
        worker.join(10)
    if remover == "shutil.rmtree":
        assert blocked  # the attack, shown on what the daemon used before
        return
    assert not blocked and not tree.exists()
    assert fifo.exists() and (victim / "keep").exists()


def test_remove_tree_removes_what_it_can_reach_and_never_follows_a_link(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "file").write_text("x")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (tree / "a" / "link").symlink_to(victim)
    os.mkfifo(tree / "a" / "fifo")
    downloads.remove_tree(tree)
    assert not tree.exists() and (victim / "keep").exists()
    downloads.remove_tree(tmp_path / "absent")  # nothing to do, no error


def test_remove_tree_removes_a_tree_nested_deeper_than_its_bound(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    deepest = tree.joinpath(*["d"] * (downloads.MAX_DEPTH * 3 + 5))
    deepest.mkdir(parents=True)
    (deepest / "file").write_text("x")
    downloads.remove_tree(tree)
    assert not tree.exists()
    trailing = tmp_path / "trailing"
    (trailing / "sub").mkdir(parents=True)
    downloads.remove_tree(f"{trailing}/")  # a trailing slash names the same folder
    assert not trailing.exists()
