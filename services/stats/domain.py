"""The figures researchers get (DESIGN §5): the stats domain's public names, pure, no I/O.

The rules live in one module per concern; adapters (store, worker, HTTP) use them through
this module:

* :mod:`.domain_referral`: the state of one referral as facts and outcomes arrive (in any order,
  possibly twice): :func:`apply_fact`, :func:`apply_outcome`;
* :mod:`.domain_funnel`: the raw figures of a group of referrals (:class:`RawFunnel`), percentiles;
* :mod:`.domain_aggregates`: how a referral's change moves the daily aggregate rows;
* :mod:`.domain_suppression`: small-cell suppression with complementary suppression (:func:`suppress`);
* :mod:`.domain_publishing`: the public rows (:func:`publish_table`) in which no count of
  1..threshold-1 persons and no value that could be derived from published totals appears;
* :mod:`.domain_periods`: whole calendar months.

The definitions are documented for researchers in ``docs/researchers-guide.md``.
"""

from __future__ import annotations

from henvis.services.stats.domain_aggregates import (
    AGGREGATE_COUNTERS,
    AggregateKey,
    CounterDeltas,
    DaysDeltas,
    aggregate_changes,
    aggregate_key,
    contribution,
)
from henvis.services.stats.domain_funnel import RawFunnel, funnel_of, median, percentile
from henvis.services.stats.domain_periods import month_end, month_start, months_between
from henvis.services.stats.domain_publishing import (
    RATES,
    TOTAL,
    publish_single,
    publish_table,
    round_half_up,
    suppressed_label,
)
from henvis.services.stats.domain_referral import CONTACT_OUTCOMES, ReferralState, apply_fact, apply_outcome
from henvis.services.stats.domain_suppression import COUNT_FIELDS, Cell, Line, is_small, suppress, table_lines

__all__ = [
    "AGGREGATE_COUNTERS",
    "CONTACT_OUTCOMES",
    "COUNT_FIELDS",
    "RATES",
    "TOTAL",
    "AggregateKey",
    "Cell",
    "CounterDeltas",
    "DaysDeltas",
    "Line",
    "RawFunnel",
    "ReferralState",
    "aggregate_changes",
    "aggregate_key",
    "apply_fact",
    "apply_outcome",
    "contribution",
    "funnel_of",
    "is_small",
    "median",
    "month_end",
    "month_start",
    "months_between",
    "percentile",
    "publish_single",
    "publish_table",
    "round_half_up",
    "suppress",
    "suppressed_label",
    "table_lines",
]
