"""The researcher API: aggregate, suppressed figures as JSON or CSV, and the page.

Every figure that leaves the service goes through ``domain.publish_table`` /
``domain.publish_single`` (small-cell and complementary suppression); there is no endpoint
for unsuppressed counts.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from henvis.auth import ClientRegistry
from henvis.db import make_engine, migrate
from henvis.http import bearer_auth, create_app
from henvis.registry import Registry, load_registry
from henvis.schemas.events import Offence
from henvis.schemas.municipalities import DANISH_MUNICIPALITIES
from henvis.services.stats import domain
from henvis.services.stats.settings import StatsSettings
from henvis.services.stats.store import Filters, StatsStore

RESEARCHER_ROLES = frozenset({"researcher"})
#: Row key of the referrals whose municipality is not one of the registry's (manual handling).
OTHER_MUNICIPALITY = "other"

SUPPRESSION_RULE = (
    "Counts of 1 to {low} persons are shown as '{label}'. A rate is withheld (null) when its "
    "numerator or denominator is withheld. Further cells are withheld so that no withheld "
    "cell can be found by adding or subtracting published figures of the same response "
    "(complementary suppression). Days to first contact are withheld when fewer than "
    "{threshold} referrals had a contact attempt."
)


def _invalid(field: str, message: str, kind: str) -> RequestValidationError:
    """A 422 naming the query parameter, without echoing its value."""
    return RequestValidationError([{"type": kind, "loc": ("query", field), "msg": message, "input": None}])


def parse_filters(
    date_from: Annotated[
        date | None, Query(alias="from", description="First decision date, YYYY-MM-DD; widened to the start of its month.")
    ] = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="Last decision date, YYYY-MM-DD; widened to the end of its month.")
    ] = None,
    municipality: Annotated[str | None, Query(description="Residence kommunekode, e.g. 657.")] = None,
    offence: Annotated[Offence | None, Query(description="drink_driving, drug_driving or drink_and_drug_driving.")] = None,
) -> Filters:
    if municipality is not None and municipality not in DANISH_MUNICIPALITIES:
        raise _invalid("municipality", "must be a Danish municipality code (kommunekode), e.g. 657", "municipality_unknown")
    if date_from and date_to and date_from > date_to:
        raise _invalid("to", "must not be before 'from'", "period_reversed")
    # Whole months only: two periods a day apart would otherwise differ by the few persons
    # decided on that day, which no cell suppression within one response can protect.
    return Filters(
        date_from=domain.month_start(date_from) if date_from else None,
        date_to=domain.month_end(date_to) if date_to else None,
        municipality=municipality,
        offence=str(offence) if offence else None,
    )




class StatsReader:
    """Builds the published (suppressed) tables from the store."""

    def __init__(self, store: StatsStore, registry: Registry, threshold: int):
        self.store = store
        self.registry = registry
        self.threshold = threshold

    def suppression(self) -> dict:
        label = domain.suppressed_label(self.threshold)
        return {
            "threshold": self.threshold,
            "label": label,
            "rule": SUPPRESSION_RULE.format(low=self.threshold - 1, label=label, threshold=self.threshold),
        }

    def funnel(self, filters: Filters) -> dict:
        raw = self.store.funnels(filters)[None]
        # The figures sit at the top level, next to what they describe.
        return {**domain.publish_single(raw, self.threshold), **_envelope(filters), "suppression": self.suppression()}

    def monthly(self, filters: Filters) -> dict:
        by_month = self.store.funnels(filters, "month")
        first = filters.date_from
        last = filters.date_to
        if first is None or last is None:
            found = self.store.decision_date_range(filters)
            if found:
                first, last = first or found[0], last or found[1]
        months = domain.months_between(first, last) if first and last and first <= last else []
        groups = [(month, by_month.get(month, domain.RawFunnel())) for month in months]
        rows, total = domain.publish_table(groups, self.threshold)
        for month, row in zip(months, rows):
            row["month"] = month
        return {**_envelope(filters), "suppression": self.suppression(), "rows": rows, "total": total}

    def by_municipality(self, filters: Filters) -> dict:
        by_code = self.store.funnels(filters, "municipality")
        codes = [centre.municipality_code for centre in self.registry.centres]
        if filters.municipality:
            codes = [code for code in codes if code == filters.municipality]
        groups: list[tuple[str, domain.RawFunnel]] = [(code, by_code.get(code, domain.RawFunnel())) for code in codes]
        other = domain.RawFunnel()
        for code, raw in by_code.items():
            if code not in codes:
                other.add(raw)
        # Persons outside the district (or without a Danish address) are one row, so the
        # table's total is the same as the funnel's.
        if other.offered:
            groups.append((OTHER_MUNICIPALITY, other))
        rows, total = domain.publish_table(groups, self.threshold)
        for (code, _), row in zip(groups, rows):
            centre = self.registry.for_municipality(code)
            row["municipality_code"] = code if code != OTHER_MUNICIPALITY else None
            row["municipality"] = centre.municipality if centre else "Uden for kredsen / outside the district"
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


FIGURE_COLUMNS: tuple[str, ...] = (
    *domain.COUNT_FIELDS,
    "acceptance_rate",
    "acceptance_percent",
    "first_interview_rate",
    "first_interview_percent",
    "follow_up_rate",
    "follow_up_percent",
    "days_to_first_contact_median",
    "days_to_first_contact_p90",
    "contacted_by_deadline_share",
    "contacted_by_deadline_percent",
)


def to_csv(rows: list[dict], key_columns: list[str], total: dict | None = None) -> str:
    """CSV of published rows: withheld counts as '<5', withheld rates as empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*key_columns, *FIGURE_COLUMNS])
    for row in rows:
        writer.writerow([*(row.get(key) or "" for key in key_columns), *(_csv_value(row[name]) for name in FIGURE_COLUMNS)])
    if total is not None:
        writer.writerow(["total", *([""] * (len(key_columns) - 1)), *(_csv_value(total[name]) for name in FIGURE_COLUMNS)])
    return buffer.getvalue()


def _csv_value(value) -> str:
    return "" if value is None else str(value)


def _csv_response(text: str, name: str) -> Response:
    return Response(
        content=text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def create_stats_app(settings: StatsSettings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or StatsSettings()
    if run_migrations:
        migrate(settings.database_url, "stats")
    engine = make_engine(settings.database_url)
    store = StatsStore(engine)
    registry = load_registry(settings.registry_path)
    clients = ClientRegistry.from_settings(settings)
    reader = StatsReader(store, registry, settings.suppression_threshold)

    app = create_app(
        service="stats",
        title="henvis statistics",
        version="1",
        description="Aggregate, non-identifying figures of the referral programme for researchers (role `researcher`).",
        ready=store.ping,
    )
    app.state.reader = reader
    researcher = bearer_auth(clients, RESEARCHER_ROLES)

    @app.get("/v1/funnel", dependencies=[Depends(researcher)], tags=["statistics"], summary="The funnel over a period (decision dates)")
    def funnel(
        filters: Annotated[Filters, Depends(parse_filters)],
        output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ):
        body = reader.funnel(filters)
        if output == "csv":
            return _csv_response(to_csv([{**body, "scope": "total"}], ["scope"]), "funnel")
        return JSONResponse(body)

    @app.get("/v1/funnel/monthly", dependencies=[Depends(researcher)], tags=["statistics"], summary="The funnel per month of decision")
    def monthly(
        filters: Annotated[Filters, Depends(parse_filters)],
        output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ):
        body = reader.monthly(filters)
        if output == "csv":
            return _csv_response(to_csv(body["rows"], ["month"], body["total"]), "funnel-monthly")
        return JSONResponse(body)

    @app.get("/v1/funnel/by-municipality", dependencies=[Depends(researcher)], tags=["statistics"], summary="The funnel per residence municipality")
    def by_municipality(
        filters: Annotated[Filters, Depends(parse_filters)],
        output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ):
        body = reader.by_municipality(filters)
        if output == "csv":
            return _csv_response(
                to_csv(body["rows"], ["municipality_code", "municipality"], body["total"]), "funnel-by-municipality"
            )
        return JSONResponse(body)

    from henvis.services.stats.page import mount_page

    mount_page(app, reader, clients, secure_cookies=settings.secure_cookies)
    return app
