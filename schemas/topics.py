"""The topic catalogue (DESIGN §4): every topic, its key and the events it carries.

Names here are the base names; ``henvis.kafka.topic_name`` adds the deployment's prefix.
A breaking change to any event on a topic means a new topic version (``.v2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from henvis.schemas.events import (
    ConsentDeclined,
    ConsentGiven,
    ConsentWithdrawn,
    Event,
    ManualHandling,
    ReferralFact,
    ReferralIssued,
    ReferralOutcome,
    ReferralWithdrawn,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    messages: tuple[type[Event], ...]
    personal_data: bool
    description: str


CONSENT_DECISIONS = TopicSpec(
    name="consent.decisions.v1",
    key="case_ref",
    messages=(ConsentGiven, ConsentDeclined, ConsentWithdrawn),
    personal_data=True,
    description="Consent decisions and withdrawals from police case systems, via the consent service's outbox. Keyed by case_ref so one case stays in order.",
)
CENTRE_REFERRALS = TopicSpec(
    name="referrals.{centre}.v1",
    key="referral_id",
    messages=(ReferralIssued, ReferralWithdrawn),
    personal_data=True,
    description="Referrals for one rusmiddelcenter (one topic per centre, from the registry); only that centre may read it.",
)
REFERRAL_OUTCOMES = TopicSpec(
    name="referral.outcomes.v1",
    key="referral_id",
    messages=(ReferralOutcome,),
    personal_data=False,
    description="Outcomes recorded by centre caseworkers, via the centre service's outbox.",
)
REFERRAL_FACTS = TopicSpec(
    name="referral.facts.v1",
    key="referral_id",
    messages=(ReferralFact,),
    personal_data=False,
    description="Pseudonymous facts for the statistics: never name, phone, e-mail, address, CPR or case_ref.",
)
MANUAL_HANDLING = TopicSpec(
    name="henvis.manual.v1",
    key="event_id",
    messages=(ManualHandling,),
    personal_data=True,
    description="Cases a person must handle (and dead letters), with a reason code. Personal data only sealed for the manual-handling role.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CONSENT_DECISIONS,
    CENTRE_REFERRALS,
    REFERRAL_OUTCOMES,
    REFERRAL_FACTS,
    MANUAL_HANDLING,
)


def centre_topic(centre_slug: str) -> str:
    return CENTRE_REFERRALS.name.format(centre=centre_slug)
