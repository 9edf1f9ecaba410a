"""Query parameters -> :class:`~henvis.services.stats.store.Filters`, for the API and the page.

Errors are 422s naming the parameter without echoing its value (``RequestValidationError``
with ``input`` blanked, rendered by the app's handler from ``henvis.http``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import QueryParams

from henvis.schemas.events import Offence
from henvis.schemas.municipalities import DANISH_MUNICIPALITIES
from henvis.services.stats import domain
from henvis.services.stats.store import Filters


def invalid_query(field: str, message: str, kind: str) -> RequestValidationError:
    """A 422 naming the query parameter, without echoing its value."""
    return RequestValidationError([{"type": kind, "loc": ("query", field), "msg": message, "input": None}])


def parse_filters(
    date_from: Annotated[
        date | None,
        Query(alias="from", description="First decision date, YYYY-MM-DD; widened to the start of its month."),
    ] = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="Last decision date, YYYY-MM-DD; widened to the end of its month.")
    ] = None,
    municipality: Annotated[str | None, Query(description="Residence kommunekode, e.g. 657.")] = None,
    offence: Annotated[
        Offence | None, Query(description="drink_driving, drug_driving or drink_and_drug_driving.")
    ] = None,
) -> Filters:
    """The filters of a request (a FastAPI dependency; also called with the page's values)."""
    if municipality is not None and municipality not in DANISH_MUNICIPALITIES:
        raise invalid_query(
            "municipality", "must be a Danish municipality code (kommunekode), e.g. 657", "municipality_unknown"
        )
    if date_from and date_to and date_from > date_to:
        raise invalid_query("to", "must not be before 'from'", "period_reversed")
    # Whole months only: two periods a day apart would otherwise differ by the few persons
    # decided on that day, which no cell suppression within one response can protect.
    return Filters(
        date_from=domain.month_start(date_from) if date_from else None,
        date_to=domain.month_end(date_to) if date_to else None,
        municipality=municipality,
        offence=str(offence) if offence else None,
    )


def page_filters(params: QueryParams) -> Filters:
    """The filters of the page's form, where an empty field means "no filter".

    Parsed by hand rather than as a dependency so the page can ask for a login before it
    complains about a filter.
    """
    offence = _offence_param(params)
    return parse_filters(
        _date_param(params, "from"), _date_param(params, "to"), params.get("municipality") or None, offence
    )


def _offence_param(params: QueryParams) -> Offence | None:
    value = params.get("offence") or None
    if value is None:
        return None
    try:
        return Offence(value)
    except ValueError:
        raise invalid_query("offence", "must be one of " + ", ".join(o.value for o in Offence), "enum") from None


def _date_param(params: QueryParams, name: str) -> date | None:
    value = params.get(name) or None
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid_query(name, "must be a date, YYYY-MM-DD", "date_invalid") from None
