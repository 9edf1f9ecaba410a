"""One referral as the statistics see it, folded from facts and outcomes: pure, no I/O.

Facts (from the router) and outcomes (from the centres) arrive in any order and possibly
twice; :func:`apply_fact` and :func:`apply_outcome` give the same state whatever the order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from henvis.deadlines import local_date
from henvis.schemas.events import Decision, Offence, Outcome

#: Outcomes that show the centre tried to reach the person: the earliest of them is the
#: "first contact attempt". ``unreachable`` and ``declined_by_person`` can only be recorded
#: after the centre has tried, so they count as an attempt when nothing earlier was recorded.
CONTACT_OUTCOMES = frozenset(
    {
        Outcome.CONTACT_ATTEMPTED,
        Outcome.CONTACTED,
        Outcome.FIRST_INTERVIEW_HELD,
        Outcome.FOLLOW_UP_ACCEPTED,
        Outcome.UNREACHABLE,
        Outcome.DECLINED_BY_PERSON,
    }
)


@dataclass(frozen=True)
class ReferralState:
    """What the statistics know about one referral: pseudonymous by construction."""

    referral_id: str
    #: accepted or declined (a withdrawal sets ``withdrawn``); None until the decision fact arrives
    decision: Decision | None = None
    withdrawn: bool = False
    offence: Offence | None = None
    municipality_code: str | None = None
    centre: str | None = None
    decided_on: date | None = None
    contact_due_by: date | None = None
    first_contact_at: datetime | None = None
    first_interview: bool = False
    follow_up: bool = False

    @property
    def decided_month(self) -> str | None:
        """``YYYY-MM`` of the decision date."""
        return self.decided_on.strftime("%Y-%m") if self.decided_on else None

    @property
    def first_contact_on(self) -> date | None:
        """The Danish calendar day of the first contact attempt (deadlines are Danish days)."""
        return local_date(self.first_contact_at) if self.first_contact_at else None

    @property
    def days_to_first_contact(self) -> int | None:
        """Whole days from the decision to the first contact attempt."""
        if self.decided_on is None or self.first_contact_on is None:
            return None
        # A caseworker may record a call dated before the decision by mistake; never negative.
        return max(0, (self.first_contact_on - self.decided_on).days)

    @property
    def contacted_by_due(self) -> bool | None:
        """Was the first attempt on or before contact_due_by? None when there is no deadline."""
        if self.contact_due_by is None:
            return None
        return self.first_contact_on is not None and self.first_contact_on <= self.contact_due_by


def apply_fact(
    state: ReferralState | None,
    *,
    referral_id: str,
    decision: Decision,
    offence: Offence | None,
    municipality_code: str | None,
    centre: str | None,
    decided_on: date,
    contact_due_by: date | None,
) -> ReferralState:
    """The state after a router fact. Order-independent: a withdrawal may come first."""
    state = state or ReferralState(referral_id=referral_id)
    if decision == Decision.WITHDRAWN:
        # A withdrawal does not undo the yes: accepted counts every yes (DESIGN §5), and
        # withdrawn referrals are counted separately. Its decided_on is the withdrawal day,
        # so it never replaces the decision date.
        return replace(
            state,
            withdrawn=True,
            offence=state.offence or offence,
            municipality_code=state.municipality_code or municipality_code,
            centre=state.centre or centre,
        )
    return replace(
        state,
        decision=decision,
        offence=offence,
        municipality_code=municipality_code,
        centre=centre,
        decided_on=decided_on,
        contact_due_by=contact_due_by if decision == Decision.ACCEPTED else None,
    )


def apply_outcome(
    state: ReferralState | None, *, referral_id: str, outcome: Outcome, occurred_at: datetime
) -> ReferralState:
    """The state after a centre outcome; may arrive before the referral's fact."""
    state = state or ReferralState(referral_id=referral_id)
    changes: dict = {}
    if outcome in CONTACT_OUTCOMES and (state.first_contact_at is None or occurred_at < state.first_contact_at):
        changes["first_contact_at"] = occurred_at
    if outcome == Outcome.FIRST_INTERVIEW_HELD:
        changes["first_interview"] = True
    if outcome == Outcome.FOLLOW_UP_ACCEPTED:
        # Saying yes to more than the first conversation implies that conversation was held.
        changes["follow_up"] = True
        changes["first_interview"] = True
    return replace(state, **changes) if changes else state
