"""Which input offsets an agent has really handled: the only offsets henvis lets faust commit.

faust-streaming 0.15.3 decides what to commit from the messages its streams *acked*, and it
acks messages it skipped without handing them to the agent (a stale consumer generation
after a rebalance), and its gap check lets one unacked head message through
(docs/delivery-guarantees.md).  Either way a group could commit past input nobody handled.

This module keeps, per topic partition, the next offset an agent must handle, and lets the
agent handle each partition strictly in offset order:

* an offset below it was handled already (a re-delivery after a seek): skip it;
* the offset itself: handle it, then move the position on;
* an offset above it means the stream skipped something: do not handle it, rewind the
  consumer to the position so the skipped messages are fetched again.

A partition whose position lags its high-water mark without progress for a while (the
skipped messages were the last ones fetched, so nothing later reveals the gap) is rewound
by a watchdog too; while it still makes no progress the wait doubles (a partition whose
re-fetched messages queue behind other partitions' backlog needs time, not more seeks).
A partition that lags the broker's real end offset without handling anything for much
longer is *stuck*: rewinds did not help, and the worker should be restarted.  Everything here is pure bookkeeping; the faust adapter does the seeks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Hashable


class Admission(enum.Enum):
    HANDLE = "handle"
    SEEN = "seen"  # handled before: a re-delivery
    GAP = "gap"  # something before it was skipped: rewind, handle nothing yet


class InputPositions:
    """Per partition, the next offset to handle (``None``: not known until the first message)."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self._next: dict[Hashable, int | None] = {}
        self._progress_at: dict[Hashable, float] = {}
        self._rewound_to: dict[Hashable, int] = {}
        self._stall_waits: dict[Hashable, int] = {}  # stalled rewinds since the last progress
        self._handled_at: dict[Hashable, float] = {}  # last real progress (rewinds do not count)

    def track(self, topic: str) -> None:
        self.topics.add(topic)

    def tracks(self, tp) -> bool:
        return tp.topic in self.topics

    def reset(self, committed: Mapping[Hashable, int | None], now: float) -> None:
        """The consumer sought to the group's committed offsets: handle from there."""
        for tp, offset in committed.items():
            self._next[tp] = offset if offset is not None and offset >= 0 else None
            self._progress_at[tp] = now
            self._handled_at[tp] = now
            self._rewound_to.pop(tp, None)
            self._stall_waits.pop(tp, None)

    def forget(self, tps: Iterable[Hashable]) -> None:
        for tp in tps:
            self._next.pop(tp, None)
            self._progress_at.pop(tp, None)
            self._rewound_to.pop(tp, None)
            self._stall_waits.pop(tp, None)
            self._handled_at.pop(tp, None)

    def next_offset(self, tp: Hashable) -> int | None:
        return self._next.get(tp)

    def admit(self, tp: Hashable, offset: int) -> Admission:
        expected = self._next.get(tp)
        if expected is None or offset == expected:
            return Admission.HANDLE
        return Admission.SEEN if offset < expected else Admission.GAP

    def handled(self, tp: Hashable, offset: int, now: float) -> None:
        """The agent finished ``offset``; ignored unless it is the partition's next offset."""
        expected = self._next.get(tp)
        if expected is None or offset == expected:
            self._next[tp] = offset + 1
            self._progress_at[tp] = now
            self._handled_at[tp] = now
            self._rewound_to.pop(tp, None)
            self._stall_waits.pop(tp, None)

    def rewind_for_gap(self, tp: Hashable, now: float) -> int | None:
        """The offset to seek to after a gap, once per position (the rest of a skipped
        buffer shows the same gap and must not seek again)."""
        expected = self._next.get(tp)
        if expected is None or self._rewound_to.get(tp) == expected:
            return None
        self._rewound_to[tp] = expected
        self._progress_at[tp] = now
        return expected

    def stalled(
        self, highwaters: Mapping[Hashable, int | None], now: float, after: float, longest: float | None = None
    ) -> dict[Hashable, int]:
        """Partitions with unhandled input and no progress for a while, and the offset to
        rewind each to.  The wait is ``after`` seconds, doubling with every rewind that brought
        no progress, up to ``longest`` (default ``10 * after``)."""
        longest = 10 * after if longest is None else longest
        rewinds = {}
        for tp, highwater in highwaters.items():
            expected = self._next.get(tp)
            if expected is None or highwater is None or expected >= highwater:
                continue
            waits = self._stall_waits.get(tp, 0)
            if now - self._progress_at.get(tp, now) >= min(after * 2**waits, longest):
                rewinds[tp] = expected
                self._progress_at[tp] = now
                self._rewound_to[tp] = expected
                self._stall_waits[tp] = waits + 1
        return rewinds

    def stuck(self, end_offsets: Mapping[Hashable, int | None], now: float, after: float) -> dict[Hashable, tuple[int, int]]:
        """Partitions whose next offset lies below the broker's end offset and that handled
        nothing for ``after`` seconds: ``{tp: (next offset, end offset)}``."""
        stuck = {}
        for tp, end in end_offsets.items():
            expected = self._next.get(tp)
            if expected is None or end is None or expected >= end:
                continue
            if now - self._handled_at.get(tp, now) >= after:
                stuck[tp] = (expected, end)
        return stuck
