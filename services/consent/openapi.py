"""What the consent API documents: description, tags, response models and request bodies.

The routes read their bodies by hand (``DECISION_BODY``, ``WITHDRAWAL_BODY``) so that the
credential and the content type are checked before the body; ``build_document`` therefore
adds the event models to FastAPI's document itself. The document is checked in as
``docs/consent-openapi.json`` (``henvis consent openapi``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter

from henvis.schemas.events import ConsentDecision, ConsentDeclined, ConsentGiven, ConsentWithdrawn

DECISION_BODY = TypeAdapter(ConsentDecision)
WITHDRAWAL_BODY = TypeAdapter(ConsentWithdrawn)
_BODIES: dict[str, TypeAdapter[ConsentGiven | ConsentDeclined] | TypeAdapter[ConsentWithdrawn]] = {
    "ConsentDecision": DECISION_BODY,
    "ConsentWithdrawn": WITHDRAWAL_BODY,
}
_SCHEMA_REF = "#/components/schemas/{model}"

DESCRIPTION = """\
The only door for police case systems into henvis.

* `POST /v1/decisions` — one `consent.given` or `consent.declined` event each time the
  offer of counselling is made.
* `POST /v1/withdrawals` — one `consent.withdrawn` event when a person changes their mind,
  naming the `case_ref` or the `referral_id` returned when the consent was accepted.

Every request needs a bearer token of a client with the `police` role (the key store's
endpoints: a centre's or the manual-handling role; the access log: the auditor role). Requests are
idempotent on `event_id`: send the same event again (e.g. after a timeout) and you get
200 with the original result; a different event under a known `event_id` is refused
with 409. A 2xx means the event is stored durably and will reach the centre.
Errors never repeat the values you sent.
"""

TAGS = [
    {"name": "police", "description": "Endpoints for police case systems (role `police`)."},
    {
        "name": "data keys",
        "description": "The key store: a referral's data key for the one centre (role `centre:<slug>`) or the"
        " manual-handling role it is granted to. Withdrawal destroys it.",
    },
    {"name": "audit", "description": "The key access log, for auditors (role `auditor`)."},
    {"name": "operations", "description": "Health and readiness probes for operators."},
]


class Accepted(BaseModel):
    event_id: str = Field(description="The event's id (your idempotency key).")
    status: str = Field(description="Always `accepted`.", examples=["accepted"])
    referral_id: str | None = Field(
        default=None, description="For a consent.given: the referral id a withdrawal may name."
    )


class ErrorItem(BaseModel):
    field: str = Field(description="Dotted path of the failing field, e.g. `person.phone`.")
    message: str = Field(description="What is wrong; never the submitted value.")
    type: str = Field(description="Machine-readable error code.")


class ErrorBody(BaseModel):
    detail: str = Field(description="A human sentence.")
    errors: list[ErrorItem] = Field(default_factory=list, description="One entry per failing field.")


def responses(accepted_description: str) -> dict[int | str, dict[str, Any]]:
    """Every answer a police endpoint may give, with ``accepted_description`` for its 202."""
    return {
        200: {"model": Accepted, "description": "Replay: this event was accepted before; the original result."},
        202: {"model": Accepted, "description": accepted_description},
        401: {
            "model": ErrorBody,
            "description": "Missing or unknown bearer token, or an access token that fails a check.",
        },
        403: {"model": ErrorBody, "description": "The token's role is not `police`, or it is for another henvis API."},
        409: {"model": ErrorBody, "description": "Another event was already accepted under this event_id."},
        413: {"model": ErrorBody, "description": "The body is larger than the limit."},
        415: {"model": ErrorBody, "description": "The body is not `application/json`."},
        422: {"model": ErrorBody, "description": "Invalid event: the failing fields are listed."},
        503: {
            "model": ErrorBody,
            "description": (
                "The database is unavailable, or the identity provider's keys cannot be fetched to check an access"
                " token; nothing was stored. Retry."
            ),
        },
    }


def request_body(component: str) -> dict:
    """The ``openapi_extra`` naming the event model ``component`` as the required JSON body."""
    if component not in _BODIES:
        raise KeyError(f"no request body model named {component}")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF.format(model=component)}}},
        }
    }


def build_document(app: FastAPI) -> dict:
    """FastAPI's document plus the event models the endpoints read by hand (cached on ``app``)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=TAGS
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, adapter in _BODIES.items():
        model_schema = adapter.json_schema(ref_template=_SCHEMA_REF)
        components.update(model_schema.pop("$defs", {}))
        components[name] = model_schema
    schema["components"]["schemas"] = dict(sorted(components.items()))
    app.openapi_schema = schema
    return schema
