"""The published tables: the store's raw funnels through the domain's suppression.

Every figure that leaves the service goes through ``domain.publish_table`` /
``domain.publish_single`` (small-cell and complementary suppression); there is no way to
read unsuppressed counts here.
"""

from __future__ import annotations

from datetime import date

from henvis.registry import Registry
from henvis.services.stats import domain
from henvis.services.stats.store import Filters, StatsStore

#: Row key of the referrals whose municipality is not one of the registry's (manual handling).
OTHER_MUNICIPALITY = "other"
OTHER_MUNICIPALITY_NAME = "Uden for kredsen / outside the district"

SUPPRESSION_RULE = (
    "Counts of 1 to {low} persons are shown as '{label}'. A rate is withheld (null) when its "
    "numerator or denominator is withheld. Further cells are withheld so that no withheld "
    "cell can be found by adding or subtracting published figures of the same response "
    "(complementary suppression). Days to first contact are withheld when fewer than "
    "{threshold} referrals had a contact attempt."
)

Groups = list[tuple[str, domain.RawFunnel]]


class StatsReader:
    """Builds the published (suppressed) tables from the store."""

    def __init__(self, store: StatsStore, registry: Registry, threshold: int):
        self.store = store
        self.registry = registry
        self.threshold = threshold

    def suppression(self) -> dict:
        """The suppression rule in force, as every response states it."""
        label = domain.suppressed_label(self.threshold)
        return {
            "threshold": self.threshold,
            "label": label,
            "rule": SUPPRESSION_RULE.format(low=self.threshold - 1, label=label, threshold=self.threshold),
        }

    def funnel(self, filters: Filters) -> dict:
        """The funnel over the filtered referrals; the figures sit at the top level."""
        raw = self.store.funnels(filters)[None]
        return {**domain.publish_single(raw, self.threshold), **_envelope(filters), "suppression": self.suppression()}

    def monthly(self, filters: Filters) -> dict:
        """One row per month of the period (empty months included) and a total row."""
        by_month = self.store.funnels(filters, "month")
        months = self._months_of(filters)
        groups = [(month, by_month.get(month, domain.RawFunnel())) for month in months]
        rows, total = domain.publish_table(groups, self.threshold)
        for month, row in zip(months, rows, strict=False):
            row["month"] = month
        return self._table(filters, rows, total)

    def by_municipality(self, filters: Filters) -> dict:
        """One row per registry municipality (and one for everyone else) and a total row."""
        groups = self._municipality_groups(filters)
        rows, total = domain.publish_table(groups, self.threshold)
        for (code, _), row in zip(groups, rows, strict=False):
            centre = self.registry.for_municipality(code)
            row["municipality_code"] = code if code != OTHER_MUNICIPALITY else None
            row["municipality"] = centre.municipality if centre else OTHER_MUNICIPALITY_NAME
        return self._table(filters, rows, total)

    def _months_of(self, filters: Filters) -> list[str]:
        """The filter's months; an open end is the first/last decision date found."""
        first: date | None = filters.date_from
        last: date | None = filters.date_to
        if first is None or last is None:
            found = self.store.decision_date_range(filters)
            if found:
                first, last = first or found[0], last or found[1]
        return domain.months_between(first, last) if first and last and first <= last else []

    def _municipality_groups(self, filters: Filters) -> Groups:
        by_code = self.store.funnels(filters, "municipality")
        codes = [centre.municipality_code for centre in self.registry.centres]
        if filters.municipality:
            codes = [code for code in codes if code == filters.municipality]
        groups: Groups = [(code, by_code.get(code, domain.RawFunnel())) for code in codes]
        other = domain.RawFunnel()
        for code, raw in by_code.items():
            if code not in codes:
                other.add(raw)
        # Persons outside the district (or without a Danish address) are one row, so the
        # table's total is the same as the funnel's.
        if other.offered:
            groups.append((OTHER_MUNICIPALITY, other))
        return groups

    def _table(self, filters: Filters, rows: list[dict], total: dict) -> dict:
        return {**_envelope(filters), "suppression": self.suppression(), "rows": rows, "total": total}


def _envelope(filters: Filters) -> dict:
    return {
        "period": {
            "from": filters.date_from.isoformat() if filters.date_from else None,
            "to": filters.date_to.isoformat() if filters.date_to else None,
            "applies_to": "decision date",
        },
        "filters": {"municipality": filters.municipality, "offence": filters.offence},
    }
