"""A real SMTP server on loopback (aiosmtpd) that keeps every mail it is given.

    box = Mailbox(free_port()); controller = start_smtp(box)   # AUTH with SMTP_USER/SMTP_PASSWORD
    mailto(box.port)                                          # the Apprise URL that mails it
    box.messages, box.envelopes, box.logins

The ``smtp`` fixture (tests/conftest.py) starts one per test.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from .faults import free_port

__all__ = ["SMTP_PASSWORD", "SMTP_USER", "Mailbox", "mailto", "smtp_server", "start_smtp"]

SMTP_USER = "regmon-mailer"
SMTP_PASSWORD = "Smtp-Pa55word-7Q"


@dataclass
class Mailbox:
    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.box.messages.append(message)
        self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def start_smtp(box: Mailbox) -> Controller:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        box.logins.append((data.login, data.password))
        # handled=False: aiosmtpd answers a refusal with 535 (handled=True would leave it to us)
        return AuthResult(success=data.password == SMTP_PASSWORD.encode(), handled=False)

    # Plain SMTP with AUTH, as a relay inside a private network offers it (no TLS on loopback).
    controller = Controller(
        _Handler(box),
        hostname="127.0.0.1",
        port=box.port,
        auth_require_tls=False,
        authenticator=authenticate,
    )
    controller.start()
    return controller


def smtp_server() -> Iterator[Mailbox]:
    """A running SMTP server for the ``smtp`` fixture; stopped on exit."""
    box = Mailbox(free_port())
    controller = start_smtp(box)
    try:
        yield box
    finally:
        controller.stop()


def mailto(port: int, password: str = SMTP_PASSWORD) -> str:
    return (
        f"mailto://{SMTP_USER}:{password}@127.0.0.1:{port}"
        "?mode=insecure&from=regmon@example.com&to=ops@example.com"
    )
