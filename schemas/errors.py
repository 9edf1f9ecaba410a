"""Validation errors a client may see: the field and what is wrong, never the value."""

from __future__ import annotations

import re
from typing import get_args

from pydantic import ValidationError
from pydantic_core.core_schema import ErrorType

from henvis.schemas.events import EVENT_TYPES

# pydantic error types whose messages never contain the input value.
_SAFE_TYPES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_type",
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
        "literal_error",
        "enum",
        "int_type",
        "bool_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "list_type",
        "date_type",
        "datetime_type",
        "timezone_aware",
        # not "union_tag_invalid": its message repeats the submitted tag
        "union_tag_not_found",
        "json_invalid",
        "json_type",
    }
)


#: What an unknown key must look like to be repeated in an error (``postal_adress`` yes).
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def field_path(loc: tuple) -> str:
    """``('consent.given', 'person', 'phone')`` -> ``person.phone``; the union tag is not a field."""
    parts = [str(part) for part in loc if str(part) not in EVENT_TYPES]
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def safe_errors(exc: ValidationError | list[dict]) -> list[dict[str, str]]:
    """One entry per failing field: ``field``, ``message`` and ``type`` (machine-readable).

    Takes a pydantic ``ValidationError`` or the error list of FastAPI's
    ``RequestValidationError`` (whose ``loc`` starts with ``body``/``query``).
    """
    raw = (
        exc.errors(include_url=False, include_input=False, include_context=True)
        if isinstance(exc, ValidationError)
        else exc
    )
    errors = []
    for error in raw:
        kind = error["type"]
        # Our own PydanticCustomError messages are written never to echo the input.
        own_rule = kind not in _PYDANTIC_BUILTIN_TYPES
        message = error["msg"] if (kind in _SAFE_TYPES or own_rule) else f"is not a valid value ({kind})"
        field = field_path(error["loc"])
        if kind == "declined_with_personal_data":
            field = error["ctx"]["fields"]
        if kind == "extra_forbidden" and not _FIELD_NAME.fullmatch(str(error["loc"][-1] if error["loc"] else "")):
            # An unknown key is client input too (it may be a name or a phone number): only
            # keys shaped like field names are repeated; others are reported on their parent.
            field = field_path(tuple(error["loc"][:-1]))
            message = "contains a field that is not allowed (its name is not repeated here)"
        errors.append({"field": field, "message": message, "type": kind})
    return errors


def describe(errors: list[dict[str, str]]) -> str:
    """A human sentence for the list of errors."""
    fields = ", ".join(sorted({error["field"] for error in errors}))
    return f"The event was not accepted: {len(errors)} problem(s) with {fields}."


# ErrorType is a Literal of every built-in pydantic error type.
_PYDANTIC_BUILTIN_TYPES = frozenset(get_args(ErrorType))
