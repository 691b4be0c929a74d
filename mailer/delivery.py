"""Delivery: concurrency, a global rate, retries and per-recipient results over any transport.

``deliver`` takes a transport and a stream of messages and yields one ``SendResult`` per
recipient. The stream is read lazily through a small queue, so memory stays flat whatever
the size of the list. Outcomes are data:

- 2xx: sent.
- 4xx, or a channel that broke before the message's data went out: retried with exponential
  backoff and jitter up to ``max_attempts``, then deferred.
- 5xx about *us* (see ``classify``): a refused MAIL FROM or DATA command, X.1.7/X.1.8 (the
  sender's address), authentication or encryption required, a message too big: the run
  stops at once and the recipient is ``unsent``, left to send again once fixed.
- Any other 5xx is held as deferred until the relay shows it takes our mail: once it
  accepts a later message, the refusal was about that recipient and it becomes failed (a
  5.1.x at RCPT is a hard bounce). Refusals with no acceptance after them stay deferred,
  and ``policy_halt_after`` of them in a row stop the run: a relay that refuses everyone
  fails no one. (A later run tries them again; the campaign gives up on a row only after
  ``max_attempts`` refusals across runs.)
- A channel that broke *after* the data went out (the final dot was written, no reply came):
  unknown. The server may have accepted it, so it is not retried (RFC 1047): a duplicate is
  worse than a question.
- A recipient that ``skip`` names a reason for (suppressed since the run started) is
  skipped just before its message would go out.
- A fatal transport error (authentication, TLS, unreachable server) stops the run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from mailer.errors import DeliveryError
from mailer.models import DeliveryPolicy, Outgoing, SendResult, Status
from mailer.transports.base import Channel, ChannelBroken, Reply, Transport


class TokenBucket:
    """A global rate limit: ``rate`` tokens per second, bursts of at most ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, stopped: asyncio.Event) -> bool:
        """Wait for a token; ``False`` as soon as ``stopped`` is set instead."""
        async with self._lock:
            while not stopped.is_set():
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), (1 - self._tokens) / self.rate)
            return False


# Called when a message is handed to a channel (the ledger queues its "sending" mark); the
# channel awaits what it returns after the envelope is accepted and before the message's data
# can go out, so that the mark's commit overlaps the MAIL and RCPT round trips.
BeforeSend = Callable[[Outgoing, int], Awaitable[None]]
# Called synchronously by the worker with each outcome, before the worker takes its next
# message (the ledger queues the record, so it commits no later than the next mark).
AfterSend = Callable[[SendResult], object]


class Verdict(enum.Enum):
    """What a reply means for its recipient and for the run."""

    SENT = "sent"
    TEMPORARY = "temporary"  # 4xx or a lost connection before the data: retry
    UNKNOWN = "unknown"  # lost after the data went out: may have been delivered
    REFUSED = "refused"  # a permanent refusal, held until the relay shows it takes our mail
    REFUSED_US = "refused-us"  # a permanent refusal of the sender or the session: stop
    UNDELIVERABLE = "undeliverable"  # refused here, not by the relay: it cannot go through


_SENDER_TEXT = re.compile(r"sender (address )?(rejected|verify failed|verification failed)", re.I)
# X.1.7 / X.1.8: the sender's address; 5.3.4: too big; 5.7.8-5.7.11: authentication or
# encryption required.
_ABOUT_US_CODES = frozenset({"5.1.7", "5.1.8", "5.3.4", "5.7.8", "5.7.9", "5.7.10", "5.7.11"})
_HARD_BOUNCE = re.compile(r"5\.1\.(?![78](?!\d))\d{1,3}")


def classify(reply: Reply, *, broken: bool = False, data_sent: bool = False) -> Verdict:
    """Sort a reply into a ``Verdict``.

    A reply to MAIL FROM or to the DATA command is always about us (the recipient was
    accepted, or not asked about yet), whatever its code; so is one naming the sender's
    address (X.1.7, X.1.8, Postfix's "Sender address rejected", which a Postfix with
    delayed restrictions gives at RCPT), asking for authentication or encryption, or
    refusing the message's size.
    """
    if reply.ok:
        return Verdict.SENT
    if broken and data_sent and reply.code == 0:
        return Verdict.UNKNOWN
    if not reply.permanent:
        return Verdict.TEMPORARY
    if reply.stage == "local":
        return Verdict.UNDELIVERABLE
    if (
        reply.stage in ("mail", "data")
        or reply.enhanced in _ABOUT_US_CODES
        or reply.code in (530, 535, 538)
        or _SENDER_TEXT.search(reply.text)
        or (reply.stage == "message" and reply.code == 552)
    ):
        return Verdict.REFUSED_US
    return Verdict.REFUSED


def is_hard_bounce(reply: Reply) -> bool:
    """A refused RCPT with 5.1.x (but X.1.7/X.1.8, about the sender): no such address."""
    hard = _HARD_BOUNCE.fullmatch(reply.enhanced) is not None
    return reply.permanent and reply.stage == "rcpt" and hard


# Gives the reason a recipient must not be mailed now (suppressed since the campaign
# started), or None. Checked by the worker just before the message would go out.
Skip = Callable[[Outgoing], str | None]


@dataclass
class _Item:
    message: Outgoing
    attempts: int = 0
    started: int = 0  # the order in which its latest attempt was handed to a channel


class Delivery:
    """One run of the engine; use ``deliver`` unless you need ``stop()``."""

    def __init__(
        self,
        transport: Transport,
        messages: Iterable[Outgoing],
        policy: DeliveryPolicy | None = None,
        *,
        before_send: BeforeSend | None = None,
        after_send: AfterSend | None = None,
        skip: Skip | None = None,
    ) -> None:
        self.transport = transport
        self.policy = policy or DeliveryPolicy()
        self._messages = iter(messages)
        self._before_send = before_send
        self._after_send = after_send
        self._skip = skip
        self._bucket = TokenBucket(self.policy.rate) if self.policy.rate else None
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(
            maxsize=self.policy.concurrency * 2
        )
        self._results: asyncio.Queue[SendResult | None] = asyncio.Queue()
        self._outstanding = 0  # items taken from the stream and not yet resolved
        self._exhausted = False
        self._stopping = False
        self._fatal: BaseException | None = None
        self._held: list[tuple[_Item, Reply]] = []  # refusals not yet judged
        self._started = 0  # attempts handed to channels so far (see _Item.started)
        self._stopped = asyncio.Event()  # set by stop(): wakes workers waiting on the rate
        self._done = False
        self._warm = False
        self._warmup = asyncio.Lock()
        self._retries: set[asyncio.Task[None]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self.unsent = 0  # messages never attempted because the run stopped
        self.in_flight = 0  # messages handed to a channel and not yet answered
        self.abandoned = 0  # messages in flight when ``abandon`` was called
        self.completed = False  # the run went through every message (no stop, no error)

    def stop(self) -> None:
        """Take no new messages; messages in flight finish and are reported."""
        self._stopping = True
        self._stopped.set()
        for task in list(self._retries):
            task.cancel()

    def abandon(self) -> None:
        """Stop now, without waiting for the messages in flight (a third Ctrl-C). Their
        outcome is unknown: the caller must treat their rows as such."""
        self.stop()
        self.abandoned = self.in_flight
        for task in self._workers:
            task.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopping

    async def run(self) -> AsyncIterator[SendResult]:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.policy.concurrency)]
        self._workers = workers
        feeder = asyncio.create_task(self._feed())
        supervisor = asyncio.create_task(self._supervise(workers))
        complete = False
        try:
            while True:
                result = await self._results.get()
                if result is None:
                    break
                yield result
            if self._fatal is not None:
                raise self._fatal
            complete = not self._stopping
            self.completed = complete
        finally:
            self.stop()
            for task in (feeder, supervisor, *workers):
                task.cancel()
            await asyncio.gather(feeder, supervisor, *workers, return_exceptions=True)
            await self.transport.finish(complete=complete)

    async def _supervise(self, workers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*workers, return_exceptions=True)
        self._results.put_nowait(None)

    async def _feed(self) -> None:
        try:
            for message in self._messages:
                if self._stopping:
                    break
                self._outstanding += 1
                await self._queue.put(_Item(message))
        except Exception as exc:  # a bad row or template error while composing: stop cleanly
            self._abort(exc)
        finally:
            self._exhausted = True
            self._maybe_done()

    def _maybe_done(self) -> None:
        """When every message is resolved, tell each worker to exit. Refusals still held
        then (no message was accepted after them) stay deferred: a later run tries them
        again, and the campaign gives up on them after ``max_attempts`` (see campaign)."""
        if self._exhausted and self._outstanding == len(self._held) and not self._done:
            self._release(Status.DEFERRED)
            self._done = True
            for _ in range(self.policy.concurrency):
                self._queue.put_nowait(None)

    async def _worker(self) -> None:
        channel: Channel | None = None
        sent_on_channel = 0
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                if self._stopping:
                    self._resolve_unsent()  # never attempted: it stays pending for a resume
                    continue
                if channel is None:
                    channel = await self._open()
                    sent_on_channel = 0
                    if channel is None:
                        continue
                if self._bucket is not None and not await self._bucket.take(self._stopped):
                    self._resolve_unsent()  # stopped while waiting for the rate
                    continue
                try:
                    reason = self._skip(item.message) if self._skip is not None else None
                except Exception as exc:  # e.g. the suppression file became unreadable
                    self._abort(exc)
                    self._resolve_unsent()
                    continue
                if reason:
                    self._emit(item, Status.SKIPPED, Reply(0, reason))
                    continue
                item.attempts += 1
                self._started += 1
                item.started = self._started
                self.in_flight += 1
                try:
                    ready = None
                    if self._before_send is not None:
                        ready = self._before_send(item.message, item.attempts)
                    reply = await channel.send(item.message, ready)
                    broken, data_sent = False, True
                except ChannelBroken as exc:
                    reply, broken, data_sent = exc.reply, True, exc.data_sent
                except Exception as exc:  # the ledger refused or failed, or a fatal error
                    self._abort(exc)
                    if self._after_send is not None:  # its row was marked: not sent after all
                        with contextlib.suppress(Exception):
                            self._after_send(self._result(item, Status.UNSENT, Reply(0, str(exc))))
                    self._resolve_unsent()
                    continue
                finally:
                    self.in_flight -= 1
                # Recorded before the channel is closed: a QUIT may take seconds, and an
                # abandoned run must not lose an outcome the server already gave.
                self._settle(item, reply, broken=broken, data_sent=data_sent)
                if broken or reply.code == 421:
                    with contextlib.suppress(Exception):
                        await channel.close()
                    channel = None
                else:
                    sent_on_channel += 1
                    if sent_on_channel >= self.policy.messages_per_connection:
                        await channel.close()
                        channel = None
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()

    async def _open(self) -> Channel | None:
        """Open a channel; the first one alone, so that a bad password or certificate costs
        one connection, not ``concurrency`` of them (no retry storm)."""
        if self._warm:
            return await self._open_retrying()
        async with self._warmup:
            channel = await self._open_retrying()
            self._warm = channel is not None
            return channel

    async def _open_retrying(self) -> Channel | None:
        """Open a channel, retrying refusals (421) with backoff; None if the run must stop."""
        failures = 0
        while not self._stopping:
            try:
                return await self.transport.open_channel()
            except ChannelBroken as exc:
                failures += 1
                if failures >= self.policy.max_attempts:
                    self._abort(
                        DeliveryError(
                            f"the server keeps refusing connections: {exc.reply}",
                            hint="run the same command later",
                        )
                    )
                    break
                await asyncio.sleep(self._backoff(failures))
            except Exception as exc:
                self._abort(exc)
                break
        self._resolve_unsent()
        return None

    def _settle(self, item: _Item, reply: Reply, *, broken: bool, data_sent: bool) -> None:
        verdict = classify(reply, broken=broken, data_sent=data_sent)
        if verdict is Verdict.SENT:
            if not self._stopping:
                # The relay took a message that it was handed after these refusals: they
                # were about their recipients. (One handed over before them proves nothing:
                # the relay may have started refusing everyone since.)
                self._release(Status.FAILED, before=item.started)
            self._emit(item, Status.SENT, reply)
        elif verdict is Verdict.UNKNOWN:
            self._emit(item, Status.UNKNOWN, reply)
        elif verdict is Verdict.UNDELIVERABLE:
            self._emit(item, Status.FAILED, reply)
        elif verdict is Verdict.REFUSED_US:
            self._emit(item, Status.UNSENT, reply)
            self._abort(
                DeliveryError(
                    f"the relay refused us, not a recipient: {reply}",
                    hint="no recipient was failed or suppressed; fix the sender address or "
                    "the relay's settings, then run the same command again",
                )
            )
        elif verdict is Verdict.REFUSED:
            if self._after_send is not None:  # retryable until judged
                self._after_send(self._result(item, Status.DEFERRED, reply))
            self._held.append((item, reply))
            if len(self._held) >= self.policy.policy_halt_after and not self._stopping:
                self._abort(
                    DeliveryError(
                        f"the relay is refusing us: {len(self._held)} refusals with no "
                        f"message accepted in between (last: {reply})",
                        hint="nobody was failed or suppressed: they stay deferred and are "
                        "sent again on a resume; check the sending account, SPF/DKIM and "
                        "the provider's dashboard first",
                    )
                )
            self._maybe_done()
        elif item.attempts >= self.policy.max_attempts or self._stopping:
            self._emit(item, Status.DEFERRED, reply)
        else:
            if self._after_send is not None:
                # While it waits out its backoff the message is deferred, not in flight.
                self._after_send(self._result(item, Status.DEFERRED, reply))
            task = asyncio.get_running_loop().create_task(self._retry_later(item, reply))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    def _release(self, status: Status, *, before: int | None = None) -> None:
        """Judge the held refusals (those handed to a channel before ``before``, if given):
        ``FAILED``, recorded anew, or ``DEFERRED``, as they were recorded."""
        judged = [h for h in self._held if before is None or h[0].started < before]
        if not judged:
            return
        self._held = [h for h in self._held if not (before is None or h[0].started < before)]
        for item, reply in judged:
            if status is Status.DEFERRED:
                self._results.put_nowait(self._result(item, status, reply))
                self._outstanding -= 1
            else:
                self._emit(item, status, reply)

    async def _retry_later(self, item: _Item, reply: Reply) -> None:
        try:
            await asyncio.sleep(self._backoff(item.attempts))
            await self._queue.put(item)  # may wait for room, and be cancelled there too
        except asyncio.CancelledError:
            self._emit(item, Status.DEFERRED, reply)  # the run stopped before the retry
            return

    def _backoff(self, attempt: int) -> float:
        base = self.policy.retry_base_delay * 2.0 ** (attempt - 1)
        delay = min(self.policy.retry_max_delay, base)
        jitter: float = random.uniform(0, delay / 2)
        return delay / 2 + jitter  # "equal jitter"

    def _result(self, item: _Item, status: Status, reply: Reply) -> SendResult:
        message = item.message
        return SendResult(
            index=message.index,
            email=message.recipient.email,
            message_id=message.message_id,
            status=status,
            code=reply.code or None,
            reply=reply.text,
            attempts=item.attempts,
            # kept on a held (deferred) refusal too, for when the campaign gives up on it
            hard_bounce=status in (Status.FAILED, Status.DEFERRED) and is_hard_bounce(reply),
        )

    def _emit(self, item: _Item, status: Status, reply: Reply) -> None:
        result = self._result(item, status, reply)
        if self._after_send is not None:
            self._after_send(result)
        self._results.put_nowait(result)
        self._outstanding -= 1
        self._maybe_done()

    def _resolve_unsent(self) -> None:
        self.unsent += 1
        self._outstanding -= 1
        self._maybe_done()

    def _abort(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.stop()


async def deliver(
    transport: Transport,
    messages: Iterable[Outgoing],
    policy: DeliveryPolicy | None = None,
    *,
    before_send: BeforeSend | None = None,
    after_send: AfterSend | None = None,
    skip: Skip | None = None,
) -> AsyncIterator[SendResult]:
    """Yield one result per recipient; raises ``DeliveryError`` if the run had to stop."""
    engine = Delivery(
        transport, messages, policy, before_send=before_send, after_send=after_send, skip=skip
    )
    async for result in engine.run():
        yield result
