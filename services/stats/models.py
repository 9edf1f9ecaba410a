"""The statistics database: pseudonymous by construction.

No column can hold a name, phone number, e-mail, address, CPR number or case reference:
a referral is known only by its referral_id (a UUID derived from the consent event id),
and a test inspects this schema to keep it so.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: One row per referral (or decline), the current state of what facts and outcomes said.
referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column("referral_id", sa.String(36), primary_key=True),
    # accepted / declined; NULL while only outcomes have arrived (not yet counted)
    sa.Column("decision", sa.String(16), nullable=True),
    sa.Column("withdrawn", sa.Boolean, nullable=False, default=False),
    sa.Column("offence", sa.String(32), nullable=True),
    sa.Column("municipality_code", sa.String(3), nullable=True),
    sa.Column("centre", sa.String(40), nullable=True),
    sa.Column("decided_on", sa.Date, nullable=True),
    # YYYY-MM of decided_on, stored so the monthly grouping is the same SQL on every engine
    sa.Column("decided_month", sa.String(7), nullable=True),
    sa.Column("contact_due_by", sa.Date, nullable=True),
    sa.Column("first_contact_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("days_to_first_contact", sa.Integer, nullable=True),
    sa.Column("contacted_by_due", sa.Boolean, nullable=True),
    sa.Column("first_interview", sa.Boolean, nullable=False, default=False),
    sa.Column("follow_up", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_referrals_decided_on", "decided_on"),
    sa.Index("ix_referrals_municipality_decided_on", "municipality_code", "decided_on"),
    sa.Index("ix_referrals_offence_decided_on", "offence", "decided_on"),
)

#: Every event applied, by event_id: the idempotency record (DESIGN §6.1).
processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("event_type", sa.String(32), nullable=False),
)

#: Counters per decision day, municipality and offence, kept in the same transaction as the
#: referral's change (``domain.aggregate_changes``): the funnel queries read these, so their
#: cost grows with days x municipalities x offences, not with the number of referrals.
#: municipality_code / offence are "" when absent (key columns cannot be NULL).
funnel_daily = sa.Table(
    "funnel_daily",
    metadata,
    sa.Column("decided_on", sa.Date, primary_key=True),
    sa.Column("municipality_code", sa.String(3), primary_key=True),
    sa.Column("offence", sa.String(32), primary_key=True),
    sa.Column("decided_month", sa.String(7), nullable=False),
    *(
        sa.Column(name, sa.Integer, nullable=False, default=0)
        for name in (
            "accepted",
            "declined",
            "withdrawn",
            "first_interviews",
            "follow_ups",
            "due_referrals",
            "contacted_by_due",
        )
    ),
    sa.Index("ix_funnel_daily_month", "decided_month"),
)

#: Accepted referrals per decision day, municipality, offence and days to first contact.
contact_days_daily = sa.Table(
    "contact_days_daily",
    metadata,
    sa.Column("decided_on", sa.Date, primary_key=True),
    sa.Column("municipality_code", sa.String(3), primary_key=True),
    sa.Column("offence", sa.String(32), primary_key=True),
    sa.Column("days", sa.Integer, primary_key=True),
    sa.Column("decided_month", sa.String(7), nullable=False),
    sa.Column("referrals", sa.Integer, nullable=False, default=0),
)
