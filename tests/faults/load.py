"""A steady load of police decisions for the fault suite, and the record of every answer.

A background thread posts to the consent API at a fixed rate: consents across all eleven
municipalities, declines, consents of people living outside the district or with no Danish
address, and withdrawals of earlier consents that were answered 2xx. Like a real police
system it sends the same event again (same ``event_id``) when the answer was 503 or no
answer came at all, so at the end every event is settled with a 2xx and the invariant can
be checked exactly. Every attempt and its answer is kept.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx

from henvis.registry import load_registry
from henvis.schemas.events import (
    ConsentDeclined,
    ConsentGiven,
    ConsentWithdrawn,
    Event,
    Offence,
    WithdrawalReason,
    referral_id_for,
)
from henvis.schemas.municipalities import DANISH_MUNICIPALITIES
from henvis.schemas.person import Person, PostalAddress
from henvis_dev.pilot import FIRST_NAMES, LAST_NAMES, POSTCODES, STREETS
from tests.helpers import wait_until

ACCEPTED = "accepted"
DECLINED = "declined"
OUTSIDE_DISTRICT = "outside_district"
NO_MUNICIPALITY = "no_municipality"
WITHDRAWAL = "withdrawal"

#: share of each kind among new submissions (withdrawals only once there is something to withdraw)
MIX = {ACCEPTED: 0.55, DECLINED: 0.22, OUTSIDE_DISTRICT: 0.07, NO_MUNICIPALITY: 0.06, WITHDRAWAL: 0.10}
RETRY_AFTER_SECONDS = 1.0
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})


@dataclass
class Attempt:
    at: float  # time.monotonic() when the answer (or the failure) came
    answer: int | str  # HTTP status, or the name of the transport error


@dataclass
class Submission:
    kind: str
    event: Event
    path: str
    centre: str | None = None  # the centre whose inbox must get it (accepted only)
    withdraws: Submission | None = None  # for a withdrawal: the consent it withdraws
    attempts: list[Attempt] = field(default_factory=list)
    retry_at: float = 0.0

    @property
    def body(self) -> bytes:
        return self.event.to_bytes()

    @property
    def acknowledged(self) -> bool:
        return any(isinstance(a.answer, int) and 200 <= a.answer < 300 for a in self.attempts)

    @property
    def first_2xx(self) -> int | None:
        return next((a.answer for a in self.attempts if isinstance(a.answer, int) and 200 <= a.answer < 300), None)

    @property
    def referral_id(self) -> uuid.UUID:
        source = self.withdraws.event if self.withdraws is not None else self.event
        return referral_id_for(source.event_id)

    @property
    def needs_retry(self) -> bool:
        """503 or no answer: the police system must try again (idempotent on event_id)."""
        last = self.attempts[-1].answer if self.attempts else None
        return not self.acknowledged and (last == 503 or isinstance(last, str))


class LoadGenerator:
    def __init__(self, consent_url: str, police_token: str, seed: int, rate_per_second: float, remember_personal_data):
        self.consent_url = consent_url
        self.rate = rate_per_second
        self.rng = random.Random(seed)
        self.run_tag = f"{seed:04d}{self.rng.randrange(16**4):04x}"
        self.remember_personal_data = remember_personal_data
        self.registry = load_registry()
        self.codes = sorted(code for code in DANISH_MUNICIPALITIES if self.registry.for_municipality(code) is not None)
        self.outside_codes = sorted(
            code for code in DANISH_MUNICIPALITIES if self.registry.for_municipality(code) is None
        )
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {police_token}", "Content-Type": "application/json"}, timeout=10
        )
        self.submissions: list[Submission] = []
        self.withdrawable: list[Submission] = []
        self.retries: deque[Submission] = deque()
        self.answers: Counter = Counter()
        self.answered = 0  # attempts that got an answer or a transport failure
        self.lock = threading.Lock()
        self._phones: set[str] = set()
        self._offered: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = self.stopped_at = 0.0

    # ------------------------------------------------------------------ events

    def _event_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _person(self, code: str | None, index: int) -> Person:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        while True:
            phone = f"+45{rng.randint(2, 9)}{rng.randrange(10**7):07d}"
            if phone not in self._phones:
                self._phones.add(phone)
                break
        born = date(1960, 1, 1) + timedelta(days=rng.randrange(14_600))
        details = {
            "full_name": f"{first} {last}",
            "phone": phone,
            "email": f"{first}.{last}.{self.run_tag}{index}".lower().translate(_ASCII) + "@eksempel.dk",
            "cpr": f"{born:%d%m%y}{rng.randint(0, 3)}{rng.randrange(1000):03d}",
        }
        if code is not None:
            postcode, city = POSTCODES.get(code, ("8000", "Aarhus C"))
            details["postal_address"] = PostalAddress(
                street=f"{rng.choice(STREETS)} {rng.randint(1, 240)}{rng.choice('ABCD')}", postcode=postcode, city=city
            )
        person = Person(**details)
        self.remember_personal_data(
            [
                person.full_name,
                person.phone,
                person.phone[3:],
                person.email,
                person.cpr,
                person.postal_address.street if person.postal_address else None,
            ]
        )
        return person

    def new_submission(self) -> Submission:
        rng = self.rng
        kinds = list(MIX)
        kind = rng.choices(kinds, weights=[MIX[k] for k in kinds])[0]
        if kind == WITHDRAWAL:
            with self.lock:
                target = self.withdrawable.pop(rng.randrange(len(self.withdrawable))) if self.withdrawable else None
            if target is None:
                kind = ACCEPTED
            else:
                event = ConsentWithdrawn(
                    event_id=self._event_id(),
                    occurred_at=datetime.now(UTC),
                    case_ref=target.event.case_ref,
                    reason=WithdrawalReason.PERSON_CHANGED_MIND,
                )
                return Submission(WITHDRAWAL, event, "/v1/withdrawals", withdraws=target)
        index = len(self.submissions)
        case_ref = f"FLT-{self.run_tag}-{index:06d}"
        self.remember_personal_data([case_ref])
        occurred_at = datetime.now(UTC)
        common = {
            "event_id": self._event_id(),
            "occurred_at": occurred_at,
            "case_ref": case_ref,
            "offence": rng.choice(list(Offence)),
            "charged_on": occurred_at.date() - timedelta(days=rng.choice((1, 1, 2, 5))),
        }
        if kind == DECLINED:
            common["municipality_code"] = rng.choice(self.codes)
            return Submission(DECLINED, ConsentDeclined(**common, recorded_by="POL1234"), "/v1/decisions")
        code = {
            ACCEPTED: rng.choice(self.codes),
            OUTSIDE_DISTRICT: rng.choice(self.outside_codes),
            NO_MUNICIPALITY: None,
        }[kind]
        event = ConsentGiven(
            **common,
            municipality_code=code,
            person=self._person(code, index),
            consent_text_version="samtykke-2020-03",
            recorded_by="POL1234",
        )
        centre = self.registry.for_municipality(code).slug if kind == ACCEPTED else None
        return Submission(kind, event, "/v1/decisions", centre=centre)

    # ------------------------------------------------------------------ sending

    def send(self, submission: Submission) -> None:
        try:
            answer: int | str = self.client.post(
                f"{self.consent_url}{submission.path}", content=submission.body
            ).status_code
        except httpx.HTTPError as exc:
            answer = type(exc).__name__
        with self.lock:
            submission.attempts.append(Attempt(time.monotonic(), answer))
            self.answers[answer] += 1
            self.answered += 1
            if submission.needs_retry:
                submission.retry_at = time.monotonic() + RETRY_AFTER_SECONDS
                self.retries.append(submission)
            elif submission.kind == ACCEPTED and submission.acknowledged and id(submission) not in self._offered:
                # only a consent the API confirmed may be withdrawn by case_ref
                self._offered.add(id(submission))
                self.withdrawable.append(submission)

    def _next(self) -> Submission:
        with self.lock:
            if self.retries and self.retries[0].retry_at <= time.monotonic():
                return self.retries.popleft()
        submission = self.new_submission()
        with self.lock:
            self.submissions.append(submission)
        return submission

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_slot = time.monotonic()
        while not self._stop.is_set():
            self.send(self._next())
            next_slot += interval
            # a fixed rate: late slots are not made up in a burst
            next_slot = max(next_slot, time.monotonic() - interval)
            self._stop.wait(max(0.0, next_slot - time.monotonic()))

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.stopped_at = time.monotonic()

    def settle(self, deadline_seconds: float = 120) -> None:
        """Send every unanswered event again, a second apart (the API's Retry-After), until each has a 2xx."""

        def resend_unsettled() -> bool:
            for submission in [s for s in self.submissions if s.needs_retry]:
                self.send(submission)
            return not any(s.needs_retry for s in self.submissions)

        self.retries.clear()
        wait_until(
            resend_unsettled,
            timeout=deadline_seconds,
            interval=RETRY_AFTER_SECONDS,
            message="some decisions were still not accepted after the pipeline was whole again",
        )

    # ------------------------------------------------------------------ views

    def answered_since(self, since: float, predicate) -> int:
        with self.lock:
            return sum(1 for s in self.submissions for a in s.attempts if a.at >= since and predicate(a.answer))

    def acknowledged(self, kind: str) -> list[Submission]:
        return [s for s in self.submissions if s.kind == kind and s.acknowledged]
