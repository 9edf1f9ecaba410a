"""``henvis centre digest``: each centre's daily digest to its shared mailbox.

Run once a day (the chart's CronJob, or cron). Counts come from the inbox database, the
mailbox from the registry, the server from ``HENVIS_CENTRE_SMTP_*``. One centre's failed
delivery does not stop the others; the exit code tells that something failed.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from henvis.registry import Registry
from henvis.services.centre import mailer
from henvis.services.centre.database import utcnow
from henvis.services.centre.domain_digest import digest_counts, digest_text
from henvis.services.centre.settings import CentreSettings
from henvis.services.centre.store_referrals import open_referrals

log = structlog.get_logger(__name__)


@dataclass
class DigestReport:
    """Centre slugs the digest went to, had no mailbox for, or failed for."""

    sent: list[str] = field(default_factory=list)
    no_mailbox: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def send_digests(
    settings: CentreSettings, registry: Registry, engine: Engine, now: datetime | None = None
) -> DigestReport:
    """Send the digest of every centre this deployment serves; see :class:`DigestReport`."""
    if not (settings.smtp_host and settings.smtp_from and settings.inbox_url):
        raise RuntimeError(
            "the digest needs HENVIS_CENTRE_SMTP_HOST, HENVIS_CENTRE_SMTP_FROM and HENVIS_CENTRE_INBOX_URL"
        )
    now = now or utcnow()
    hours = settings.working_hours()
    centres = settings.centre_slugs(registry)
    counts = digest_counts(open_referrals(engine), now, hours, centres)
    report = DigestReport()
    for slug in centres:
        centre = registry.by_slug(slug)
        if centre is None or centre.mailbox is None:
            report.no_mailbox.append(slug)
            log.warning("digest_no_mailbox", centre=slug)
            continue
        subject, body = digest_text(centre.name, counts[slug], settings.inbox_url, now, hours)
        try:
            mailer.send(settings, mailer.plain_message(settings.smtp_from, centre.mailbox, subject, body))
        except (smtplib.SMTPException, OSError) as exc:
            report.failed.append(slug)
            log.error("digest_failed", centre=slug, error_type=type(exc).__name__)
            continue
        report.sent.append(slug)
        log.info("digest_sent", centre=slug, **vars(counts[slug]))
    return report
