"""SMTP adapter: send one plain-text e-mail with the settings' server and login (stdlib smtplib)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from henvis.services.centre.settings import CentreSettings


def plain_message(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    """A UTF-8 text/plain message with a Message-ID from the sender's domain."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def send(settings: CentreSettings, message: EmailMessage) -> None:
    """Deliver ``message`` through ``HENVIS_CENTRE_SMTP_*``; raises smtplib/OS errors as they come."""
    if settings.smtp_host is None:
        raise RuntimeError("HENVIS_CENTRE_SMTP_HOST is not set")
    context = ssl.create_default_context()
    timeout = settings.smtp_timeout_seconds
    client: smtplib.SMTP
    if settings.smtp_security == "tls":
        client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_username, password)
        client.send_message(message)
