"""The FHIR R4 resources the centre's FHIR endpoint serves, built with fhir.resources (pure).

fhir.resources 8 ships R5 (default), R4B and STU3 models; R4B (4.3.0) is R4 (4.0.1)
unchanged for every resource built here, so these are the R4B models and the endpoint says
``fhirVersion: 4.0.1`` (tests/unit/test_centre_fhir.py parses every answer with the
fhirclient package's R4 4.0.1 models too).

One referral is five resources sharing its id: the ``Task`` (state), its ``ServiceRequest``
(what was asked, of whom, by when), the ``Patient`` (contact details, while they exist), the
``Consent`` (``inactive`` after a withdrawal) and two ``Organization``s (the centre, the police
district that referred).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from henvis.registry import Centre
from henvis.schemas.events import Outcome
from henvis.services.centre import domain
from henvis.services.centre.domain_fhir import STATE_SYSTEM, TASK_STATUS, business_status
from henvis.services.centre.domain_inbox import Referral

FHIR_VERSION = "4.0.1"
MEDIA_TYPE = "application/fhir+json"
#: Danish national OIDs: SOR (organisations) and CPR (persons).
SOR_SYSTEM = "urn:oid:1.2.208.176.1.1"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
REFERRAL_SYSTEM = "urn:henvis:fhir:referral-id"
OFFENCE_SYSTEM = "urn:henvis:fhir:offence"
POLICE_ID = "police-district"

#: resource type -> the ``_include`` that brings it along with a Task (R4 Task search parameters)
INCLUDES = {
    "Task:focus": "ServiceRequest",
    "Task:patient": "Patient",
    "Task:based-on": "Consent",
    "Task:requester": "Organization",
    "Task:owner": "Organization",
}


@dataclass(frozen=True)
class TaskView:
    """A referral as its Task needs it: the snapshot, its version and when it last changed."""

    referral: Referral
    #: 1 + the outcomes recorded on it (the system's withdrawal acknowledgement included)
    version: int
    last_updated: datetime


def _iso(value: datetime) -> str:
    return value.isoformat()


def _ref(kind: str, ident: str, display: str | None = None) -> dict:
    return {"reference": f"{kind}/{ident}", **({"display": display} if display else {})}


def task(view: TaskView, centre: Centre, district: str) -> Task:
    """The referral's Task: state as status/businessStatus, the version for If-Match."""
    referral = view.referral
    ident = referral.referral_id
    deadline = domain.current_deadline(referral.state, referral.contact_due_by, referral.treatment_due_by)
    return Task.model_validate(
        {
            "resourceType": "Task",
            "id": ident,
            "meta": {"versionId": str(view.version), "lastUpdated": _iso(view.last_updated)},
            "identifier": [{"system": REFERRAL_SYSTEM, "value": ident}],
            "basedOn": [_ref("Consent", ident)],
            "status": TASK_STATUS[referral.state],
            "businessStatus": business_status(referral.state),
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": _ref("ServiceRequest", ident),
            "for": _ref("Patient", ident),
            "authoredOn": _iso(referral.issued_at),
            "lastModified": _iso(view.last_updated),
            "requester": _ref("Organization", POLICE_ID, district),
            "owner": _ref("Organization", centre.slug, centre.name),
            # The deadline that matters now: first contact, then the start of treatment.
            "restriction": {"period": {"end": deadline.isoformat()}},
        }
    )


def _request_status(state: str) -> str:
    if state in (domain.WITHDRAWN, Outcome.RETURNED_WRONG_CENTRE.value):
        return "revoked"
    return "completed" if state in domain.CLOSED_STATES else "active"


def service_request(referral: Referral, centre: Centre, district: str) -> ServiceRequest:
    """What the police asked of the centre: a first conversation, by the treatment deadline."""
    ident = referral.referral_id
    return ServiceRequest.model_validate(
        {
            "resourceType": "ServiceRequest",
            "id": ident,
            "identifier": [{"system": REFERRAL_SYSTEM, "value": ident}],
            "status": _request_status(referral.state),
            "intent": "order",
            "code": {"text": "Samtale om rusmiddelbehandling efter sigtelse for spiritus- eller narkokørsel"},
            "subject": _ref("Patient", ident),
            "authoredOn": _iso(referral.issued_at),
            "requester": _ref("Organization", POLICE_ID, district),
            "performer": [_ref("Organization", centre.slug, centre.name)],
            "reasonCode": [{"coding": [{"system": OFFENCE_SYSTEM, "code": referral.offence}]}],
            "occurrencePeriod": {"end": referral.treatment_due_by.isoformat()},
            "supportingInfo": [_ref("Consent", ident)],
        }
    )


def consent(referral: Referral, district: str) -> Consent:
    """The person's consent to the referral: ``inactive`` once withdrawn."""
    ident = referral.referral_id
    return Consent.model_validate(
        {
            "resourceType": "Consent",
            "id": ident,
            "status": "inactive" if referral.state == domain.WITHDRAWN else "active",
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
            "patient": _ref("Patient", ident),
            "organization": [_ref("Organization", POLICE_ID, district)],
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        }
    )


def patient(referral_id: str, person: dict) -> Patient:
    """The referred person's contact details (``person`` as ``domain_inbox.detail`` shows them)."""
    telecom = [
        {"system": system, "value": person[key]}
        for system, key in (("phone", "phone"), ("email", "email"))
        if person[key]
    ]
    address = person.get("postal_address")
    values: dict = {
        "resourceType": "Patient",
        "id": referral_id,
        "name": [{"text": person["full_name"]}] if person["full_name"] else None,
        "telecom": telecom or None,
        "identifier": [{"system": CPR_SYSTEM, "value": person["cpr"]}] if person["cpr"] else None,
        "address": [
            {
                "line": [address["street"]],
                "postalCode": address["postcode"],
                "city": address["city"],
                "country": "DK",
            }
        ]
        if address
        else None,
    }
    return Patient.model_validate({key: value for key, value in values.items() if value is not None})


def centre_organization(centre: Centre) -> Organization:
    """The centre; a placeholder SOR id is an identifier of use ``temp``, saying so."""
    identifiers = []
    if centre.sor_id:
        identifier: dict = {"system": SOR_SYSTEM, "value": centre.sor_id}
        if centre.sor_id_placeholder:
            identifier["use"] = "temp"
            identifier["type"] = {"text": "PLACEHOLDER: not the centre's real SOR id"}
        identifiers.append(identifier)
    return Organization.model_validate(
        {
            "resourceType": "Organization",
            "id": centre.slug,
            "identifier": identifiers or None,
            "active": True,
            "name": centre.name,
            "address": [{"district": centre.municipality, "country": "DK"}],
        }
    )


def police_organization(district: str) -> Organization:
    """The police district that issues the referrals."""
    return Organization.model_validate(
        {"resourceType": "Organization", "id": POLICE_ID, "active": True, "name": district}
    )


def searchset(base: str, matches: Iterable[Resource], included: Iterable[Resource]) -> Bundle:
    """A search's answer: the matches (``search.mode`` match) and what ``_include`` brought."""
    matched = list(matches)
    entries = [_entry(base, resource, "match") for resource in matched]
    entries += [_entry(base, resource, "include") for resource in included]
    return Bundle.model_validate(
        {"resourceType": "Bundle", "type": "searchset", "total": len(matched), "entry": entries or None}
    )


def _entry(base: str, resource: Resource, mode: str) -> dict:
    kind = resource.get_resource_type()
    return {
        "fullUrl": f"{base}/{kind}/{resource.id}",
        "resource": resource.model_dump(mode="json"),
        "search": {"mode": mode},
    }


#: OperationOutcome.issue.code for each HTTP status the endpoint answers with.
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    405: "not-supported",
    404: "not-found",
    409: "business-rule",
    410: "deleted",
    412: "conflict",
    415: "not-supported",
    422: "processing",
    428: "required",
    503: "transient",
}


def operation_outcome(http_status: int, message: str, field: str | None = None) -> OperationOutcome:
    """An error as FHIR says it: one issue, the element it is about in ``expression``."""
    issue: dict = {"severity": "error", "code": _ISSUE_CODES.get(http_status, "processing"), "diagnostics": message}
    if field:
        issue["expression"] = [field]
    return OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]})


def capability_statement(base: str, published: datetime) -> CapabilityStatement:
    """What the endpoint supports: exactly the interactions, parameters and includes served."""
    read_only = [{"code": "read"}]

    def resource(kind: str, profile_note: str, interactions: list[dict], **more) -> dict:
        return {"type": kind, "documentation": profile_note, "interaction": interactions, **more}

    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": _iso(published),
            "publisher": "henvis",
            "kind": "instance",
            "software": {"name": "henvis centre"},
            "implementation": {"description": "henvis: referrals for one rusmiddelcenter", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "patchFormat": ["application/json-patch+json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": f"Task.businessStatus codes are {STATE_SYSTEM} (the referral's state).",
                    "security": {
                        "description": "Bearer token: the centre's API credential (role centre:<slug>); "
                        "a centre sees only its own referrals."
                    },
                    "resource": [
                        resource(
                            "Task",
                            "One per referral. Update (PUT or JSON Patch) changes status/businessStatus only, "
                            "with If-Match on the version; the inbox's state machine applies.",
                            [{"code": "read"}, {"code": "search-type"}, {"code": "update"}, {"code": "patch"}],
                            versioning="versioned-update",
                            readHistory=False,
                            updateCreate=False,
                            conditionalUpdate=False,
                            searchInclude=list(INCLUDES),
                            searchParam=[
                                {"name": "_id", "type": "token"},
                                {"name": "status", "type": "token"},
                                {"name": "authored-on", "type": "date"},
                            ],
                        ),
                        resource("ServiceRequest", "The referral: what is asked, of whom, by when.", read_only),
                        resource(
                            "Patient", "Contact details; 410 Gone once erased (withdrawal, retention).", read_only
                        ),
                        resource("Consent", "The person's consent; inactive after withdrawal.", read_only),
                        resource("Organization", "The centre (SOR id) and the referring police district.", read_only),
                    ],
                }
            ],
        }
    )
