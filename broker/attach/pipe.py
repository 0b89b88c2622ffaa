"""A browser process started with `--remote-debugging-pipe`: it reads commands on its fd 3 and
writes messages on its fd 4, each ended by a NUL byte. Only this process holds the other ends,
so nothing else on the host can speak to the browser."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections import deque
from collections.abc import Sequence

from broker.attach.pipe_messages import (
    CHUNK_BYTES,
    MAX_BROWSER_MESSAGE_BYTES,
    Bound,
    Inline,
    Message,
    Oversized,
    PipeMessages,
)

__all__ = ["CHUNK_BYTES", "MAX_BROWSER_MESSAGE_BYTES", "BrowserPipe", "Oversized"]

_HIGH_FD = 10  # the pipe ends are moved above 3 and 4 before being put there in the child


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    os.close(fd)
    return moved


class BrowserPipe:
    """The process (its own process group, so it is killed with every helper it started) and
    both ends of its pipe."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stderr_tail: deque[str] = deque(maxlen=20)  # for the operator's log
        self._messages = PipeMessages()
        self._writer: asyncio.WriteTransport | None = None
        self._stderr: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, argv: Sequence[str], env: dict[str, str]) -> BrowserPipe:
        loop = asyncio.get_running_loop()
        to_browser_r, to_browser_w = (_high(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high(fd) for fd in os.pipe())
        err_r, err_w = (_high(fd) for fd in os.pipe())
        try:
            pid = os.posix_spawn(  # noqa: ASYNC221 (vfork and exec: it does not wait)
                argv[0],
                list(argv),
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                    (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                    (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
                ],
                setsid=True,
            )
        except BaseException:
            for fd in (to_browser_r, to_browser_w, from_browser_r, from_browser_w, err_r, err_w):
                os.close(fd)
            raise
        for fd in (to_browser_r, from_browser_w, err_w):
            os.close(fd)
        pipe = cls(pid, os.pidfd_open(pid))
        loop.add_reader(pipe._pidfd, pipe._reap)
        await loop.connect_read_pipe(lambda: pipe._messages, os.fdopen(from_browser_r, "rb", 0))
        writer, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(to_browser_w, "wb", 0)
        )
        pipe._writer = writer
        errors = asyncio.StreamReader(loop=loop)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(errors), os.fdopen(err_r, "rb", 0)
        )
        pipe._stderr = loop.create_task(pipe._tail(errors))
        return pipe

    async def _tail(self, errors: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while line := await errors.readline():
                self.stderr_tail.append(line.decode(errors="replace").rstrip()[:500])

    def _reap(self) -> None:
        # The browser is a zombie now, so its process group is still its own: its helpers go
        # with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return
            if not self.exited.done():
                self.exited.set_result(os.waitstatus_to_exitcode(status))
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if not self.exited.done():
            self.exited.set_result(-1)

    def handle_inline(self, inline: Inline, bound: Bound) -> None:
        """Hand each message to `inline` as it is read, while nothing waits before it
        (pipe_messages.py); what it leaves comes back from `read`."""
        self._messages.bound = bound
        self._messages.inline = inline

    async def read(self, bound: Bound = lambda head: MAX_BROWSER_MESSAGE_BYTES) -> Message | None:
        """The next message, or None once the browser has closed its end. A message longer than
        CHUNK_BYTES is held only up to `bound(its first bytes)` (at most
        MAX_BROWSER_MESSAGE_BYTES): a longer one is read on and dropped, and its envelope and
        size come back as Oversized."""
        if self._messages.inline is None:
            self._messages.bound = bound
        return await self._messages.next()

    def write(self, message: str | bytes) -> None:
        assert self._writer is not None
        if not self._writer.is_closing():
            data = message.encode() if isinstance(message, str) else message
            self._writer.write(data + b"\0")

    def kill(self) -> None:
        """SIGKILL to the browser's whole process group (its helpers, its jail)."""
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._stderr is not None:
            self._stderr.cancel()
