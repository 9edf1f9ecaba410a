"""The researcher API: aggregate, suppressed figures as JSON or CSV.

Thin routes: filters and the credential come from :mod:`.deps`, the figures from the
:class:`~henvis.services.stats.reader.StatsReader`; there is no endpoint for unsuppressed
counts.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from henvis.services.stats.csv_export import csv_response, to_csv
from henvis.services.stats.deps import FiltersDep, OutputFormat, ReaderDep, require_researcher

# The credential is checked before the filters: no information for strangers.
# Each route's ``summary`` is its documentation: FastAPI would publish a docstring as the
# operation's description in /openapi.json.
router = APIRouter(dependencies=[Depends(require_researcher)], tags=["statistics"])


@router.get("/v1/funnel", summary="The funnel over a period (decision dates)")
def funnel(reader: ReaderDep, filters: FiltersDep, output: OutputFormat = "json") -> Response:
    body = reader.funnel(filters)
    if output == "csv":
        return csv_response(to_csv([{**body, "scope": "total"}], ["scope"]), "funnel")
    return JSONResponse(body)


@router.get("/v1/funnel/monthly", summary="The funnel per month of decision")
def monthly(reader: ReaderDep, filters: FiltersDep, output: OutputFormat = "json") -> Response:
    body = reader.monthly(filters)
    if output == "csv":
        return csv_response(to_csv(body["rows"], ["month"], body["total"]), "funnel-monthly")
    return JSONResponse(body)


@router.get("/v1/funnel/by-municipality", summary="The funnel per residence municipality")
def by_municipality(reader: ReaderDep, filters: FiltersDep, output: OutputFormat = "json") -> Response:
    body = reader.by_municipality(filters)
    if output == "csv":
        table = to_csv(body["rows"], ["municipality_code", "municipality"], body["total"])
        return csv_response(table, "funnel-by-municipality")
    return JSONResponse(body)
