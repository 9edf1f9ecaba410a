"""The one garbage-collector setting of every long-running henvis process (henvis.heap)."""

from __future__ import annotations

import gc
import weakref

import pytest

from henvis.heap import GC_THRESHOLDS, settle_heap


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    partner: _Node


def _cycle() -> weakref.ref:
    first, second = _Node(), _Node()
    first.partner, second.partner = second, first
    return weakref.ref(first)


@pytest.mark.usefixtures("restored_collector")
def test_objects_alive_at_start_up_are_no_longer_scanned_by_collections():
    settle_heap()

    assert gc.get_freeze_count() > 10_000  # the modules, classes and objects of the process so far
    assert gc.get_threshold() == GC_THRESHOLDS


@pytest.mark.usefixtures("restored_collector")
def test_garbage_cycles_made_after_start_up_are_still_collected():
    settle_heap()

    cycle = _cycle()  # unreachable once made: only the collector can free it
    assert cycle() is not None
    gc.collect()
    assert cycle() is None


@pytest.mark.usefixtures("restored_collector")
def test_garbage_cycles_left_by_start_up_are_collected_rather_than_frozen():
    cycle = _cycle()

    settle_heap()

    assert cycle() is None
