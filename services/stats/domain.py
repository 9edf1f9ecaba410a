"""The figures researchers get (DESIGN §5): the stats domain's public names, pure, no I/O.

The rules live in one module per concern; adapters (store, worker, HTTP) use them through
this module:

* :mod:`.domain_referral`: the state of one referral as facts and outcomes arrive (in any order,
  possibly twice): :func:`apply_fact`, :func:`apply_outcome`;
* :mod:`.domain_funnel`: the raw figures of a group of referrals (:class:`RawFunnel`), percentiles;
* :mod:`.domain_aggregates`: how a referral's change moves the daily aggregate rows;
* :mod:`.domain_suppression`: small-cell suppression with complementary suppression (:func:`suppress`);
* :mod:`.domain_protection`: one protection of the whole cube month x municipality x offence
  (:func:`protect`), from which every response's counts are read (:meth:`Protection.figure`);
* :mod:`.domain_publishing`: the public rows (:func:`publish_figures`) in which no count of
  1..threshold-1 persons and no value that could be derived from published figures appears
  (and :func:`publish_table`, the older protection of one table on its own, kept as the
  baseline of ``bench/stats_protection.py``);
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
from henvis.services.stats.domain_protection import (
    MONTH,
    MUNICIPALITY,
    OFFENCE,
    STAGES,
    Counts,
    Protection,
    Selection,
    counts_of,
    margins_of,
    protect,
)
from henvis.services.stats.domain_publishing import (
    RATES,
    TOTAL,
    publish_figures,
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
    "MONTH",
    "MUNICIPALITY",
    "OFFENCE",
    "RATES",
    "STAGES",
    "TOTAL",
    "AggregateKey",
    "Cell",
    "CounterDeltas",
    "Counts",
    "DaysDeltas",
    "Line",
    "Protection",
    "RawFunnel",
    "ReferralState",
    "Selection",
    "aggregate_changes",
    "aggregate_key",
    "apply_fact",
    "apply_outcome",
    "contribution",
    "counts_of",
    "funnel_of",
    "is_small",
    "margins_of",
    "median",
    "month_end",
    "month_start",
    "months_between",
    "percentile",
    "protect",
    "publish_figures",
    "publish_single",
    "publish_table",
    "round_half_up",
    "suppress",
    "suppressed_label",
    "table_lines",
]
