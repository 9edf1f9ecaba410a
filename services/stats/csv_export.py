"""CSV of published rows: withheld counts as ``<5``, withheld rates as empty cells."""

from __future__ import annotations

import csv
import io

from fastapi.responses import Response

from henvis.services.stats import domain

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
    """CSV of published rows: the key columns, then every figure; a ``total`` row last."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*key_columns, *FIGURE_COLUMNS])
    for row in rows:
        writer.writerow([*(row.get(key) or "" for key in key_columns), *_figures(row)])
    if total is not None:
        writer.writerow(["total", *([""] * (len(key_columns) - 1)), *_figures(total)])
    return buffer.getvalue()


def csv_response(text: str, name: str) -> Response:
    """``text`` as a CSV download called ``name.csv``."""
    return Response(
        content=text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _figures(row: dict) -> list[str]:
    return ["" if row[name] is None else str(row[name]) for name in FIGURE_COLUMNS]
