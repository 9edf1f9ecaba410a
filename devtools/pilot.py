"""The pilot period, reproducibly: a seeded plan and a driver that replays it through the pipeline.

The programme's status report (January 2022, the last ten months) says 119 people said yes
to being contacted, 67 % of them had a first conversation and 32 % said yes to more.
:func:`generate_pilot` makes a plan with exactly those figures over the ten months
2021-04-01 .. 2022-01-31:

* 300 offers across the eleven municipalities, weighted by population (2021), each a
  ``consent.given`` (119) or ``consent.declined`` (181) event with a historical ``occurred_at``;
* 4 withdrawals among the 119 (``consent.withdrawn``, 1–3 days after the yes); a withdrawn
  referral gets no outcomes, and still counts as accepted (DESIGN §5);
* centre outcomes for the other 115: 80 with ``first_interview_held`` (80/119 = 67 %), 38 of
  them with ``follow_up_accepted`` (38/119 = 32 %); the other 35 are unreachable, declined
  by the person, or contacted without an interview yet. First attempts fall mostly 1–3
  working days after the decision, some ``contact_attempted`` before ``contacted``.

Persons are fake: Danish names (æ, ø, å), valid +45 numbers, some with a CPR number that
passes validation, some with an e-mail or address. Every event id is derived from the seed,
so a rerun of the same plan is idempotent all the way through the pipeline.

:func:`replay` drives the real services over HTTP: consent API (police token) → Kafka →
router → centre inbox (each centre's token) → outcomes → stats.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any

import httpx

from henvis.deadlines import DANISH_TIME, add_working_days, local_date
from henvis.registry import Centre, Registry, load_registry
from henvis.schemas.events import (
    ConsentDeclined,
    ConsentGiven,
    ConsentWithdrawn,
    Decision,
    Offence,
    Outcome,
    ReferralFact,
    ReferralOutcome,
    WithdrawalReason,
    referral_id_for,
)
from henvis.schemas.person import Person, PostalAddress

PILOT_FIRST_DAY = date(2021, 4, 1)
PILOT_LAST_DAY = date(2022, 1, 31)
OFFERS = 300
ACCEPTED = 119
WITHDRAWN = 4
FIRST_INTERVIEWS = 80
FOLLOW_UPS = 38
UNREACHABLE = 15
DECLINED_BY_PERSON = 14

#: Fixed forever: the pilot's event ids are uuid5 of this namespace, the seed and a counter.
PILOT_NAMESPACE = uuid.UUID("b0c6f7f2-2f4e-5a6b-8d0e-7d3f1c9a2e51")

#: Inhabitants 1 January 2021 (Danmarks Statistik, FOLK1A), rounded: the weights of offers.
POPULATION = {
    "657": 89_000,  # Herning
    "661": 59_000,  # Holstebro
    "665": 20_000,  # Lemvig
    "671": 21_000,  # Struer
    "740": 96_000,  # Silkeborg
    "756": 41_000,  # Ikast-Brande
    "760": 56_000,  # Ringkøbing-Skjern
    "773": 20_000,  # Morsø
    "779": 46_000,  # Skive
    "787": 43_000,  # Thisted
    "791": 97_000,  # Viborg
}
POSTCODES = {
    "657": ("7400", "Herning"),
    "661": ("7500", "Holstebro"),
    "665": ("7620", "Lemvig"),
    "671": ("7600", "Struer"),
    "740": ("8600", "Silkeborg"),
    "756": ("7430", "Ikast"),
    "760": ("6950", "Ringkøbing"),
    "773": ("7900", "Nykøbing M"),
    "779": ("7800", "Skive"),
    "787": ("7700", "Thisted"),
    "791": ("8800", "Viborg"),
}
OFFENCE_WEIGHTS = {Offence.DRINK_DRIVING: 0.62, Offence.DRUG_DRIVING: 0.3, Offence.DRINK_AND_DRUG_DRIVING: 0.08}
FIRST_NAMES = (
    "Søren",
    "Mette",
    "Jørgen",
    "Åse",
    "Bjørn",
    "Kirsten",
    "Mads",
    "Anne",
    "Lærke",
    "Frederik",
    "Rasmus",
    "Ida",
    "Nikolaj",
    "Sofie",
    "Henrik",
    "Louise",
    "Jens",
    "Pernille",
    "Ole",
    "Birthe",
    "Thøger",
    "Mikkel",
)
LAST_NAMES = (
    "Jørgensen",
    "Sørensen",
    "Møller",
    "Kjær",
    "Nørgaard",
    "Østergaard",
    "Andersen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Christensen",
    "Lund",
    "Bach",
    "Holm",
    "Dahl",
    "Skovgård",
    "Bækgaard",
    "Ærø-Madsen",
)
STREETS = ("Søndergade", "Nørregade", "Østergade", "Vestergade", "Kirkevej", "Skovvej", "Åvej", "Møllevej", "Bøgevej")
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})


@dataclass
class PilotPlan:
    """The pilot period as events: decisions, withdrawals and each referral's planned outcomes."""

    seed: int
    decisions: list[ConsentGiven | ConsentDeclined]
    withdrawals: list[ConsentWithdrawn]
    #: referral id -> [(outcome, occurred_at), ...] in time order; never for a withdrawn referral
    outcomes: dict[uuid.UUID, list[tuple[Outcome, datetime]]] = field(default_factory=dict)

    # ------------------------------------------------------------ figures

    @property
    def accepted(self) -> list[ConsentGiven]:
        return [decision for decision in self.decisions if isinstance(decision, ConsentGiven)]

    @property
    def declined(self) -> list[ConsentDeclined]:
        return [decision for decision in self.decisions if isinstance(decision, ConsentDeclined)]

    @property
    def withdrawn_referral_ids(self) -> set[uuid.UUID]:
        by_case = {decision.case_ref: decision for decision in self.accepted}
        return {referral_id_for(by_case[_withdrawn_case(withdrawal)].event_id) for withdrawal in self.withdrawals}

    def count_with(self, outcome: Outcome) -> int:
        return sum(any(planned == outcome for planned, _ in steps) for steps in self.outcomes.values())

    def summary(self) -> dict[str, int]:
        return {
            "offered": len(self.decisions),
            "accepted": len(self.accepted),
            "declined": len(self.declined),
            "withdrawn": len(self.withdrawals),
            "first_interviews": self.count_with(Outcome.FIRST_INTERVIEW_HELD),
            "follow_ups": self.count_with(Outcome.FOLLOW_UP_ACCEPTED),
            "outcomes": sum(len(steps) for steps in self.outcomes.values()),
        }

    # ------------------------------------------------------------ ids

    def outcome_event_id(self, referral_id: uuid.UUID, index: int) -> uuid.UUID:
        """The same id on every replay: the centre API and stats drop the repeat."""
        return uuid.uuid5(PILOT_NAMESPACE, f"{self.seed}:outcome:{referral_id}:{index}")

    # ------------------------------------------------------------ what the pipeline would derive

    def facts(self, registry: Registry | None = None) -> list[ReferralFact]:
        """The facts the router publishes for this plan (for testing stats on its own)."""
        registry = registry or load_registry()
        facts: list[ReferralFact] = []
        by_case = {decision.case_ref: decision for decision in self.accepted}
        for decision in self.decisions:
            centre = _centre_of(registry, decision)
            accepted = isinstance(decision, ConsentGiven)
            facts.append(
                ReferralFact(
                    event_id=uuid.uuid5(PILOT_NAMESPACE, f"{self.seed}:fact:{decision.event_id}"),
                    occurred_at=decision.occurred_at,
                    referral_id=referral_id_for(decision.event_id),
                    decision=Decision.ACCEPTED if accepted else Decision.DECLINED,
                    offence=decision.offence,
                    municipality_code=decision.municipality_code,
                    centre=centre.slug if centre else None,
                    decided_on=local_date(decision.occurred_at),
                    contact_due_by=centre.contact_due_by(decision.occurred_at) if (centre and accepted) else None,
                    treatment_due_by=centre.treatment_due_by(decision.occurred_at) if (centre and accepted) else None,
                )
            )
        for withdrawal in self.withdrawals:
            decision = by_case[_withdrawn_case(withdrawal)]
            centre = _centre_of(registry, decision)
            facts.append(
                ReferralFact(
                    event_id=uuid.uuid5(PILOT_NAMESPACE, f"{self.seed}:fact:{withdrawal.event_id}"),
                    occurred_at=withdrawal.occurred_at,
                    referral_id=referral_id_for(decision.event_id),
                    decision=Decision.WITHDRAWN,
                    offence=decision.offence,
                    municipality_code=decision.municipality_code,
                    centre=centre.slug if centre else None,
                    decided_on=local_date(withdrawal.occurred_at),
                )
            )
        return facts

    def outcome_events(self, registry: Registry | None = None) -> list[ReferralOutcome]:
        """The outcomes the centres publish for this plan (for testing stats on its own)."""
        registry = registry or load_registry()
        centre_of = {referral_id_for(decision.event_id): _centre_slug(registry, decision) for decision in self.accepted}
        return [
            ReferralOutcome(
                event_id=self.outcome_event_id(referral_id, index),
                occurred_at=occurred_at,
                referral_id=referral_id,
                centre=centre_of[referral_id],
                outcome=outcome,
            )
            for referral_id, steps in self.outcomes.items()
            for index, (outcome, occurred_at) in enumerate(steps)
        ]


def _withdrawn_case(withdrawal: ConsentWithdrawn) -> str:
    """The case a withdrawal names: the pilot's withdrawals always go by case_ref, never referral_id."""
    if withdrawal.case_ref is None:
        raise ValueError(f"withdrawal {withdrawal.event_id} names no case_ref; pilot withdrawals go by case")
    return withdrawal.case_ref


def _centre_of(registry: Registry, decision: ConsentGiven | ConsentDeclined) -> Centre | None:
    """The centre of the decision's municipality; None without a municipality or outside the district."""
    return registry.for_municipality(decision.municipality_code) if decision.municipality_code else None


def _centre_slug(registry: Registry, decision: ConsentGiven) -> str:
    """The centre an accepted decision goes to; every pilot municipality has one in the registry."""
    centre = _centre_of(registry, decision)
    if centre is None:
        raise ValueError(
            f"no centre in the registry for municipality {decision.municipality_code!r} (decision {decision.event_id})"
        )
    return centre.slug


# ---------------------------------------------------------------- generation (pure)


def generate_pilot(seed: int = 2022) -> PilotPlan:
    """The pilot period as a plan; the same seed always gives the same plan."""
    rng = random.Random(seed)
    ids = _Ids(seed)
    codes = list(POPULATION)
    days = (PILOT_LAST_DAY - PILOT_FIRST_DAY).days + 1
    accepted_positions = set(rng.sample(range(OFFERS), ACCEPTED))
    phones: set[str] = set()

    offers = []
    for _ in range(OFFERS):
        day = PILOT_FIRST_DAY + timedelta(days=rng.randrange(days))
        moment = datetime.combine(day, clock(rng.randint(7, 22), rng.randrange(60), rng.randrange(60)), DANISH_TIME)
        offers.append(moment)
    offers.sort()

    decisions: list[ConsentGiven | ConsentDeclined] = []
    for index, moment in enumerate(offers):
        code = rng.choices(codes, weights=[POPULATION[c] for c in codes])[0]
        offence = rng.choices(list(OFFENCE_WEIGHTS), weights=list(OFFENCE_WEIGHTS.values()))[0]
        occurred_at = moment.astimezone(DANISH_TIME)
        charged_on = local_date(occurred_at) - timedelta(days=rng.choice((0, 0, 0, 1, 2)))
        # The fields both kinds of decision share, as keyword arguments of either model.
        common: dict[str, Any] = {
            "event_id": ids.next("decision"),
            "occurred_at": occurred_at,
            "case_ref": f"3900-{84000 + index * 7 % 1000:05d}-{index + 1:05d}-{occurred_at.year % 100:02d}",
            "offence": offence,
            "charged_on": charged_on,
            "municipality_code": code,
        }
        if index in accepted_positions:
            decisions.append(
                ConsentGiven(
                    **common,
                    person=_fake_person(rng, code, phones),
                    consent_text_version="samtykke-2020-03",
                    recorded_by=f"POL{rng.randint(1000, 9999)}",
                )
            )
        else:
            decisions.append(ConsentDeclined(**common, recorded_by=f"POL{rng.randint(1000, 9999)}"))

    accepted = [decision for decision in decisions if isinstance(decision, ConsentGiven)]
    withdrawn = rng.sample(accepted, WITHDRAWN)
    withdrawals = [
        ConsentWithdrawn(
            event_id=ids.next("withdrawal"),
            occurred_at=decision.occurred_at + timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 5)),
            case_ref=decision.case_ref,
            reason=WithdrawalReason.PERSON_CHANGED_MIND,
        )
        for decision in withdrawn
    ]
    withdrawals.sort(key=lambda event: event.occurred_at)

    contactable = [decision for decision in accepted if decision not in withdrawn]
    rng.shuffle(contactable)
    interviewed = contactable[:FIRST_INTERVIEWS]
    followed_up = {id(decision) for decision in rng.sample(interviewed, FOLLOW_UPS)}
    rest = contactable[FIRST_INTERVIEWS:]
    unreachable = rest[:UNREACHABLE]
    declined_by_person = rest[UNREACHABLE : UNREACHABLE + DECLINED_BY_PERSON]

    outcomes: dict[uuid.UUID, list[tuple[Outcome, datetime]]] = {}
    for decision in contactable:
        referral_id = referral_id_for(decision.event_id)
        if decision in interviewed:
            steps = _interview_path(rng, decision.occurred_at, follow_up=id(decision) in followed_up)
        elif decision in unreachable:
            steps = _unreachable_path(rng, decision.occurred_at)
        elif decision in declined_by_person:
            steps = _declined_path(rng, decision.occurred_at)
        else:
            first = _first_attempt(rng, decision.occurred_at)
            steps = [(Outcome.CONTACTED, first)]
        outcomes[referral_id] = steps
    return PilotPlan(seed=seed, decisions=decisions, withdrawals=withdrawals, outcomes=outcomes)


class _Ids:
    def __init__(self, seed: int):
        self.seed = seed
        self.counter = 0

    def next(self, kind: str) -> uuid.UUID:
        self.counter += 1
        return uuid.uuid5(PILOT_NAMESPACE, f"{self.seed}:{kind}:{self.counter}")


def _fake_person(rng: random.Random, code: str, phones: set[str]) -> Person:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    while True:
        phone = f"+45{rng.randint(2, 9)}{rng.randrange(10**7):07d}"
        if phone not in phones:
            phones.add(phone)
            break
    details: dict[str, Any] = {"full_name": f"{first} {last}", "phone": phone}
    if rng.random() < 0.4:
        details["cpr"] = _fake_cpr(rng)
    if rng.random() < 0.3:
        details["email"] = f"{first}.{last}".lower().translate(_ASCII).replace(" ", "") + "@eksempel.dk"
    if rng.random() < 0.5:
        postcode, city = POSTCODES[code]
        details["postal_address"] = PostalAddress(
            street=f"{rng.choice(STREETS)} {rng.randint(1, 120)}", postcode=postcode, city=city
        )
    return Person(**details)


def _fake_cpr(rng: random.Random) -> str:
    """A CPR number with a real birth date and the century digit the CPR rules expect."""
    born = date(1960, 1, 1) + timedelta(days=rng.randrange((date(2002, 12, 31) - date(1960, 1, 1)).days))
    seventh = rng.randint(0, 3) if born.year < 2000 else rng.choice((4, 9))
    return f"{born:%d%m%y}{seventh}{rng.randrange(1000):03d}"


def _working_moment(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, clock(rng.randint(8, 14), rng.randrange(60)), DANISH_TIME)


def _first_attempt(rng: random.Random, decided_at: datetime) -> datetime:
    """Mostly 1–3 working days after the decision (the promise was the next working day)."""
    delay = rng.choices((1, 2, 3, 4, 5, 6), weights=(60, 18, 12, 5, 3, 2))[0]
    return _working_moment(rng, add_working_days(local_date(decided_at), delay))


def _contact(rng: random.Random, decided_at: datetime) -> list[tuple[Outcome, datetime]]:
    """A first attempt, sometimes without an answer, then the person is reached."""
    attempt = _first_attempt(rng, decided_at)
    if rng.random() < 0.3:
        reached = _working_moment(rng, add_working_days(local_date(attempt), rng.randint(1, 2)))
        return [(Outcome.CONTACT_ATTEMPTED, attempt), (Outcome.CONTACTED, reached)]
    return [(Outcome.CONTACTED, attempt)]


def _interview_path(rng: random.Random, decided_at: datetime, follow_up: bool) -> list[tuple[Outcome, datetime]]:
    steps = _contact(rng, decided_at)
    interview = _working_moment(rng, add_working_days(local_date(steps[-1][1]), rng.randint(2, 9)))
    steps.append((Outcome.FIRST_INTERVIEW_HELD, interview))
    if follow_up:
        steps.append((Outcome.FOLLOW_UP_ACCEPTED, interview + timedelta(minutes=rng.randint(30, 60 * 24 * 6))))
    return steps


def _unreachable_path(rng: random.Random, decided_at: datetime) -> list[tuple[Outcome, datetime]]:
    attempt = _first_attempt(rng, decided_at)
    steps = [(Outcome.CONTACT_ATTEMPTED, attempt)]
    for _ in range(rng.randint(1, 3)):
        attempt = _working_moment(rng, add_working_days(local_date(attempt), 1))
        steps.append((Outcome.CONTACT_ATTEMPTED, attempt))
    steps.append((Outcome.UNREACHABLE, attempt + timedelta(minutes=5)))
    return steps


def _declined_path(rng: random.Random, decided_at: datetime) -> list[tuple[Outcome, datetime]]:
    steps = _contact(rng, decided_at)
    steps.append((Outcome.DECLINED_BY_PERSON, steps[-1][1] + timedelta(minutes=rng.randint(2, 20))))
    return steps


# ---------------------------------------------------------------- the driver (HTTP)


class ReplayError(RuntimeError):
    """The pipeline refused part of the replay or did not deliver in time."""


Progress = Callable[[str, int, int], None]


def replay(
    plan: PilotPlan,
    consent_url: str,
    consent_token: str,
    centre_url: str,
    centre_tokens: dict[str, str],
    progress: Progress | None = None,
    *,
    registry: Registry | None = None,
    delivery_timeout: float = 300.0,
    client: httpx.Client | None = None,
) -> dict[str, int]:
    """Replay ``plan`` through the running pipeline; returns the plan's summary figures.

    Posts every decision (``POST /v1/decisions``) and withdrawal (``POST /v1/withdrawals``)
    to the consent API as the police system would, waits until every accepted, not withdrawn
    referral is in its centre's inbox (``GET /v1/referrals/{id}``), then records the planned
    outcomes (``POST /v1/referrals/{id}/outcomes``). Deterministic ids make a rerun harmless.
    """
    registry = registry or load_registry()
    progress = progress or (lambda stage, done, total: None)
    own_client = client is None
    http = client or httpx.Client(timeout=30.0)
    try:
        police = {"Authorization": f"Bearer {consent_token}"}
        for done, decision in enumerate(plan.decisions, start=1):
            _post(
                http,
                f"{consent_url}/v1/decisions",
                decision.model_dump(mode="json"),
                police,
                "decision",
                (200, 201, 202),
            )
            progress("consent decisions", done, len(plan.decisions))
        for done, withdrawal in enumerate(plan.withdrawals, start=1):
            _post(
                http,
                f"{consent_url}/v1/withdrawals",
                withdrawal.model_dump(mode="json"),
                police,
                "withdrawal",
                (200, 201, 202),
            )
            progress("withdrawals", done, len(plan.withdrawals))

        centre_of = {referral_id_for(decision.event_id): _centre_slug(registry, decision) for decision in plan.accepted}
        missing = sorted(set(centre_of.values()) - set(centre_tokens))
        if missing:
            raise ReplayError(f"no centre token for: {', '.join(missing)}")
        expected = [referral_id for referral_id in centre_of if referral_id not in plan.withdrawn_referral_ids]
        _wait_for_referrals(http, centre_url, centre_tokens, centre_of, expected, progress, delivery_timeout)

        total = sum(len(plan.outcomes.get(referral_id, [])) for referral_id in expected)
        done = 0
        for referral_id in expected:
            headers = {"Authorization": f"Bearer {centre_tokens[centre_of[referral_id]]}"}
            for index, (outcome, occurred_at) in enumerate(plan.outcomes.get(referral_id, [])):
                body = {
                    "outcome": outcome.value,
                    "occurred_at": occurred_at.isoformat(),
                    "event_id": str(plan.outcome_event_id(referral_id, index)),
                }
                _post(http, f"{centre_url}/v1/referrals/{referral_id}/outcomes", body, headers, "outcome", (200, 201))
                done += 1
                progress("centre outcomes", done, total)
        return plan.summary()
    finally:
        if own_client:
            http.close()


def _post(
    http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str], what: str, ok: tuple[int, ...]
) -> httpx.Response:
    """POST with a few retries on connection trouble and 5xx (every body is idempotent)."""
    last_problem = ""
    for attempt in range(6):
        try:
            response = http.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            last_problem = type(exc).__name__
        else:
            if response.status_code in ok:
                return response
            if response.status_code < 500:
                raise ReplayError(f"{what} refused: HTTP {response.status_code} {_detail(response)}")
            last_problem = f"HTTP {response.status_code}"
        time.sleep(min(0.2 * 2**attempt, 3.0))
    raise ReplayError(f"{what} failed after retries: {last_problem}")


def _detail(response: httpx.Response) -> str:
    """The service's own error text (it never echoes personal data), shortened."""
    try:
        return str(response.json())[:500]
    except ValueError:
        return response.text[:200]


def _wait_for_referrals(
    http: httpx.Client,
    centre_url: str,
    centre_tokens: dict[str, str],
    centre_of: dict[uuid.UUID, str],
    expected: list[uuid.UUID],
    progress: Progress,
    timeout: float,
) -> None:
    pending = list(expected)
    deadline = time.monotonic() + timeout
    progress("referrals at the centres", 0, len(expected))
    while pending:
        still = []
        for referral_id in pending:
            headers = {"Authorization": f"Bearer {centre_tokens[centre_of[referral_id]]}"}
            try:
                response = http.get(f"{centre_url}/v1/referrals/{referral_id}", headers=headers)
            except httpx.TransportError:
                still.append(referral_id)
                continue
            if response.status_code == 200:
                continue
            if response.status_code in (404,) or response.status_code >= 500:
                still.append(referral_id)
                continue
            raise ReplayError(f"centre API refused a referral lookup: HTTP {response.status_code} {_detail(response)}")
        if len(still) != len(pending):
            progress("referrals at the centres", len(expected) - len(still), len(expected))
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"{len(pending)} of {len(expected)} referrals did not reach their centre within {timeout:.0f}s "
                    f"(first missing: {pending[0]})"
                )
            time.sleep(0.5)
