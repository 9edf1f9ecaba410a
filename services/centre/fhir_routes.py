"""The FHIR R4 endpoint for centres' case systems: ``/fhir/<centre>/``, the centre by slug or SOR id.

Same credentials and isolation as the JSON API (:mod:`api_routes`): a ``centre:<slug>``
client sees its own centre's referrals only; under another centre's base its searches come
back empty and its reads 404, exactly as for a referral that does not exist.  Reads and
outcomes go through :mod:`casework`, like the inbox's, so the access log, the metrics, the
outbox and the statistics cannot tell where an outcome was recorded.

Everything answered is FHIR JSON (``application/fhir+json``), errors an ``OperationOutcome``;
what is supported is listed in the ``CapabilityStatement`` at ``/fhir/<centre>/metadata``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.task import Task
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from henvis.registry import Centre
from henvis.services.centre import casework, domain, domain_fhir, store_referrals
from henvis.services.centre import domain_fhir_resources as build
from henvis.services.centre.deps import CentreClientDep, ClientCentreDep, StateDep
from henvis.services.centre.domain_fhir import BadSearch, BadTaskUpdate
from henvis.services.centre.domain_fhir_resources import INCLUDES, MEDIA_TYPE, POLICE_ID, TaskView
from henvis.services.centre.domain_outcomes import VersionConflict
from henvis.services.centre.key_store import KeyStoreUnavailable
from henvis.services.centre.state import CentreState
from henvis.services.centre.store_referrals import NotFound

router = APIRouter(prefix="/fhir/{centre_key}", tags=["fhir"])

#: When this CapabilityStatement was last changed (its ``date``).
PUBLISHED = datetime(2026, 12, 2, tzinfo=UTC)
SEARCH_PARAMETERS = frozenset({"_id", "status", "authored-on", "_include"})
#: ``_format`` values that ask for what is served anyway (FHIR JSON).
FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


class Refused(Exception):
    """Answer with an OperationOutcome: ``http_status``, a sentence, the element it is about."""

    def __init__(self, http_status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.http_status, self.field = http_status, field


def _fhir(resource: Resource, status: int = 200, headers: dict | None = None) -> Response:
    return Response(resource.model_dump_json(), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _refusal(exc: Refused) -> Response:
    headers = {"Retry-After": "5"} if exc.http_status == 503 else None
    return _fhir(build.operation_outcome(exc.http_status, str(exc), exc.field), exc.http_status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """The app's HTTPException handler: under ``/fhir/`` (401, 403, 404 of an unknown type) an
    OperationOutcome with the same status and headers; FastAPI's usual JSON body elsewhere."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/fhir/"):
        return await http_exception_handler(request, exc)
    outcome = build.operation_outcome(exc.status_code, str(exc.detail))
    return Response(outcome.model_dump_json(), status_code=exc.status_code, media_type=MEDIA_TYPE, headers=exc.headers)


def _centre(state: CentreState, centre_key: str) -> Centre:
    centre = state.registry.by_slug_or_sor_id(centre_key)
    if centre is None or centre.slug not in state.centres:
        raise Refused(404, "No such centre at this server (give its slug or SOR id).", "centre")
    return centre


def _base(request: Request, centre_key: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir/{centre_key}"


def _views(
    state: CentreState,
    centre: Centre,
    served: str | None,
    referral_id: str | None,
    states: frozenset[str] | None = None,
) -> list[TaskView]:
    """The centre's Tasks (the one ``referral_id``, those in ``states``) when the caller is that
    centre; nothing for anyone else."""
    if served != centre.slug or states == frozenset():
        return []
    if referral_id is not None and not _is_uuid(referral_id):
        return []
    return store_referrals.task_views(state.engine, centre.slug, referral_id, states)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _one(state: CentreState, centre: Centre, served: str | None, referral_id: str) -> TaskView:
    views = _views(state, centre, served, referral_id)
    if not views:
        raise Refused(404, "No such referral.", "id")
    return views[0]


def _task(state: CentreState, centre: Centre, view: TaskView) -> Task:
    return build.task(view, centre, state.registry.district)


def _etag(view: TaskView) -> dict:
    return {"ETag": f'W/"{view.version}"'}


# ---------------------------------------------------------------- read


@router.get("/metadata", summary="CapabilityStatement: what this endpoint supports")
def metadata(centre_key: str, request: Request, state: StateDep):
    try:
        _centre(state, centre_key)
    except Refused as exc:
        return _refusal(exc)
    return _fhir(build.capability_statement(_base(request, centre_key), PUBLISHED))


@router.get("/Task", summary="Search Tasks (status, authored-on, _id, _include)")
def search_tasks(centre_key: str, request: Request, client: CentreClientDep, served: ClientCentreDep, state: StateDep):
    try:
        centre = _centre(state, centre_key)
        params = request.query_params
        unknown = sorted(set(params) - SEARCH_PARAMETERS - {"_format"})
        if unknown:
            name = unknown[0][:40]
            raise Refused(400, f"Unsupported search parameter: {name} (see /metadata).", name)
        if any(value not in FORMATS for value in params.getlist("_format")):
            raise Refused(400, "Only JSON is served (_format=json).", "_format")
        includes = params.getlist("_include")
        for include in includes:
            if include not in INCLUDES:
                raise Refused(400, f"Unsupported _include; supported: {', '.join(INCLUDES)}.", "_include")
        statuses = [domain_fhir.status_filter(raw) for raw in params.getlist("status")]
        dates = [domain_fhir.date_filter(raw) for raw in params.getlist("authored-on")]
        ids = params.getlist("_id")
        states = domain_fhir.states_with_status(statuses)
        views = [
            view
            for view in _views(state, centre, served, ids[0] if ids else None, states)
            if all(when.matches(view.referral.issued_at) for when in dates)
        ]
        included = _included(state, centre, client.name, views, includes)
    except BadSearch as exc:
        return _refusal(Refused(400, str(exc), exc.field))
    except Refused as exc:
        return _refusal(exc)
    except KeyStoreUnavailable:
        return _refusal(Refused(503, "The key store is unavailable, so contact details cannot be opened now."))
    tasks = [_task(state, centre, view) for view in views]
    return _fhir(build.searchset(_base(request, centre_key), tasks, included))


def _included(
    state: CentreState, centre: Centre, actor: str, views: list[TaskView], includes: list[str]
) -> list[Resource]:
    """What ``_include`` brings along with ``views``; each Patient read is in the access log."""
    wanted = set(includes)
    included: list[Resource] = []
    for view in views:
        referral = view.referral
        if "Task:focus" in wanted:
            included.append(build.service_request(referral, centre, state.registry.district))
        if "Task:based-on" in wanted:
            included.append(build.consent(referral, state.registry.district))
        if "Task:patient" in wanted:
            person = _person(state, centre, referral.referral_id, actor)
            if person is not None:  # erased: nothing to include (a read answers 410)
                included.append(build.patient(referral.referral_id, person))
    if views and "Task:requester" in wanted:
        included.append(build.police_organization(state.registry.district))
    if views and "Task:owner" in wanted:
        included.append(build.centre_organization(centre))
    return included


def _person(state: CentreState, centre: Centre, referral_id: str, actor: str) -> dict | None:
    shown = casework.read_referral(state.engine, state.keys, centre.slug, referral_id, actor=actor, actor_kind="client")
    return shown["person"]


@router.get("/Task/{referral_id}", summary="Read a Task (ETag: its version)")
def read_task(centre_key: str, referral_id: str, served: ClientCentreDep, state: StateDep, _client: CentreClientDep):
    try:
        centre = _centre(state, centre_key)
        view = _one(state, centre, served, referral_id)
    except Refused as exc:
        return _refusal(exc)
    return _fhir(_task(state, centre, view), headers=_etag(view))


@router.get("/ServiceRequest/{referral_id}", summary="Read a referral's ServiceRequest")
def read_service_request(
    centre_key: str, referral_id: str, served: ClientCentreDep, state: StateDep, _client: CentreClientDep
):
    try:
        centre = _centre(state, centre_key)
        view = _one(state, centre, served, referral_id)
    except Refused as exc:
        return _refusal(exc)
    return _fhir(build.service_request(view.referral, centre, state.registry.district))


@router.get("/Consent/{referral_id}", summary="Read a referral's Consent (inactive after withdrawal)")
def read_consent(centre_key: str, referral_id: str, served: ClientCentreDep, state: StateDep, _client: CentreClientDep):
    try:
        centre = _centre(state, centre_key)
        view = _one(state, centre, served, referral_id)
    except Refused as exc:
        return _refusal(exc)
    return _fhir(build.consent(view.referral, state.registry.district))


@router.get("/Patient/{referral_id}", summary="Read the person's contact details (410 once erased)")
def read_patient(centre_key: str, referral_id: str, client: CentreClientDep, served: ClientCentreDep, state: StateDep):
    try:
        centre = _centre(state, centre_key)
        _one(state, centre, served, referral_id)
        person = _person(state, centre, referral_id, client.name)
    except Refused as exc:
        return _refusal(exc)
    except NotFound:
        return _refusal(Refused(404, "No such referral.", "id"))
    except KeyStoreUnavailable:
        return _refusal(Refused(503, "The key store is unavailable, so contact details cannot be opened now."))
    if person is None:
        return _refusal(Refused(410, "The person's contact details have been erased (withdrawal or retention)."))
    return _fhir(build.patient(referral_id, person))


@router.get("/Organization/{organization_id}", summary="Read the centre or the referring police district")
def read_organization(centre_key: str, organization_id: str, state: StateDep, _client: CentreClientDep):
    try:
        centre = _centre(state, centre_key)
    except Refused as exc:
        return _refusal(exc)
    if organization_id == centre.slug:
        return _fhir(build.centre_organization(centre))
    if organization_id == POLICE_ID:
        return _fhir(build.police_organization(state.registry.district))
    return _refusal(Refused(404, "No such organization.", "id"))


# ---------------------------------------------------------------- update


async def _body(request: Request) -> bytes:
    return await request.body()


BodyDep = Annotated[bytes, Depends(_body)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "The body is not valid JSON.", "body") from None


def _expected_version(if_match: str | None) -> int:
    if if_match is None:
        raise Refused(428, 'An update needs If-Match with the Task\'s version (its ETag, W/"<versionId>").', "If-Match")
    found = _ETAG.match(if_match.strip())
    if not found:
        raise Refused(400, 'If-Match must be the Task\'s ETag, W/"<versionId>".', "If-Match")
    return int(found.group(1))


#: (the Task as served, the parsed body) -> the Task the client asks for
AskedTask = Callable[[dict, object], dict]


class Updater(NamedTuple):
    """Who updates which Task: the centre and referral named in the URL, the centre the
    caller serves, the caller's name."""

    state: CentreState
    centre_key: str
    referral_id: str
    served: str | None
    actor: str


@router.patch("/Task/{referral_id}", summary="Record an outcome: JSON Patch of status/businessStatus, If-Match")
def patch_task(
    centre_key: str,
    referral_id: str,
    request: Request,
    body: BodyDep,
    client: CentreClientDep,
    served: ClientCentreDep,
    state: StateDep,
    if_match: IfMatch = None,
):
    refusal = Refused(415, "PATCH takes a JSON Patch (Content-Type: application/json-patch+json).", "Content-Type")
    updater = Updater(state, centre_key, referral_id, served, client.name)
    return _record(updater, request, body, if_match, ("application/json-patch+json",), refusal, domain_fhir.apply_patch)


@router.put("/Task/{referral_id}", summary="Record an outcome: the Task with a new status/businessStatus, If-Match")
def put_task(
    centre_key: str,
    referral_id: str,
    request: Request,
    body: BodyDep,
    client: CentreClientDep,
    served: ClientCentreDep,
    state: StateDep,
    if_match: IfMatch = None,
):
    def replaced(current: dict, sent: object) -> dict:
        if not isinstance(sent, dict) or sent.get("resourceType") != "Task":
            raise Refused(400, "The body must be a Task resource.", "resourceType")
        if sent.get("id") != referral_id:
            raise Refused(400, "The Task's id must be the id in the URL.", "Task.id")
        return sent

    refusal = Refused(415, "PUT takes a FHIR Task (Content-Type: application/fhir+json).", "Content-Type")
    updater = Updater(state, centre_key, referral_id, served, client.name)
    return _record(updater, request, body, if_match, (MEDIA_TYPE, "application/json"), refusal, replaced)


def _record(
    updater: Updater,
    request: Request,
    body: bytes,
    if_match: str | None,
    media_types: tuple[str, ...],
    wrong_media_type: Refused,
    asked_task: AskedTask,
) -> Response:
    """An update of a Task by PATCH or PUT: the same checks in the same order, then :func:`_update`."""
    state, centre_key, referral_id, served, actor = updater
    try:
        centre = _centre(state, centre_key)
        view = _one(state, centre, served, referral_id)
        if _content_type(request) not in media_types:
            raise wrong_media_type
        expected = _expected_version(if_match)
        sent = _json(body)
        current = _task(state, centre, view).model_dump(mode="json")
        return _update(state, centre, view, current, asked_task(current, sent), expected, actor)
    except BadTaskUpdate as exc:
        return _refusal(Refused(exc.http_status, str(exc), exc.field))
    except Refused as exc:
        return _refusal(exc)


def _update(
    state: CentreState, centre: Centre, view: TaskView, current: dict, updated: dict, expected: int, actor: str
) -> Response:
    """Record the outcome ``updated`` asks for, through the inbox's path; answer the Task as it is now."""
    try:
        # Validated and dumped again, so a value written two ways compares equal to the served one.
        updated = Task.model_validate(updated).model_dump(mode="json")
    except ValidationError as exc:
        field = ".".join(str(part) for part in exc.errors()[0]["loc"]) or "Task"
        raise Refused(422, f"The body is not a valid FHIR Task (at {field}).", f"Task.{field}") from None
    wanted = domain_fhir.wanted_outcome(current, updated, view.referral.state)
    if wanted.outcome is not None:
        if expected != view.version:
            raise Refused(412, f"The Task has changed: it is at version {view.version}; read it again.", "If-Match")
        try:
            casework.record_and_count(
                state.engine,
                state.keys,
                centre=centre.slug,
                referral_id=view.referral.referral_id,
                outcome=wanted.outcome,
                actor=actor,
                actor_kind="client",
                occurred_at=wanted.occurred_at,
                expected_version=expected,
            )
        except domain.IllegalTransition as exc:
            raise Refused(409, str(exc), "Task.businessStatus") from None
        except domain.InvalidOccurredAt as exc:
            raise Refused(422, f"The outcome was not accepted: {exc}.", "Task.lastModified") from None
        except VersionConflict:
            raise Refused(412, "The Task has changed since it was read; read it again.", "If-Match") from None
        except NotFound:
            raise Refused(404, "No such referral.", "id") from None
        except KeyStoreUnavailable:
            raise Refused(503, "The key store is unavailable; nothing was recorded. Please retry.") from None
        view = store_referrals.task_views(state.engine, centre.slug, view.referral.referral_id)[0]
    return _fhir(_task(state, centre, view), headers=_etag(view))
