"""In-order input: only offsets an agent finished are committed (henvis/input_positions.py).

These are the rules that keep faust from committing past a message it skipped; the real
broker proves them end to end in tests/integration/test_router_delivery.py.
"""

from __future__ import annotations

from collections import namedtuple

from hypothesis import given
from hypothesis import strategies as st

from henvis.input_positions import Admission, InputPositions

TP = namedtuple("TP", "topic partition")
DECISIONS = TP("consent.decisions.v1", 0)


def positions(committed: int | None = 10) -> InputPositions:
    tracked = InputPositions()
    tracked.track(DECISIONS.topic)
    tracked.reset({DECISIONS: committed}, now=0.0)
    return tracked


def test_only_the_tracked_topics_are_tracked():
    tracked = positions()
    assert tracked.tracks(DECISIONS) and not tracked.tracks(TP("router-withdrawal-ticks", 0))


def test_the_committable_offset_is_the_one_after_the_last_handled():
    tracked = positions(committed=10)
    assert tracked.next_offset(DECISIONS) == 10
    for offset in (10, 11, 12):
        assert tracked.admit(DECISIONS, offset) is Admission.HANDLE
        tracked.handled(DECISIONS, offset, now=1.0)
    assert tracked.next_offset(DECISIONS) == 13


def test_a_skipped_message_is_never_committed_past_and_triggers_one_rewind():
    tracked = positions(committed=10)
    # 10 was skipped by the stream (stale generation); 11, 12 ... arrive.
    assert tracked.admit(DECISIONS, 11) is Admission.GAP
    assert tracked.rewind_for_gap(DECISIONS, now=1.0) == 10
    assert tracked.admit(DECISIONS, 12) is Admission.GAP
    assert tracked.rewind_for_gap(DECISIONS, now=1.0) is None  # the rest of the buffer: no second seek
    tracked.handled(DECISIONS, 12, now=1.0)  # even if an agent claims it, 12 is not committable
    assert tracked.next_offset(DECISIONS) == 10
    # The re-fetched messages arrive in order.
    for offset in (10, 11, 12):
        assert tracked.admit(DECISIONS, offset) is Admission.HANDLE
        tracked.handled(DECISIONS, offset, now=2.0)
    assert tracked.next_offset(DECISIONS) == 13


def test_a_redelivered_message_is_not_handled_twice():
    tracked = positions(committed=10)
    tracked.handled(DECISIONS, 10, now=1.0)
    assert tracked.admit(DECISIONS, 10) is Admission.SEEN


def test_committed_offset_zero_is_a_real_position():
    tracked = positions(committed=0)  # faust's own check treats 0 as "nothing committed"
    assert tracked.admit(DECISIONS, 1) is Admission.GAP
    assert tracked.rewind_for_gap(DECISIONS, now=1.0) == 0


def test_without_a_committed_offset_the_first_message_sets_the_position():
    tracked = positions(committed=None)
    assert tracked.next_offset(DECISIONS) is None
    assert tracked.admit(DECISIONS, 5) is Admission.HANDLE
    tracked.handled(DECISIONS, 5, now=1.0)
    assert tracked.next_offset(DECISIONS) == 6


def test_a_revoked_partition_commits_nothing_until_it_is_assigned_again():
    tracked = positions(committed=10)
    tracked.forget([DECISIONS])
    assert tracked.next_offset(DECISIONS) is None
    tracked.reset({DECISIONS: 42}, now=5.0)  # another worker got as far as 42 meanwhile
    assert tracked.admit(DECISIONS, 41) is Admission.SEEN


def test_a_lagging_partition_without_progress_is_rewound_with_a_doubling_wait():
    tracked = positions(committed=10)
    assert tracked.stalled({DECISIONS: 20}, now=5.0, after=6.0) == {}  # not long enough
    assert tracked.stalled({DECISIONS: 20}, now=6.0, after=6.0) == {DECISIONS: 10}
    assert tracked.stalled({DECISIONS: 20}, now=7.0, after=6.0) == {}  # just rewound
    assert tracked.stalled({DECISIONS: 20}, now=17.0, after=6.0) == {}  # now waits 12 s
    assert tracked.stalled({DECISIONS: 20}, now=18.0, after=6.0) == {DECISIONS: 10}
    assert tracked.stalled({DECISIONS: 20}, now=41.0, after=6.0) == {}  # then 24 s
    assert tracked.stalled({DECISIONS: 20}, now=42.0, after=6.0) == {DECISIONS: 10}


def test_the_stall_wait_is_capped_and_progress_resets_it():
    tracked = positions(committed=10)
    now = 0.0
    for _ in range(8):  # 6, 12, 24, 48, then capped at 60
        now += 60.0
        assert tracked.stalled({DECISIONS: 20}, now=now, after=6.0) == {DECISIONS: 10}
    tracked.handled(DECISIONS, 10, now=now)
    assert tracked.stalled({DECISIONS: 20}, now=now + 6.0, after=6.0) == {DECISIONS: 11}


def test_a_caught_up_or_progressing_partition_is_left_alone():
    tracked = positions(committed=10)
    assert tracked.stalled({DECISIONS: 10}, now=60.0, after=6.0) == {}  # nothing to handle
    assert tracked.stalled({DECISIONS: None}, now=60.0, after=6.0) == {}  # high-water unknown
    tracked.handled(DECISIONS, 10, now=59.0)
    assert tracked.stalled({DECISIONS: 20}, now=60.0, after=6.0) == {}


@given(
    skipped=st.sets(st.integers(min_value=0, max_value=49)),
    first_pass_order=st.permutations(list(range(50))),
)
def test_whatever_is_skipped_the_position_never_passes_an_unhandled_offset(skipped, first_pass_order):
    """Deliver 0..49 in any order with any subset skipped, then re-fetch all in order (what the
    rewind does): the position only ever covers handled offsets, and ends at 50."""
    tracked = positions(committed=0)
    handled: set[int] = set()

    def deliver(offset: int) -> None:
        if tracked.admit(DECISIONS, offset) is Admission.HANDLE:
            handled.add(offset)
            tracked.handled(DECISIONS, offset, now=0.0)
        assert set(range(tracked.next_offset(DECISIONS))) <= handled

    for offset in first_pass_order:
        if offset not in skipped:
            deliver(offset)
    for offset in range(50):
        deliver(offset)
    assert tracked.next_offset(DECISIONS) == 50


def test_a_partition_lagging_the_broker_without_handling_anything_is_stuck():
    tracked = positions(committed=10)
    assert tracked.stuck({DECISIONS: 20}, now=119.0, after=120.0) == {}
    tracked.stalled({DECISIONS: 20}, now=60.0, after=6.0)  # a rewind is not progress
    assert tracked.stuck({DECISIONS: 20}, now=120.0, after=120.0) == {DECISIONS: (10, 20)}
    assert tracked.stuck({DECISIONS: 10}, now=500.0, after=120.0) == {}  # caught up: idle, not stuck
    tracked.handled(DECISIONS, 10, now=130.0)
    assert tracked.stuck({DECISIONS: 20}, now=200.0, after=120.0) == {}
