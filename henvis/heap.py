"""How a long-running henvis process treats Python's cyclic garbage collector: one call,
:func:`settle_heap`, once start-up is done.

Why (bench/README.md, issue 18): with Python's defaults a full collection in the consent API,
the relay and the router scanned the whole heap (modules, classes, the app and its routes,
pydantic and SQLAlchemy schema objects) and paused the process for 55–220 ms each time on a
slow machine: every request or record in flight waited that long.  Nearly all of that heap
lives as long as the process; few of the objects a request or a batch creates form cycles,
so reference counting frees them.
"""

from __future__ import annotations

import gc

#: Young collections after 50 000 new objects instead of 700.  A stream worker keeps decided
#: batches (and its partitions' state) alive across several polls, so much of what it
#: allocates reaches the oldest generation; with the default thresholds the collector took a
#: quarter of the router's CPU (bench/router_throughput.py: 0.135 against 0.10 ms per event).
GC_THRESHOLDS = (50_000, 20, 100)


def settle_heap() -> None:
    """Collect what start-up left behind, then move every surviving object (which will live
    as long as the process) out of the collector's sight (:func:`gc.freeze`), and collect
    young objects less often.  Cycles made later are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
