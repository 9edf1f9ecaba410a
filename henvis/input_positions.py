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
longer is *stuck*: rewinds did not help, and the worker should be restarted.  Everything
here is pure bookkeeping; the faust adapter does the seeks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Hashable


class Admission(enum.Enum):
    HANDLE = "handle"
    SEEN = "seen"  # handled before: a re-delivery
    GAP = "gap"  # something before it was skipped: rewind, handle nothing yet


@dataclass
class _Partition:
    next_offset: int | None  # None: not known until the first message
    progress_at: float  # last handled offset or rewind: paces the stall rewinds
    handled_at: float  # last handled offset only: measures "stuck"
    rewound_to: int | None = None  # the position a gap rewind already sought to
    stall_waits: int = 0  # stalled rewinds since the last handled offset

    def lags(self, end: int | None) -> bool:
        return self.next_offset is not None and end is not None and self.next_offset < end


class InputPositions:
    """Per partition, the next offset to handle."""

    def __init__(self) -> None:
        self.topics: set[str] = set()
        self._partitions: dict[Hashable, _Partition] = {}

    def track(self, topic: str) -> None:
        self.topics.add(topic)

    def tracks(self, tp) -> bool:
        return tp.topic in self.topics

    def reset(self, committed: Mapping[Hashable, int | None], now: float) -> None:
        """The consumer sought to the group's committed offsets: handle from there."""
        for tp, offset in committed.items():
            known = offset if offset is not None and offset >= 0 else None
            self._partitions[tp] = _Partition(known, progress_at=now, handled_at=now)

    def forget(self, tps: Iterable[Hashable]) -> None:
        for tp in tps:
            self._partitions.pop(tp, None)

    def next_offset(self, tp: Hashable) -> int | None:
        partition = self._partitions.get(tp)
        return partition.next_offset if partition else None

    def admit(self, tp: Hashable, offset: int) -> Admission:
        expected = self.next_offset(tp)
        if expected is None or offset == expected:
            return Admission.HANDLE
        return Admission.SEEN if offset < expected else Admission.GAP

    def handled(self, tp: Hashable, offset: int, now: float) -> None:
        """The agent finished ``offset``; ignored unless it is the partition's next offset."""
        expected = self.next_offset(tp)
        if expected is None or offset == expected:
            self._partitions[tp] = _Partition(offset + 1, progress_at=now, handled_at=now)

    def rewind_for_gap(self, tp: Hashable, now: float) -> int | None:
        """The offset to seek to after a gap, once per position (the rest of a skipped
        buffer shows the same gap and must not seek again)."""
        partition = self._partitions.get(tp)
        if partition is None or partition.next_offset is None or partition.rewound_to == partition.next_offset:
            return None
        partition.rewound_to = partition.next_offset
        partition.progress_at = now
        return partition.next_offset

    def stalled(
        self, highwaters: Mapping[Hashable, int | None], now: float, after: float, longest: float | None = None
    ) -> dict[Hashable, int]:
        """Partitions with unhandled input and no progress for a while, and the offset to
        rewind each to.  The wait is ``after`` seconds, doubling with every rewind that brought
        no progress, up to ``longest`` (default ``10 * after``)."""
        longest = 10 * after if longest is None else longest
        rewinds = {}
        for tp, highwater in highwaters.items():
            partition = self._partitions.get(tp)
            if partition is None or not partition.lags(highwater):
                continue
            if now - partition.progress_at >= min(after * 2**partition.stall_waits, longest):
                rewinds[tp] = partition.rewound_to = partition.next_offset
                partition.progress_at = now
                partition.stall_waits += 1
        return rewinds

    def stuck(self, end_offsets: Mapping[Hashable, int | None], now: float, after: float) -> dict[Hashable, tuple[int, int]]:
        """Partitions whose next offset lies below the broker's end offset and that handled
        nothing for ``after`` seconds: ``{tp: (next offset, end offset)}``."""
        return {
            tp: (partition.next_offset, end)
            for tp, end in end_offsets.items()
            if (partition := self._partitions.get(tp)) is not None
            and partition.lags(end)
            and now - partition.handled_at >= after
        }
