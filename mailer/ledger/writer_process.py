"""The SQLite ledger's writer as a child process: the group commits of ``ThreadWriter``, made
by a process of their own.

Why a process for SQLite: a writer thread shares the GIL with the event loop. Each commit
needs the GIL back after every statement and after the disk's fsync, and at thousands of
messages a second the loop holds it most of the time, so each mark waited longer for its
commit than the commit took. ``bench/bench_writer.py`` measures the two on the real send
path in one run (docs/ledger.md has the figures). PostgreSQL keeps the thread: its commits
are network round trips, and every sender is already a process of its own.

Everything on the event loop is ``ThreadWriter``'s: batches, futures, pacing. Only the
hand-over and the acknowledgements differ. The event loop writes each batch to the child's
stdin as one frame; the child commits whatever frames have arrived as one transaction
(``SQLiteApplier``, ``synchronous=FULL``) and writes one acknowledgement frame back, which
the event loop reads when it is readable (``drain`` reads it when no loop is running). No
thread of ours is involved, so an acknowledgement costs no GIL hand-off. Frames are a 4-byte
length and a ``marshal`` payload: the same interpreter writes and reads them. The child runs
as ``SCHED_BATCH`` (Linux), so that its wake-ups do not take the CPU from the event loop.

The child holds the ledger's lock with us (its descriptor is passed on), so a sender killed
with SIGKILL keeps its ledger locked until the child has committed the frames it had whole
(a torn last frame was never acknowledged) and exited. The child ignores SIGINT, SIGTERM and
SIGHUP: the sender drains, then closes the child's stdin, and the child's end of input is
always how it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from mailer.errors import LedgerError
from mailer.ledger.writer import Handover, ThreadWriter, commit_group

_LENGTH: Final = struct.Struct(">I")
PIPE_BYTES: Final = 1 << 20  # an unprivileged process may ask for this much
_CHILD: Final = "from mailer.ledger.writer_process import child; child()"


class ProcessWriter(ThreadWriter):
    """``ThreadWriter`` whose commits are made by a child process (see the module notes)."""

    paced = True

    def __init__(
        self,
        location: str,
        path: Path,
        lock_fd: int | None,
        clock: Callable[[], dt.datetime] | None,
    ) -> None:
        # The child imports this very package, from wherever this process found it, and
        # never from its working folder (-P): a mailer/ or select.py there is not ours.
        root = str(Path(__file__).resolve().parents[2])
        paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-c", _CHILD, str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=() if lock_fd is None else (lock_fd,),
                env=env,
                # Its own process group: a Ctrl-C at the terminal is the sender's to handle
                # (it drains, then closes the child's input), even while the child starts.
                process_group=0,
            )
        except OSError as exc:
            raise LedgerError(f"{location}: cannot start the ledger writer ({exc})") from exc
        assert self._child.stdin is not None and self._child.stdout is not None
        self._to_child: IO[bytes] = self._child.stdin
        self._from_child: IO[bytes] = self._child.stdout
        # Room for a big batch while the child is in a commit: the event loop writes it and
        # goes on, rather than waiting for the disk (Linux; elsewhere the default size).
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self._to_child.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        super().__init__(location, lambda: _NoApplier(), clock)

    # --- what differs from the thread ---

    def _start(self, applier: Callable[[], Any]) -> None:
        """No thread: acknowledgements are read on the event loop (``add_reader``), or by
        ``drain`` when no loop is bound."""
        self._ack_fd = self._from_child.fileno()
        self._ack_bytes = bytearray()
        self._frame_fd = self._to_child.fileno()
        for fd in (self._ack_fd, self._frame_fd):
            os.set_blocking(fd, False)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        super()._bind(loop)
        if self._alive:
            loop.add_reader(self._ack_fd, self._readable)

    def _unbind(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._ack_fd)  # a no-op once that loop is closed
            self._loop = None

    def _readable(self) -> None:
        self._read_acks()
        self._take_acks()

    def _read_acks(self) -> None:
        """Take the acknowledgements that have arrived. The end of the child's output (it
        exited, or died) or a frame that makes no sense leaves it not alive."""
        try:
            chunk = os.read(self._ack_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._ack_bytes += chunk
            try:
                for frame in _whole_frames(self._ack_bytes):
                    upto, commits, refused, error = marshal.loads(frame)
                    self._acks.append((upto, commits, [tuple(r) for r in refused], error))
                    self._upto = upto
                return
            except (ValueError, EOFError, TypeError):
                pass
        self._alive = False
        self._unbind()

    def drain(self) -> None:
        self._unbind()
        self._send_batch()
        while self._upto < self._seq and self._alive:
            _wait(self._ack_fd)
            self._read_acks()
        self._take_acks()

    def _hand_over(self, batch: Handover) -> None:
        """Write the batch's frame. While the pipe is full, acknowledgements are read
        meanwhile, so that a child blocked writing one can always go on reading."""
        frame = marshal.dumps(batch)
        left = memoryview(_LENGTH.pack(len(frame)) + frame)
        read = False
        while left:
            try:
                left = left[os.write(self._frame_fd, left) :]
            except BlockingIOError:
                if _wait(self._ack_fd, self._frame_fd):
                    self._read_acks()
                    read = True
            except OSError as exc:  # the child is gone
                raise LedgerError(f"the ledger writer process is gone ({exc})") from exc
        if read and self._loop is not None:
            self._loop.call_soon(self._take_acks)

    def _end(self) -> None:
        self._unbind()
        with contextlib.suppress(OSError, ValueError):
            self._to_child.close()  # the child commits what it has, acknowledges, exits
        while self._alive:  # read to the end, so that the child never waits on a full pipe
            _wait(self._ack_fd)
            self._read_acks()
        self._take_acks()
        self._child.wait()
        self._from_child.close()


def _wait(readable: int, writable: int | None = None) -> bool:
    """Block until ``readable`` can be read (True) or ``writable`` written (False)."""
    poller = select.poll()
    poller.register(readable, select.POLLIN)
    if writable is not None:
        poller.register(writable, select.POLLOUT)
    return any(fd == readable for fd, _ in poller.poll())


class _NoApplier:
    """``ThreadWriter`` opens an applier on its thread; the child has the real one."""

    commits = 0

    def commit(self, batches: Any) -> list[tuple[int, int, str]]:  # pragma: no cover
        raise AssertionError("the child process commits")

    def close(self) -> None:
        return None


def _whole_frames(pending: bytearray) -> list[bytes]:
    """Take the whole frames off the front of ``pending``; a partial one stays."""
    found: list[bytes] = []
    at = 0
    while len(pending) - at >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(pending, at)
        if len(pending) - at - _LENGTH.size < size:
            break
        found.append(bytes(pending[at + _LENGTH.size : at + _LENGTH.size + size]))
        at += _LENGTH.size + size
    del pending[:at]
    return found


# --- the child -------------------------------------------------------------------------


def child() -> None:
    """The writer process: ``python -c <_CHILD> LEDGER``. Commits every batch it reads, the
    frames that have arrived together as one transaction, and acknowledges each commit."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # Woken by every frame and every fsync, it must not take the CPU from the sender's event
    # loop each time (Linux's wake-up preemption); it runs as soon as a core is free instead.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        _commit_until_the_end(Path(sys.argv[1]))
    except BaseException as exc:  # a bug: one line; the sender fails what is unacknowledged
        print(f"mailer: the ledger writer stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


def _commit_until_the_end(path: Path) -> None:
    from mailer.ledger.sqlite_apply import SQLiteApplier

    applier: SQLiteApplier | None = None
    error: str | None = None
    try:
        applier = SQLiteApplier(path)
    except LedgerError as exc:
        error = exc.message
    out = os.fdopen(1, "wb")
    pending = bytearray()
    ended = False
    while not ended:
        # Wait for input; then take everything that has arrived: one group commit.
        chunk = os.read(0, 1 << 20)
        ended = not chunk
        pending += chunk
        while not ended and select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 1 << 20)
            ended = not chunk
            pending += chunk
        batches: list[tuple[int, str, list[Any]]] = []
        for frame in _whole_frames(pending):
            seq, now, ops = marshal.loads(frame)
            batches.append((seq, now or "", ops))
        if not batches:
            continue
        acknowledged = commit_group(applier, batches, error)
        error = acknowledged[3]
        ack = marshal.dumps(acknowledged)
        try:
            out.write(_LENGTH.pack(len(ack)) + ack)
            out.flush()
        except OSError:  # the sender is gone; what was whole is committed
            pass
    if applier is not None:
        applier.close()
