"""browser_jail's three modes where bwrap cannot be used, and the policies the jail carries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from broker.engines import jail, sandbox


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
