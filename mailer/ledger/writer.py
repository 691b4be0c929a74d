"""The ledger's writer: state changes, queued on the event loop, group-committed by a thread.

Group commit, one commit at a time. Changes are queued on the event loop, and the batch
gathered so far is handed over when someone awaits a change of it, when the commit in flight
is done and changes have gathered meanwhile, or when its first mark has been held for as long
as the send leaves time for (``mailer.ledger.pacing``: against a nearby relay that is 0, and
a mark queued while the writer is idle goes at once). So under load every commit takes the
marks of all the connections that reached MAIL meanwhile, and records ride along with them.
Each change's future resolves when the commit that holds it is done; every commit takes
every batch handed over so far, in order, so a change is never committed after one queued
later.

The thread commits for PostgreSQL, whose commits are network round trips. SQLite's commits
are made by a child process instead (``mailer.ledger.writer_process``, which subclasses this
and replaces the hand-over and the acknowledgements), because there the GIL cost the thread
more than the disk did (see docs/ledger.md).

Everything here runs on the event loop's thread, but ``_run`` (the writer thread) and
``drain``, the synchronous path of ``close`` and the campaign jobs, which waits directly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Final, Protocol

from mailer.errors import LedgerError
from mailer.ledger.model import stamp
from mailer.ledger.pacing import Pace
from mailer.ledger.store import MARK, Applier, Batches, Change

MAX_BATCH: Final = 10_000  # queued changes that are handed over without waiting for an await

# What the thread reports after each commit: (upto, commits, refused, error).
_Ack = tuple[int, int, list[tuple[int, int, str]], str | None]
# A batch handed over: (seq, the time it was handed over or None for the commit's, changes).
Handover = tuple[int, str | None, list[Change]]


def commit_group(applier: Applier | None, batches: Batches, error: str | None) -> _Ack:
    """Commit the batches handed over together as one transaction; what to acknowledge. An
    ``error`` (an earlier commit failed, or the applier could not be opened) fails them all,
    and a failure here becomes the error of every later group."""
    refused: list[tuple[int, int, str]] = []
    if error is None and applier is not None:
        if any(not now for _seq, now, _ops in batches):
            batch_now = stamp()
            batches = [(s, now or batch_now, ops) for s, now, ops in batches]
        try:
            refused = applier.commit(batches)
        except LedgerError as exc:
            error = exc.message
        except Exception as exc:  # a bug must not strand every waiter
            error = f"{type(exc).__name__}: {exc}"
    return (batches[-1][0], applier.commits if applier is not None else 0, refused, error)


class _Needs(Protocol):
    def need(self, seq: int, queued: float | None) -> None: ...


class Durable:
    """A queued state change; awaiting it waits for its commit (and hands its batch to the
    writer now if it has not gone yet). Not awaiting it is fine: it goes with its batch."""

    __slots__ = ("_future", "_queued", "_seq", "_writer")

    def __init__(
        self, writer: _Needs, future: asyncio.Future[None], seq: int, queued: float | None
    ) -> None:
        self._writer = writer
        self._future = future
        self._seq = seq
        self._queued = queued  # a mark's: when it was queued (the writer's pace)

    def __await__(self) -> Generator[Any, None, None]:
        self._writer.need(self._seq, self._queued)
        self._queued = None  # only the first await tells how long the mark could wait
        return self._future.__await__()


class ThreadWriter:
    """Group commits of state changes on a thread of its own (see the module docstring).

    ``applier`` is called on the writer thread, once, to open the store's write connection.
    ``clock`` stamps each batch when it is handed over; None stamps each commit with the
    time it is made.
    """

    paced = False  # hold batches of marks for their slack (pacing.py; it paid for SQLite)

    def __init__(
        self,
        location: str,
        applier: Callable[[], Applier],
        clock: Callable[[], dt.datetime] | None,
    ) -> None:
        self.location = location
        self.clock = clock
        self.error: LedgerError | None = None  # a failed commit: every later write fails
        self.commits = 0
        self._ops: list[Change] = []  # the batch being gathered: number self._seq + 1
        self._futures: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._marks = 0  # marks in the batch being gathered
        self._first_mark = 0.0  # when its first mark was queued
        self._wanted = False  # someone awaits a change of it
        self._soon = False  # an outcome was queued during a commit: it goes after that one
        self._held: asyncio.TimerHandle | None = None  # the batch is held until then
        self.pace = Pace()
        self._timed: tuple[int, float] | None = None  # (batch, hand-over time) being timed
        self._seq = 0  # batches handed over
        self._acked = 0  # batches committed
        self._outstanding: dict[int, list[asyncio.Future[None]]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # flush() calls
        self._loop: asyncio.AbstractEventLoop | None = None
        # Shared with the thread: batches go in, acknowledgements come back.
        self._inbox: queue.SimpleQueue[Handover | None] = queue.SimpleQueue()
        self._acks: collections.deque[_Ack] = collections.deque()
        self._done = threading.Condition()
        self._upto = 0  # batches the thread has finished with (under _done)
        self._alive = True  # under _done
        self._start(applier)

    def _start(self, applier: Callable[[], Applier]) -> None:
        """Start whatever commits (here the thread)."""
        self._thread = threading.Thread(
            target=self._run, args=(applier,), name="mailer-ledger-writer", daemon=True
        )
        self._thread.start()

    def _hand_over(self, batch: Handover) -> None:
        """Give a batch to whatever commits it (here the thread)."""
        self._inbox.put(batch)

    def _end(self) -> None:
        """After the last batch: let the committer finish, and wait for it."""
        self._inbox.put(None)
        self._thread.join()

    # --- the writer thread ---

    def _run(self, make: Callable[[], Applier]) -> None:
        applier: Applier | None = None
        error: str | None = None
        try:
            try:
                applier = make()
            except Exception as exc:
                error = exc.message if isinstance(exc, LedgerError) else str(exc)
            while True:
                item = self._inbox.get()
                stop = item is None
                batches: Batches = []
                while item is not None:
                    seq, now, ops = item
                    batches.append((seq, now or "", ops))
                    try:  # everything handed over meanwhile joins this group commit
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    stop = item is None
                if batches:
                    acknowledged = commit_group(applier, batches, error)
                    error = acknowledged[3]
                    self._report(acknowledged)
                if stop:
                    return
        finally:
            if applier is not None:
                with contextlib.suppress(Exception):
                    applier.close()
            with self._done:
                self._alive = False
                self._done.notify_all()
            self._wake()

    def _report(self, ack: _Ack) -> None:
        self._acks.append(ack)
        with self._done:
            self._upto = ack[0]
            self._done.notify_all()
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop has ended: drain() reads it
                loop.call_soon_threadsafe(self._take_acks)

    # --- on the event loop ---

    def enqueue(self, op: Change) -> Durable:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.error is None and self._loop is not loop:
            self._bind(loop)
        mark = op[0] == MARK
        queued = time.monotonic() if mark else None
        durable = Durable(self, future, self._seq + 1, queued)  # it goes in the next batch
        if self.error is not None:
            _resolve(future, self.error)
            return durable
        self._ops.append(op)
        self._futures.append(future)
        if queued is not None:  # a mark
            self._marks += 1
            if self._marks == 1:
                self._first_mark = queued
        if len(self._ops) >= MAX_BATCH:
            self._send_batch()
        elif self._acked < self._seq:  # marks go when it is done, at their pace; an outcome
            self._soon = self._soon or not mark  # then too, not whenever the next mark comes
        elif mark:
            self._pace()  # the writer is idle: now, or held for the marks to come
        elif not self._scheduled:
            # An outcome while the writer is idle (the send is quiet, or waiting for a slow
            # relay): commit it at the end of this loop iteration rather than whenever the
            # next mark comes, so that a crash meanwhile cannot turn it into 'unknown'. (The
            # worker's next mark, queued in this iteration too, sets the pace instead.)
            self._scheduled = True
            loop.call_soon(self._pace)
        return durable

    def _pace(self) -> None:
        """Hand the batch over now, or, if it has marks and the send leaves time for it,
        when its first mark has been held for ``pace.delay()``."""
        self._scheduled = False
        if self.paced and self._marks and self._loop is not None and not self._wanted:
            due = self._first_mark + self.pace.delay()
            if due > time.monotonic():
                if self._held is None:
                    self._held = self._loop.call_later(due - time.monotonic(), self._release)
                return
        self._send_batch()

    def _release(self) -> None:  # the hold is over; if a commit is in flight, after it
        self._held = None
        if self._acked == self._seq:
            self._send_batch()

    def need(self, seq: int, queued: float | None) -> None:
        """Someone waits for a change of batch ``seq``: hand it over at the end of this loop
        iteration (changes queued meanwhile join it), or when the commit in flight is done."""
        if queued is not None:
            self.pace.awaited(time.monotonic() - queued)
        if seq <= self._seq:
            return
        self._wanted = True
        if self._acked == self._seq and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._send_batch)

    async def flush(self) -> None:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        self._send_batch()
        if self.error is not None:
            raise self.error
        if self._acked >= self._seq:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((self._seq, waiter))
        await waiter

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            self.drain()  # changes queued on another loop: settle them first (unbinds it)
        elif self._held is not None or self._scheduled:  # held or called for on a loop gone
            self._send_batch()
        self._loop = loop

    def _send_batch(self) -> None:
        self._scheduled = False
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self.error is not None:
            self._fail_all()  # nothing gathered may wait for a writer that will not write
            return
        if not self._ops:
            return
        self._seq += 1
        self._marks = 0
        self._wanted = self._soon = False
        if self._timed is None:
            self._timed = (self._seq, time.monotonic())
        self._outstanding[self._seq] = self._futures
        now = None if self.clock is None else stamp(self.clock())
        ops, self._ops, self._futures = self._ops, [], []
        try:
            self._hand_over((self._seq, now, ops))
        except LedgerError as exc:  # the committer is gone: nothing more can be written
            self._fail(exc.message)

    def _take_acks(self) -> None:
        while self._acks:
            self._acknowledge(*self._acks.popleft())
        with self._done:
            alive = self._alive  # set false by the thread itself, before it wakes us
        if self.error is None and self._acked < self._seq and not alive:
            self._fail("the ledger writer stopped unexpectedly")

    def _acknowledge(
        self, upto: int, commits: int, refused: list[tuple[int, int, str]], error: str | None
    ) -> None:
        self.commits = commits
        if self._timed is not None and self._timed[0] <= upto:
            self.pace.committed(time.monotonic() - self._timed[1])
            self._timed = None
        if error is not None and self.error is None:
            self.error = LedgerError(f"{self.location}: cannot write the ledger ({error})")
        why_of = {(seq, index): why for seq, index, why in refused}
        for seq in range(self._acked + 1, upto + 1):
            for index, future in enumerate(self._outstanding.pop(seq, ())):
                if self.error is not None:
                    _resolve(future, self.error)
                elif (why := why_of.get((seq, index))) is not None:
                    _resolve(future, LedgerError(f"{self.location}: {why}"))
                else:
                    _resolve(future, None)
        self._acked = max(self._acked, upto)
        if self._waiters:
            still: list[tuple[int, asyncio.Future[None]]] = []
            for seq, waiter in self._waiters:
                if seq <= self._acked:
                    _resolve(waiter, self.error)
                else:
                    still.append((seq, waiter))
            self._waiters = still
        if self.error is not None:
            self._fail_all()  # a failed commit fails everything after it, at once
        elif self._acked == self._seq and self._loop is not None:
            if self._wanted or self._soon:
                self._send_batch()  # what gathered during that commit: the next group
            elif self._marks:
                self._pace()

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = LedgerError(f"{self.location}: {why}")
        self._fail_all()

    def _fail_all(self) -> None:
        """Fail every change not yet committed, and every flush, with ``self.error``."""
        error = self.error
        assert error is not None
        for futures in self._outstanding.values():
            for future in futures:
                _resolve(future, error)
        for future in self._futures:
            _resolve(future, error)
        for _seq, waiter in self._waiters:
            _resolve(waiter, error)
        self._outstanding, self._ops, self._futures, self._waiters = {}, [], [], []

    # --- synchronous ---

    def drain(self) -> None:
        """Hand over everything queued and wait, blocking, until all of it is committed. It
        detaches from the event loop (the next change queued re-attaches), so that it works
        the same after that loop has ended."""
        self._loop = None
        self._send_batch()
        with self._done:
            while self._upto < self._seq and self._alive:
                self._done.wait()
        self._take_acks()

    def stop(self) -> None:
        """Drain, end the thread and wait for it. Sets ``error`` if anything queued may not
        have been committed."""
        try:
            self.drain()
        except Exception as exc:  # e.g. interrupted: what was queued is not known committed
            if self.error is None:
                self.error = LedgerError(f"{self.location}: cannot write the ledger ({exc})")
        finally:
            self._end()


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            future.exception()  # retrieved: a change nobody awaited must not log it
