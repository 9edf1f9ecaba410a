"""The published tables: every count read from one protection of the whole cube.

The store's cube (persons per decision month, municipality and offence), given by its
one-way margins, is protected once per request by ``domain.protect``, the same way whatever
is asked, and every count of every response is a figure of that protection
(``Protection.figure``): no response, and no combination of responses, tells more than the
protected release. There is no way to read unprotected counts here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from henvis.registry import Registry
from henvis.services.stats import domain
from henvis.services.stats.store import Filters, StatsStore

#: Row key of the referrals whose municipality is not one of the registry's (manual handling).
OTHER_MUNICIPALITY = "other"
OTHER_MUNICIPALITY_NAME = "Uden for kredsen / outside the district"

PROTECTION_METHOD = "consistent suppression over the cube month x municipality x offence"
SUPPRESSION_RULE = (
    "Every table is derived from one protected release: the persons by month, by municipality "
    "and by offence (never crossed) and their total. A row of that release with a count of 1 to "
    "{low} persons is withheld whole, and further rows until the withheld rows of each count hold "
    "no one or at least {threshold} persons; a count whose total is 1 to {low} is withheld "
    "everywhere. A figure is shown only when it follows from the shown release, so no "
    "combination of responses narrows a withheld count below {threshold}. Withheld counts show "
    "'{label}', withheld rates null. Days to first contact and the on-time share are shown only "
    "with the acceptances, and only when at least {threshold} referrals are behind them."
)

Box = tuple[domain.Selection, domain.Selection, domain.Selection]


class StatsReader:
    """Builds the published (protected) tables from the store."""

    def __init__(self, store: StatsStore, registry: Registry, threshold: int):
        self.store = store
        self.registry = registry
        self.threshold = threshold

    def suppression(self) -> dict:
        """The protection in force, as every response states it."""
        label = domain.suppressed_label(self.threshold)
        return {
            "threshold": self.threshold,
            "label": label,
            "method": PROTECTION_METHOD,
            "protected_together": ["funnel", "funnel/monthly", "funnel/by-municipality", "page", "csv"],
            "rule": SUPPRESSION_RULE.format(low=self.threshold - 1, label=label, threshold=self.threshold),
        }

    def protection(self) -> domain.Protection:
        """The protection of the whole cube, as it stands. Each table reads it afresh unless
        given one (the page gives its three tables the same)."""
        cells = {key: domain.counts_of(raw) for key, raw in self.store.cube().items()}
        return domain.protect(domain.margins_of(cells), self.threshold)

    def funnel(self, filters: Filters, protection: domain.Protection | None = None) -> dict:
        """The funnel over the filtered referrals; the figures sit at the top level."""
        protection = protection or self.protection()
        raw = self.store.funnels(filters)[None]
        figures = protection.figure(*_box(protection, filters))
        published = domain.publish_figures(figures, raw, self.threshold)
        return {**published, **_envelope(filters), "suppression": self.suppression()}

    def monthly(self, filters: Filters, protection: domain.Protection | None = None) -> dict:
        """One row per month of the period (empty months included) and a total row."""
        protection = protection or self.protection()
        by_month = self.store.funnels(filters, "month")
        _, municipalities, offences = box = _box(protection, filters)
        rows = []
        for month in self._months_of(filters):
            figures = protection.figure(frozenset({month}), municipalities, offences)
            raw = by_month.get(month, domain.RawFunnel())
            rows.append({**domain.publish_figures(figures, raw, self.threshold), "month": month})
        return self._table(filters, rows, self._total(protection, box, by_month.values()))

    def by_municipality(self, filters: Filters, protection: domain.Protection | None = None) -> dict:
        """One row per registry municipality (and one for everyone else) and a total row."""
        protection = protection or self.protection()
        by_code = self.store.funnels(filters, "municipality")
        months, _, offences = box = _box(protection, filters)
        rows = []
        for code, selection, raw in self._municipality_groups(protection, filters, by_code):
            figures = protection.figure(months, selection, offences)
            row = domain.publish_figures(figures, raw, self.threshold)
            centre = self.registry.for_municipality(code)
            row["municipality_code"] = code if code != OTHER_MUNICIPALITY else None
            row["municipality"] = centre.municipality if centre else OTHER_MUNICIPALITY_NAME
            rows.append(row)
        return self._table(filters, rows, self._total(protection, box, by_code.values()))

    def _total(self, protection: domain.Protection, box: Box, parts: Iterable[domain.RawFunnel]) -> dict:
        raw = domain.RawFunnel()
        for part in parts:
            raw.add(part)
        return domain.publish_figures(protection.figure(*box), raw, self.threshold)

    def _months_of(self, filters: Filters) -> list[str]:
        """The filter's months; an open end is the first/last decision date found."""
        first: date | None = filters.date_from
        last: date | None = filters.date_to
        if first is None or last is None:
            found = self.store.decision_date_range(filters)
            if found:
                first, last = first or found[0], last or found[1]
        return domain.months_between(first, last) if first and last and first <= last else []

    def _municipality_groups(
        self, protection: domain.Protection, filters: Filters, by_code: dict[str | None, domain.RawFunnel]
    ) -> list[tuple[str, frozenset[str], domain.RawFunnel]]:
        codes = [centre.municipality_code for centre in self.registry.centres]
        if filters.municipality:
            codes = [code for code in codes if code == filters.municipality]
        groups = [(code, frozenset({code}), by_code.get(code, domain.RawFunnel())) for code in codes]
        other = domain.RawFunnel()
        for code, raw in by_code.items():
            if code not in codes:
                other.add(raw)
        # Persons outside the district (or without a Danish address) are one row, so the
        # table's total is the same as the funnel's.
        if other.offered:
            registry_codes = {centre.municipality_code for centre in self.registry.centres}
            outside = frozenset(code for code in protection.values(domain.MUNICIPALITY) if code not in registry_codes)
            if filters.municipality:
                outside &= {filters.municipality}
            groups.append((OTHER_MUNICIPALITY, outside, other))
        return groups

    def _table(self, filters: Filters, rows: list[dict], total: dict) -> dict:
        return {**_envelope(filters), "suppression": self.suppression(), "rows": rows, "total": total}


def _box(protection: domain.Protection, filters: Filters) -> Box:
    """The box of the cube that ``filters`` select: months, municipalities, offences."""
    months: domain.Selection = None
    if filters.date_from or filters.date_to:
        first = filters.date_from.isoformat()[:7] if filters.date_from else ""
        last = filters.date_to.isoformat()[:7] if filters.date_to else "9999-12"
        months = frozenset(month for month in protection.values(domain.MONTH) if first <= month <= last)
    municipalities = frozenset({filters.municipality}) if filters.municipality else None
    offences = frozenset({filters.offence}) if filters.offence else None
    return months, municipalities, offences


def _envelope(filters: Filters) -> dict:
    return {
        "period": {
            "from": filters.date_from.isoformat() if filters.date_from else None,
            "to": filters.date_to.isoformat() if filters.date_to else None,
            "applies_to": "decision date",
        },
        "filters": {"municipality": filters.municipality, "offence": filters.offence},
    }
