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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.attach.envelope import ENVELOPE_BYTES

# The largest message the broker reads whole: an answer to its own Playwright (a full-page
# screenshot of max_screenshot_pixels, 25 Mpx, is at most ~134 MB of base64). A reader says,
# from a message's first bytes, how much of it it will hold (`read`); past that, the message is
# read on and dropped, never held.
MAX_BROWSER_MESSAGE_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024  # read at once; a message bigger than this is measured against a bound
_HIGH_FD = 10  # the pipe ends are moved above 3 and 4 before being put there in the child


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    os.close(fd)
    return moved


@dataclass(frozen=True)
class Oversized:
    """A message over its bound, dropped as it was read: its first and last bytes, its size."""

    head: bytes
    tail: bytes
    size: int


class BrowserPipe:
    """The process (its own process group, so it is killed with every helper it started) and
    both ends of its pipe."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stderr_tail: deque[str] = deque(maxlen=20)  # for the operator's log
        self._reader: asyncio.StreamReader | None = None
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
        reader = asyncio.StreamReader(limit=CHUNK_BYTES, loop=loop)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_browser_r, "rb", 0)
        )
        writer, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(to_browser_w, "wb", 0)
        )
        pipe._reader, pipe._writer = reader, writer
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

    async def read(
        self, bound: Callable[[bytes], int] = lambda head: MAX_BROWSER_MESSAGE_BYTES
    ) -> bytes | Oversized | None:
        """The next message, or None once the browser has closed its end. A message longer than
        CHUNK_BYTES is held only up to `bound(its first bytes)` (at most
        MAX_BROWSER_MESSAGE_BYTES): a longer one is read in chunks and dropped, and its
        envelope and size come back as Oversized."""
        reader = self._reader
        assert reader is not None
        parts: list[bytes] = []
        size, limit = 0, -1
        head = tail = b""
        while True:
            try:
                chunk = (await reader.readuntil(b"\0"))[:-1]
                ended = True
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(max(exc.consumed, 1))
                ended = False
            except asyncio.IncompleteReadError:
                return None
            if not head:
                head = chunk[:ENVELOPE_BYTES]
            size += len(chunk)
            if limit < 0 and size > CHUNK_BYTES:
                limit = min(bound(head), MAX_BROWSER_MESSAGE_BYTES)
            if 0 <= limit < size:
                parts.clear()
                tail = (tail + chunk[-ENVELOPE_BYTES:])[-ENVELOPE_BYTES:]
            else:
                parts.append(chunk)
            if ended:
                if 0 <= limit < size:
                    return Oversized(head, tail, size)
                return parts[0] if len(parts) == 1 else b"".join(parts)

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
