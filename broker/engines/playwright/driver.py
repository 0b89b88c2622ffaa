"""Plumbing under the Playwright engine: its driver process, browser processes, and messages.

Playwright offers no public handle on its driver (the Node process every call goes through), so
the few private attributes the broker relies on are read here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import traceback
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil
from playwright.async_api import Browser, Playwright
from playwright.async_api import Error as PlaywrightError

from broker.common.cleanup import abandon, bounded
from broker.engines.playwright.measure_engine import start_driver
from broker.errors import Unavailable

log = logging.getLogger("broker.engines")

T = TypeVar("T")


def first_line(message: str) -> str:
    """The line of a Playwright error that says what went wrong (not its call log)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "browser error"
    # WebDriver BiDi says "Protocol error (browsingContext.navigate): unknown error" first and
    # the cause on the next line ("Message: Error: NS_ERROR_UNKNOWN_HOST at http://...").
    if len(lines) > 1 and "Protocol error" in lines[0] and lines[1].startswith("Message:"):
        return f"{lines[0]}: {lines[1].removeprefix('Message:').strip()}"
    return lines[0]


async def call_while_connected(
    browser: Browser, gone: asyncio.Future[None] | None, work: Awaitable[T], what: str, doing: str
) -> T:
    """`work`'s result, or Unavailable once `gone` (resolved when `browser` disconnects) is done.

    Playwright can leave a call that was in flight when its browser was killed (new_page, for
    one) unanswered for ever, and its cancellation then waits for an answer too. So the call
    is abandoned, not awaited, once the browser is gone.
    """
    task = asyncio.ensure_future(work)
    if gone is None:  # gone already, or not launched by this engine
        if browser.is_connected():
            return await task
        gone = asyncio.get_running_loop().create_future()
        gone.set_result(None)
    either: list[asyncio.Future[Any]] = [task, gone]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        abandon(task)
        raise
    if task.done():
        return task.result()
    abandon(task)
    raise Unavailable(f"{what} went away while {doing}")


@dataclass(eq=False)
class BrowserRecord:
    """What the engine knows of one browser it launched, from launch until it disconnects."""

    browser: Browser
    pid: int | None  # None once killed (the PID may be reused) or if it could not be learnt
    # Resolved when the browser disconnects, so calls on it can be abandoned (while_connected).
    gone: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    opened: int = 0  # sessions opened in it (shared browsers, for recycling)
    opening: int = 0  # sessions being opened in it, not yet tracked as sessions
    retiring: bool = False  # takes no new sessions; closed once its last session has closed


def kill_browser(record: BrowserRecord) -> None:
    if record.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        record.pid = None


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Driver:
    """Playwright's driver process: started on first use, shielded from cancellation (a
    caller cancelled mid-start must not leave a driver nobody can stop), watched for death, and
    started afresh on the next use after it died. `generation` counts the deaths, so a call
    that failed across one knows its driver went away."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost
        self._start: asyncio.Future[Playwright] | None = None
        self.playwright: Playwright | None = None
        self.generation = 0

    @property
    def pid(self) -> int | None:
        return driver_pid(self.playwright)

    async def ensure(self, timeout_s: float = 30.0) -> Playwright:
        """The running driver; Unavailable if it does not start within `timeout_s` (the start
        goes on, and the next caller waits for the same one)."""
        if self._start is None:
            quiet_aborted_calls(asyncio.get_running_loop())
            skip_call_stacks(asyncio.get_running_loop())
            self._start = asyncio.ensure_future(start_driver())
            self._start.add_done_callback(self._watch)
        try:
            self.playwright = await bounded(asyncio.shield(self._start), timeout_s)
        except TimeoutError:
            raise Unavailable(f"Playwright's driver did not start within {timeout_s:g}s") from None
        return self.playwright

    def _watch(self, start: asyncio.Future[Playwright]) -> None:
        if start.cancelled() or start.exception() is not None:
            self._start = None  # the next use tries again
            return
        died = driver_death(start.result())
        if died is not None:
            died.add_done_callback(lambda _: self._lost(start))

    def _lost(self, start: asyncio.Future[Playwright]) -> None:
        if start is not self._start:
            return  # an old driver, already replaced or stopped
        self.generation += 1
        self._start = None
        self.playwright = None
        self._on_lost()

    async def stop(self) -> None:
        start, self._start = self._start, None
        self.playwright = None
        if start is None:
            return
        if not start.done():
            start.cancel()  # a start that never finished: nothing to stop
            return
        with contextlib.suppress(Exception):
            await bounded(start.result().stop(), 5.0)


def _driver_transport(playwright: Playwright | None) -> object:
    connection = getattr(getattr(playwright, "_impl_obj", None), "_connection", None)
    return getattr(connection, "_transport", None)


def driver_pid(playwright: Playwright | None) -> int | None:
    """The PID of Playwright's driver process, while one runs."""
    proc = getattr(_driver_transport(playwright), "_proc", None)
    pid = getattr(proc, "pid", None)
    return pid if isinstance(pid, int) else None


def driver_death(playwright: Playwright) -> asyncio.Future[Any] | None:
    """A future that completes when the driver dies, if this Playwright version exposes one.

    Playwright has no public event for it: every later call just fails with "Connection closed
    while reading from the driver". Its transport's error future is the one signal.
    """
    died = getattr(_driver_transport(playwright), "on_error_future", None)
    return died if isinstance(died, asyncio.Future) else None


_QUIETED_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def quiet_aborted_calls(loop: asyncio.AbstractEventLoop) -> None:
    """Keep Playwright's aborted calls out of the error log.

    When a task awaiting a Playwright call is cancelled twice in quick succession (a Run's
    deadline, then its lease's release), Playwright's abort handshake is interrupted and the
    call's future is dropped holding "Task was cancelled". asyncio would log that at error level
    as "Future exception was never retrieved"; it is the cancellation working, so it is logged
    at debug level instead. Everything else goes to the handler that was there before.
    """
    if loop in _QUIETED_LOOPS:
        return
    _QUIETED_LOOPS.add(loop)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if (
            isinstance(error, PlaywrightError)
            and error.message.startswith("Task was cancelled")
            and str(context.get("message", "")).startswith("Future exception was never retrieved")
        ):
            log.debug("an aborted browser call was dropped: %s", first_line(error.message))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


# What Playwright attaches to a failed call's error in place of the caller's Python stack.
CALL_STACK = traceback.StackSummary.from_list([("<broker>", 0, "browser call", "")])
_STACKLESS_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def skip_call_stacks(loop: asyncio.AbstractEventLoop) -> None:
    """Spare every Playwright call its Python stack capture.

    For each message it sends its driver, Playwright's client records the calling task's
    Python stack (`traceback.extract_stack`: ten frames, each with a source line read through
    linecache and a stat of its file) unless the task carries one already, as its sync API's
    tasks do; the stack is only ever used as the `stack` text of the error if the call fails,
    which the broker never reads. Every task on the loop now carries a fixed one, those already
    running included. (The call's API name, which error messages start with, is still worked out
    per call.)
    """
    if loop in _STACKLESS_LOOPS:
        return
    _STACKLESS_LOOPS.add(loop)
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        task.__pw_stack_trace__ = CALL_STACK  # type: ignore[attr-defined]
        return task  # type: ignore[return-value]

    loop.set_task_factory(factory)
    for task in asyncio.all_tasks(loop):  # those started before the driver (the pool's refills)
        task.__pw_stack_trace__ = CALL_STACK  # type: ignore[attr-defined]


class BrowserProcesses:
    """An engine's browser processes (below its own driver), from walks of the process table.

    A walk blocks, so on a serving loop `recent()` runs it in a thread, at most once per
    `max_age_s`, shared by concurrent callers; `pids` is the last walk's answer, kept current
    as browsers are launched and go away.
    """

    def __init__(self, executable: str, driver_pid: Callable[[], int | None]) -> None:
        self._executable = executable
        self._driver_pid = driver_pid
        self.pids: list[int] = []
        # Launchers of browsers the broker started itself (attachable ones, on a pipe of its
        # own): their browsers are below these, not below the driver.
        self.roots: set[int] = set()
        self._walked_at = -1.0
        self._walk: asyncio.Task[list[int]] | None = None

    def walk(self) -> list[int]:
        pids = browser_processes(self._executable, self._driver_pid())
        for root in list(self.roots):
            pids += browser_processes(self._executable, root)
        self.pids = pids
        with contextlib.suppress(RuntimeError):  # no running loop: a synchronous caller
            self._walked_at = asyncio.get_running_loop().time()
        return self.pids

    async def recent(self, max_age_s: float) -> list[int]:
        loop = asyncio.get_running_loop()
        if loop.time() - self._walked_at > max_age_s:
            if self._walk is None or self._walk.done():
                self._walk = loop.create_task(asyncio.to_thread(self.walk))
            await asyncio.shield(self._walk)
            self._walked_at = loop.time()  # (the walk itself ran where no loop runs)
        return self.pids

    def forget(self, pid: int | None) -> None:
        self.pids = [known for known in self.pids if known != pid]


def process_tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MiB (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / (1024 * 1024)


def browser_processes(executable: str, parent: int | None) -> list[int]:
    """Browser (not helper) processes of `executable` below `parent`: the engine's own driver, so
    another engine or broker in the same process tree is never counted, or killed."""
    pids: list[int] = []
    if not executable or parent is None:
        return pids  # an unavailable engine (realpath("") would be the working directory)
    real = os.path.realpath(executable)
    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.Error:
        return pids
    parents: dict[int, int] = {}
    for proc in children:
        try:
            cmdline = proc.cmdline()
            ppid = proc.ppid()
        except psutil.Error:
            continue
        if not cmdline or any(a.startswith("--type=") or a == "-contentproc" for a in cmdline):
            continue
        if os.path.realpath(cmdline[0]) == real or os.path.basename(cmdline[0]) == os.path.basename(
            real
        ):
            pids.append(proc.pid)
            parents[proc.pid] = ppid
    # A browser's child caught between fork and exec (its crash handler, say) still shows the
    # browser's command line; it is not a browser of its own.
    return [pid for pid in pids if parents[pid] not in parents]
