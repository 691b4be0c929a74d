"""How long the writer may hold a batch of marks to gather more: what the send leaves time for.

A mark is queued before a message's MAIL and awaited before its body, so over SMTP it has
the MAIL, RCPT and DATA round trips to be committed: its *slack*. Handing every mark over the
moment it is queued commits about once a message against a relay a millisecond away, and
each commit wakes the writer, the disk and the event loop. Holding the batch for part of the
slack lets the marks of the other connections join it, and the commit still ends before
anyone waits for it. Against a relay on loopback the slack is shorter than a commit, the
delay is 0, and every mark goes at once.
"""

from __future__ import annotations

from typing import Final

MAX_DELAY: Final = 0.005  # seconds: a batch is never held longer than this
MIN_DELAY: Final = 0.0002  # a shorter hold is not worth a timer: hand it over now
MARGIN: Final = 0.001  # what a timer may fire late by when the event loop is idle


class Pace:
    """Two durations measured on the event loop, and the hold derived from them.

    - ``slack``: from a mark's queueing to the first await of it; estimated low (it falls
      fast and rises slowly), so that a shorter round trip is believed at once;
    - ``latency``: from a batch's hand-over to its acknowledgement (the commit); estimated
      high, for the same reason.

    ``delay()`` is the slack less the latency less ``MARGIN`` (the event loop's timers may
    fire a millisecond late), so that the commit is done before the mark is awaited.
    """

    __slots__ = ("latency", "slack")

    def __init__(self) -> None:
        self.slack = 0.0  # nothing known yet: no hold
        self.latency = 0.0

    def awaited(self, after: float) -> None:
        """A mark was first awaited ``after`` seconds after it was queued."""
        weight = 0.5 if after < self.slack else 1 / 16
        self.slack += (after - self.slack) * weight

    def committed(self, after: float) -> None:
        """A batch was acknowledged ``after`` seconds after it was handed over."""
        weight = 0.5 if after > self.latency else 1 / 16
        self.latency += (after - self.latency) * weight

    def delay(self) -> float:
        """How long to hold a batch after its first mark was queued (0: hand it over now)."""
        hold = min(MAX_DELAY, self.slack - self.latency - MARGIN)
        return hold if hold >= MIN_DELAY else 0.0
