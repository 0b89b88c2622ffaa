"""browser_jail's three modes where bwrap cannot be used, and the policies the jail carries."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

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
