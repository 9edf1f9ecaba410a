"""The topic catalogue (DESIGN §4): every topic, its key and the events it carries.

Names here are the base names; ``henvis.kafka.topic_name`` adds the deployment's prefix.
A breaking change to any event on a topic means a new topic version (``.v2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from henvis.schemas.events import (
    ConsentDeclinedV2,
    ConsentGivenV2,
    ConsentWithdrawnV2,
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
    name="consent.decisions.v2",
    key="case_pseudonym",
    messages=(ConsentGivenV2, ConsentDeclinedV2, ConsentWithdrawnV2),
    personal_data=True,
    description="Consent decisions and withdrawals from police case systems, via the consent service's outbox. Keyed by the case pseudonym (an HMAC of case_ref) so one case stays in order; personal data only sealed under each referral's data key.",
)
CENTRE_REFERRALS = TopicSpec(
    name="referrals.{centre}.v2",
    key="referral_id",
    messages=(ReferralIssued, ReferralWithdrawn),
    personal_data=True,
    description="Referrals for one rusmiddelcenter (one topic per centre, from the registry); only that centre may read it, and only that centre gets the data key that opens a referral's personal data.",
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
    name="henvis.manual.v2",
    key="event_id",
    messages=(ManualHandling,),
    personal_data=True,
    description="Cases a person must handle (and dead letters), with a reason code. Personal data only sealed under the referral's data key, which the manual-handling role gets from the key store.",
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
