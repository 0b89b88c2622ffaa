"""A lease's trace held to max_trace_bytes while Playwright records it, not after.

Playwright writes a trace as it goes, into its artifacts folder: the events (`<name>.trace`),
the network log (`<name>.network`) and the resources they refer to (`resources/<sha1>`), and
zips them on stop. The trace is named after the lease so its files can be found; they are
measured every WATCH_S, and a trace past its bound is stopped and discarded at once. The zip
is written only when what it would hold is within the bound, under a temporary name, and is
renamed into place only when it is within the bound too.

Resources are shared by the traces of one browser: every resource written since this trace
started counts against it, so the measure can only be too high, never too low.

Left on disk: a trace's resources, and the files of its first chunk (`<guid>.trace`,
`<guid>.network`: Playwright copies the network log when the chunk is renamed), stay in the
browser's artifacts folder until that browser closes and Playwright removes the folder. Each
trace adds at most about max_trace_bytes of them (past it the trace is dropped), but a tenant
that keeps its shared browser open (one lease held) and traces lease after lease grows the
temporary folder by that much per trace, without bound. They are not deleted here because
Playwright shares a resource between the traces of a browser by its sha1: a trace skips
writing one that exists and zips it by name when it stops, so deleting it while any other
trace of that browser records breaks that trace; and a trace records before the broker knows
of it (tracing starts as the context opens), while the first chunk's copied network log makes
"no trace is recording" unreadable from the folder. Doing it safely needs the first chunk named
after the lease (context.py) and a sweep of ended traces' resources while the folder holds no
`.network` file of a live trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import tempfile
from pathlib import Path

from playwright.async_api import BrowserContext

from broker.common.cleanup import TaskSet, bounded

log = logging.getLogger("broker.traces")

WATCH_S = 0.25
FIND_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0  # within the cleanup bound of the whole close (10 s)
PARTIAL_SUFFIX = ".part"  # a zip being written; the trace store deletes leftovers on start


class BoundedTrace:
    def __init__(self, context: BrowserContext, path: str, max_bytes: int) -> None:
        self._context = context
        self._path = path
        self._max_bytes = max_bytes
        self._name = Path(path).stem
        self._folder = ""  # Playwright's traces folder, once found
        self._known: set[str] = set()  # resources there before this trace started
        self._stopped = False
        self._found = asyncio.Event()  # set once the watcher has found the files, or failed
        self._tasks = TaskSet()
        self._tasks.spawn(self._watch())

    async def _watch(self) -> None:
        try:
            # Renames the trace after the lease (its first chunk, before any step, is dropped).
            await bounded(self._context.tracing.start_chunk(name=self._name), FIND_TIMEOUT_S)
            self._folder = await asyncio.to_thread(_find_folder, self._name)
            resources = os.path.join(self._folder, "resources")
            self._known = set(await asyncio.to_thread(_listing, resources))
            self._found.set()
            while not self._stopped:
                if await asyncio.to_thread(self.size) > self._max_bytes:
                    await self._drop()
                    return
                await asyncio.sleep(WATCH_S)
        except Exception as exc:  # a trace that cannot be watched is not kept
            log.warning("a lease's trace could not be watched: %s", exc)
            await self._drop()
        finally:
            self._found.set()

    def size(self) -> int:
        """What this trace has written so far (events, network log, new resources)."""
        if not self._folder:
            return 0
        total = sum(_size(p) for p in glob.glob(os.path.join(self._folder, f"{self._name}*")))
        resources = os.path.join(self._folder, "resources")
        new = [name for name in _listing(resources) if name not in self._known]
        return total + sum(_size(os.path.join(resources, name)) for name in new)

    async def _drop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.warning("a lease's trace was dropped", extra={"limit": self._max_bytes})
        with contextlib.suppress(Exception):
            await bounded(self._context.tracing.stop(), STOP_TIMEOUT_S)
        await asyncio.to_thread(self._remove_inputs)

    def _remove_inputs(self) -> None:
        if self._folder:
            for path in glob.glob(os.path.join(self._folder, f"{self._name}*")):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def save(self) -> None:
        """Stop the trace into its file; one over the bound is never written in full."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._found.wait(), FIND_TIMEOUT_S)
        await self._tasks.cancel()
        if self._stopped:
            return
        if not self._folder or await asyncio.to_thread(self.size) > self._max_bytes:
            await self._drop()
            return
        self._stopped = True
        partial = self._path + PARTIAL_SUFFIX
        try:
            await bounded(self._context.tracing.stop(path=partial), STOP_TIMEOUT_S)
            await asyncio.to_thread(_keep_if_within, partial, self._path, self._max_bytes)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            await asyncio.to_thread(self._remove_inputs)


def _find_folder(name: str) -> str:
    pattern = os.path.join(tempfile.gettempdir(), "playwright-artifacts-*", f"{name}.trace")
    found = glob.glob(pattern)
    if len(found) != 1:
        raise RuntimeError(f"found {len(found)} trace files named {name}")
    return os.path.dirname(found[0])


def _keep_if_within(partial: str, path: str, max_bytes: int) -> None:
    size = os.path.getsize(partial)
    if size > max_bytes:
        log.warning("a lease's trace was dropped", extra={"bytes": size, "limit": max_bytes})
        return
    os.replace(partial, path)


def _listing(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
