"""Renderers run inside the browser's sandbox, and no browser process runs as root, even when
the broker itself does (as in CI). Seen from the kernel: /proc/<pid>/status and namespaces."""

from __future__ import annotations

import os
import pwd

import psutil
import pytest

from broker.model.options import EngineName
from browserbroker import Engine, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import command_line, in_process_browsers


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)


def _is_renderer(proc: psutil.Process) -> bool:
    cmdline = command_line(proc)
    chromium = "--type=renderer" in cmdline
    firefox = "-contentproc" in cmdline and "-isForBrowser" in cmdline
    return chromium or firefox


@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_renderers_are_sandboxed_and_nothing_runs_as_root(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    running = await broker_factory(engines=[EngineName.CHROMIUM, EngineName.FIREFOX])
    async with running.client.lease(engine=engine) as lease:
        assert (await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)).ok
        browsers = in_process_browsers()
        renderers = [p for p in browsers if _is_renderer(p)]
        assert renderers, [command_line(p)[:2] for p in browsers]
        own_user_ns = os.readlink("/proc/self/ns/user")
        for proc in renderers:
            status = _status(proc.pid)
            # Seccomp mode 2: a syscall filter is installed; a user namespace of its own.
            assert status["Seccomp"].strip() == "2", (proc.pid, status["Seccomp"])
            assert status["NoNewPrivs"].strip() == "1"
            assert os.readlink(f"/proc/{proc.pid}/ns/user") != own_user_ns
        browser_uids = {int(_status(p.pid)["Uid"].split()[0]) for p in browsers}
        assert 0 not in browser_uids, "a browser process runs as root"
        if os.geteuid() == 0:
            expected = pwd.getpwnam(running.settings.browser_user).pw_uid
            assert browser_uids == {expected}


async def test_the_sandbox_can_only_be_turned_off_explicitly(
    broker_factory: BrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    running = await broker_factory(browser_sandbox=False)
    async with running.client.lease() as lease:
        assert (await lease.run(steps.evaluate("1"))).ok
        renderers = [p for p in in_process_browsers() if _is_renderer(p)]
        assert renderers and all(_status(p.pid)["Seccomp"].strip() == "0" for p in renderers)
    assert "browser sandbox is OFF" in caplog.text


async def test_a_launch_failure_does_not_echo_paths_or_command_lines(
    broker_factory: BrokerFactory,
) -> None:
    from browserbroker import UnavailableError

    running = await broker_factory(chromium_path="/bin/false")
    with pytest.raises(UnavailableError) as failed:
        await running.client.acquire(timeout=60)
    message = str(failed.value)
    assert "failed to launch" in message
    assert "/bin/false" not in message and "--" not in message and "/tmp" not in message
