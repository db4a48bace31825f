"""Apprise channels against real servers on loopback: SMTP (aiosmtpd), Apprise's ``json://``
to the webhook receiver, a receiver that is down and comes back, and how Apprise's
failures map to retry/final; the URL's secrets never show in an error, a repr or a name."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from apprise.logger import NotifyLogEntry
from apprise.result import AppriseResult, AppriseResultStatus, NotifyAttempt, NotifyResult
from support.faults import free_port, hung_server, status_server
from support.receiver import WebhookReceiver
from support.smtp import SMTP_PASSWORD, SMTP_USER, Mailbox, mailto, start_smtp
from support.wait import wait_for
from test_notify_batch import mixed_batch

from monitor.notify.apprise import (
    AppriseNotifier,
    classify_result,
    redact_apprise_url,
    validate_url,
)
from monitor.notify.formats.text import text_message
from monitor.notify.notifier import Delivery, Outcome, Verdict

PATH_SECRET = "PathT0kenSecret9"
URL_PASSWORD = "UrlPassw0rdSecret"
HEADER_SECRET = "HeaderK3ySecret"


def send(notifier: AppriseNotifier, events: list[dict[str, Any]]) -> Outcome:
    async def go() -> Outcome:
        try:
            return await notifier.send(Delivery.of(events, datetime.now(UTC)))
        finally:
            await notifier.aclose()

    return asyncio.run(go())


# The SMTP server (aiosmtpd) and the `smtp` fixture: tests/support/smtp.py, tests/conftest.py.


def test_mailto_sends_one_event_as_a_mail(smtp: Mailbox) -> None:
    outcome = send(AppriseNotifier(mailto(smtp.port), timeout=5), mixed_batch()[2:3])
    assert outcome.verdict is Verdict.DELIVERED and outcome.error is None
    assert smtp.logins == [(SMTP_USER.encode(), SMTP_PASSWORD.encode())]
    assert smtp.envelopes == [("regmon@example.com", ["ops@example.com"])]
    (mail,) = smtp.messages
    assert mail["Subject"] == "regmon: Tag overwritten: docker.io/library/nginx:1.27"
    assert mail["From"] == "regmon@example.com" and mail["To"] == "ops@example.com"
    body = mail.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert body == (
        "Tag overwritten: docker.io/library/nginx:1.27 "
        "(sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2, status present)\n"
        "linux/arm64: sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2\n"
    )


def test_mailto_sends_a_batch_as_one_mail(smtp: Mailbox) -> None:
    outcome = send(AppriseNotifier(mailto(smtp.port), timeout=5), mixed_batch())
    assert outcome.verdict is Verdict.DELIVERED
    (mail,) = smtp.messages
    expected = text_message(mixed_batch())
    assert mail["Subject"] == expected.title
    assert mail.get_content().replace("\r\n", "\n") == expected.body + "\n"


def test_mailto_to_a_server_that_is_down_is_retried_without_its_password() -> None:
    url = mailto(free_port())
    outcome = send(AppriseNotifier(url, timeout=5), mixed_batch()[:1])
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error == (
        f"unreachable: mailto://***@{url.split('@')[1].split('?')[0]}/***: "
        'Connection error while submitting email to "127.0.0.1"'
    )
    assert SMTP_PASSWORD not in repr(outcome) and SMTP_USER not in repr(outcome)


def test_a_mail_server_that_is_down_gets_the_mail_when_it_is_back() -> None:
    box = Mailbox(free_port())
    down = send(AppriseNotifier(mailto(box.port), timeout=5), mixed_batch())
    assert down.verdict is Verdict.RETRY and down.error is not None
    assert down.error.startswith(f"unreachable: mailto://***@127.0.0.1:{box.port}/***")
    controller = start_smtp(box)
    try:
        back = send(AppriseNotifier(mailto(box.port), timeout=5), mixed_batch())
    finally:
        controller.stop()
    assert back.verdict is Verdict.DELIVERED
    assert box.logins == [(SMTP_USER.encode(), SMTP_PASSWORD.encode())]
    assert [mail["Subject"] for mail in box.messages] == [text_message(mixed_batch()).title]


def test_a_refused_smtp_login_is_retried_as_apprise_cannot_tell_it_apart(smtp: Mailbox) -> None:
    # Apprise words a 535 like a dropped connection ("Connection error while submitting
    # email"), so it is a retry: a password fixed in the config then delivers it.
    outcome = send(AppriseNotifier(mailto(smtp.port, "Wr0ngPassw0rd"), timeout=5), mixed_batch())
    # smtplib tries AUTH PLAIN, then LOGIN: both refused, nothing sent
    assert smtp.logins == [(SMTP_USER.encode(), b"Wr0ngPassw0rd")] * 2 and smtp.messages == []
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error == (
        f"unreachable: mailto://***@127.0.0.1:{smtp.port}/***: "
        'Connection error while submitting email to "127.0.0.1"'
    )
    assert "Wr0ngPassw0rd" not in repr(outcome)


# --------------------------------------------------------------------------- json:// to a receiver


def test_json_url_posts_apprises_json_document_to_the_receiver() -> None:
    with WebhookReceiver(None) as rx:
        outcome = send(AppriseNotifier(f"json://{rx.host}/hook", timeout=5), mixed_batch())
        assert outcome.verdict is Verdict.DELIVERED
        (received,) = rx.delivered()
    expected = text_message(mixed_batch())
    assert received.body == {
        "version": "1.0",
        "title": expected.title,
        "message": expected.body,
        "attachments": [],
        "type": "failure",
    }
    assert received.headers["content-type"] == "application/json"


def test_a_receiver_that_is_down_is_retried_and_gets_the_delivery_when_it_is_back() -> None:
    port = free_port()
    url = f"json://127.0.0.1:{port}/hook"
    down = send(AppriseNotifier(url, timeout=5), mixed_batch()[:1])
    assert down == Outcome(
        Verdict.RETRY,
        f"unreachable: json://127.0.0.1:{port}/***: "
        "A Connection error occurred sending JSON notification to 127.0.0.1.",
        latency_ms=down.latency_ms,
    )
    with WebhookReceiver(None, port=port) as rx:
        back = send(AppriseNotifier(url, timeout=5), mixed_batch()[:1])
        assert back.verdict is Verdict.DELIVERED
        wait_for(lambda: len(rx.delivered()) == 1)
        assert rx.delivered()[0].body["title"] == text_message(mixed_batch()[:1]).title


@pytest.mark.parametrize(
    ("status", "verdict", "words"),
    [
        (500, Verdict.RETRY, "Internal server error., error=500."),
        (502, Verdict.RETRY, "error=502."),
        (503, Verdict.RETRY, "Servers are overloaded., error=503."),
        (408, Verdict.RETRY, "error=408."),
        (429, Verdict.RETRY, "error=429."),
        (400, Verdict.FAILED, "Bad Request - Unsupported Parameters., error=400."),
        (401, Verdict.FAILED, "Verification Failed., error=401."),
        (404, Verdict.FAILED, "Page not found., error=404."),
        (410, Verdict.FAILED, "error=410."),
    ],
)
def test_http_answers_map_to_retry_or_final(status: int, verdict: Verdict, words: str) -> None:
    with status_server(status, {"Retry-After": "3"}, f"no {PATH_SECRET} here".encode()) as server:
        host = server.host
        url = f"json://hook:{URL_PASSWORD}@{host}/hook/{PATH_SECRET}"
        outcome = send(AppriseNotifier(url, timeout=5), mixed_batch())
        assert server.count("POST") == 1
    assert outcome.verdict is verdict and outcome.status_code == status
    assert outcome.error == (
        f"HTTP {status} from json://***@{host}/***: Failed to send JSON POST notification: {words}"
    )
    assert outcome.retry_after is None  # Apprise does not pass Retry-After on


def test_a_receiver_that_never_answers_is_a_retry_within_the_timeout() -> None:
    with hung_server() as server:
        host = server.host
        began = time.monotonic()
        outcome = send(AppriseNotifier(f"json://{host}/hook", timeout=0.5), mixed_batch())
        took = time.monotonic() - began
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error == f"timeout: json://{host}/*** did not finish within 0.5s"
    assert took < 3


def test_sends_run_off_the_event_loop() -> None:
    async def go(url: str) -> tuple[Outcome, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        ticker = asyncio.create_task(tick())
        notifier = AppriseNotifier(url, timeout=0.5)
        try:
            outcome = await notifier.send(Delivery.of(mixed_batch(), datetime.now(UTC)))
        finally:
            ticker.cancel()
            await notifier.aclose()
        return outcome, ticks

    with hung_server() as server:
        outcome, ticks = asyncio.run(go(f"json://{server.host}/hook"))
    assert outcome.verdict is Verdict.RETRY
    assert ticks >= 10  # the loop kept running for the half second the send was stuck


# --------------------------------------------------------------------------- Apprise's own results


def _result(*messages: str, status: AppriseResultStatus = AppriseResultStatus.FAILURE) -> Any:
    logs = [NotifyLogEntry("WARNING", text) for text in messages]
    attempt = NotifyAttempt(status, elapsed=0.25, logs=logs)
    return AppriseResult(status, [NotifyResult("Ntfy", "ntfy://…", attempts=[attempt])], 0.25)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            ["Failed to send ntfy notification to topicSecret: error=429."],
            Outcome(
                Verdict.RETRY,
                "HTTP 429 from ntfy://ntfy.example.com/***: Failed to send "
                "ntfy notification to ***: error=429.",
                status_code=429,
                latency_ms=250.0,
            ),
        ),
        (
            ["Failed to send ntfy notification: Forbidden., error=403."],
            Outcome(
                Verdict.FAILED,
                "HTTP 403 from ntfy://ntfy.example.com/***: Failed to send "
                "ntfy notification: Forbidden., error=403.",
                status_code=403,
                latency_ms=250.0,
            ),
        ),
        (
            ["A Connection error occurred sending ntfy:https://ntfy.example.com/topicSecret"],
            Outcome(
                Verdict.RETRY,
                "unreachable: ntfy://ntfy.example.com/***: A Connection error "
                "occurred sending ntfy:https://***",
                latency_ms=250.0,
            ),
        ),
        (
            ["The ntfy topic topicSecret was refused by policy"],
            Outcome(
                Verdict.RETRY,
                "unreachable: ntfy://ntfy.example.com/***: The ntfy topic *** "
                "was refused by policy",
                latency_ms=250.0,
            ),
        ),
        (
            ["Something went sideways"],
            Outcome(
                Verdict.RETRY,
                "ntfy://ntfy.example.com/***: Apprise reported a failure "
                "without a cause (retrying, as it may be passing): Something went sideways",
                latency_ms=250.0,
            ),
        ),
        (
            [],
            Outcome(
                Verdict.RETRY,
                "ntfy://ntfy.example.com/***: Apprise reported a failure "
                "without a cause (retrying, as it may be passing)",
                latency_ms=250.0,
            ),
        ),
    ],
)
def test_apprise_results_map_to_outcomes(messages: list[str], expected: Outcome) -> None:
    url = "ntfy://ntfy.example.com/topicSecret"
    target = redact_apprise_url(url)
    assert classify_result(_result(*messages), url=url, target=target, timeout=5) == expected


def test_an_apprise_timeout_is_a_retry() -> None:
    result = _result("Service 'ntfy' did not finish", status=AppriseResultStatus.TIMEOUT)
    outcome = classify_result(
        result, url="ntfy://h.example/t", target="ntfy://h.example/***", timeout=7
    )
    assert outcome == Outcome(
        Verdict.RETRY, "timeout: ntfy://h.example/*** did not finish within 7s", latency_ms=250.0
    )


# --------------------------------------------------------------------------- redaction, validation


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("tgram://123456789:AAHsecretBotToken/987654321", "tgram://***/***"),
        ("ntfy://user:pa55word@ntfy.example.com/topicSecret", "ntfy://***@ntfy.example.com/***"),
        ("ntfys://ntfy.sh/topic?token=tk_SECRET", "ntfys://ntfy.sh/***"),
        ("slack://TokenA0001/TokenB0002/TokenC0003", "slack://***/***"),
        ("discord://1234567890/WebhookTokenSecret", "discord://***/***"),
        ("pover://UserKeySecret@AppTokenSecret", "pover://***@***"),
        ("gotify://gotify.example.com:8080/AppTokenSecret", "gotify://gotify.example.com:8080/***"),
        (
            f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@smtp.example.com?to=ops@example.com",
            "mailto://***@smtp.example.com/***",
        ),
        (
            f"json://hook:{URL_PASSWORD}@127.0.0.1:9000/hook/{PATH_SECRET}?+X-Key={HEADER_SECRET}",
            "json://***@127.0.0.1:9000/***",
        ),
        ("json://[::1]:9000/hook", "json://[::1]:9000/***"),
        ("JSON://LocalHost", "json://LocalHost"),
        # a dotted token: Apprise's privacy form hides it, so it is not taken for a host
        ("pbul://o.gRu5tReFvkSecret", "pbul://***"),
        ("pbul://o.gRu5tReFvkSecret/device", "pbul://***/***"),
        # single-label hosts (a compose service name) that Apprise shows as they are
        ("ntfy://ntfy/topicSecret", "ntfy://ntfy/***"),
        ("json://receiver:8080/hook", "json://receiver:8080/***"),
        ("ifttt://WebhookIDSecret@EventName", "ifttt://***@EventName"),
        ("lametric://ApiKeySecret@192.168.1.5", "lametric://***@192.168.1.5"),
        # a URL Apprise cannot use shows no more than an address
        ("mailto://user:pw@smtp.example.com?mode=bogus", "mailto://***@***/***"),
        ("mailto://user:pw@127.0.0.1?mode=bogus", "mailto://***@127.0.0.1/***"),
        ("json://localhost:notaport/x", "json://***/***"),
        ("no scheme at all", "***"),
    ],
)
def test_redact_apprise_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact_apprise_url(url) == shown
    notifier = AppriseNotifier(url, executor=None)
    try:
        assert notifier.target == shown
        assert repr(notifier) == str(notifier) == f"AppriseNotifier({shown!r}, timeout=10)"
    finally:
        asyncio.run(notifier.aclose())


@pytest.mark.parametrize(
    "template",
    [
        "json://hook:{password}@{host}/hook/{path}?+X-Key={header}",
        "gotify://{host}/{path}",
        "ntfy://hook:{password}@{host}/{path}",
        "form://{host}/{path}?-key={header}",
    ],
)
@pytest.mark.parametrize("status", [404, 500])
def test_no_secret_of_any_url_form_reaches_the_error_text(template: str, status: int) -> None:
    echo = f"{PATH_SECRET} {HEADER_SECRET} {URL_PASSWORD}".encode()
    with status_server(status, {}, echo) as server:
        url = template.format(
            password=URL_PASSWORD, host=server.host, path=PATH_SECRET, header=HEADER_SECRET
        )
        notifier = AppriseNotifier(url, timeout=5)
        outcome = send(notifier, mixed_batch())
        assert server.count() == 1
    assert outcome.verdict is not Verdict.DELIVERED
    seen = repr(outcome) + repr(notifier) + notifier.target
    for secret in (PATH_SECRET, HEADER_SECRET, URL_PASSWORD):
        assert secret not in seen


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:9000/hook",
        "ntfys://ntfy.sh/topic",
        "tgram://123456789:AAHsecretBotToken/987654321",
        "slack://TokenA0001/TokenB0002/TokenC0003",
        "mailto://user:pw@127.0.0.1:2525?mode=insecure&from=a@example.com&to=b@example.com",
    ],
)
def test_validate_url_accepts_what_apprise_can_use(url: str) -> None:
    assert validate_url(url) is None


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "bogus://x",
            "bogus:// is not a service Apprise {version} supports "
            "(see https://github.com/caronc/apprise/wiki)",
        ),
        ("no scheme at all", "not an Apprise URL (expected scheme://…): ***"),
        (
            "slack://TokenA0001/TokenBSecret",
            "Apprise cannot use this slack:// URL "
            "slack://***/***: An invalid Slack (third) Token (None) was specified.",
        ),
        ("tgram://AAHsecretBotToken", "Apprise cannot parse this tgram:// URL tgram://***"),
        (
            "mailto://",
            "Apprise cannot use this mailto:// URL mailto://: Invalid ~From~ email specified:",
        ),
        # Apprise's own message quotes the bot token
        (
            "tgram://123456789:AAH!BotSecret/987654321",
            "Apprise cannot use this tgram:// URL "
            "tgram://***/***: The Telegram Bot Token specified (***) is invalid.",
        ),
        (
            "mailto://user:Passw0rdSecret@127.0.0.1?mode=bogus",
            "Apprise cannot use this mailto:// "
            "URL mailto://***@127.0.0.1/***: The secure mode specified (***) is invalid.",
        ),
    ],
)
def test_validate_url_says_why_without_the_secrets(url: str, error: str) -> None:
    import apprise

    assert validate_url(url) == error.format(version=apprise.__version__)


LOGGED_SEND = """
import asyncio, sys
from datetime import UTC, datetime
from monitor.logs import setup_logging
from monitor.notify.apprise import AppriseNotifier
from monitor.notify.notifier import Delivery
setup_logging("debug")
event = {"id": "01JD9Z6K3M2Y8T0QX4V5R7N1AB", "type": "tag.missing"}
notifier = AppriseNotifier(sys.argv[1], timeout=5)
outcome = asyncio.run(notifier.send(Delivery.of([event], datetime.now(UTC))))
print(outcome.verdict, outcome.error)
"""


@pytest.mark.parametrize("status", [200, 500])
def test_apprises_own_log_lines_never_reach_regmons_log(status: int) -> None:
    # Apprise logs an ntfy topic ("Failed to send ntfy notification to topic '…'") even in
    # its privacy mode; regmon's log (debug level included) carries only the redacted error.
    with status_server(status, {}, b"{}") as server:
        host = server.host
        url = f"ntfy://hook:{URL_PASSWORD}@{host}/{PATH_SECRET}"
        answer = subprocess.run(
            [sys.executable, "-c", LOGGED_SEND, url], capture_output=True, text=True, check=True
        )
        assert server.count("POST") == 1
    if status == 200:
        assert answer.stdout == "delivered None\n"
    else:
        assert answer.stdout == (
            f"retry HTTP 500 from ntfy://***@{host}/***: Failed to send ntfy notification to "
            "topic '***': Internal server error., error=500.\n"
        )
    for secret in (PATH_SECRET, URL_PASSWORD):
        assert secret not in answer.stdout + answer.stderr
    assert "apprise" not in answer.stderr.lower()


def test_apprise_is_not_imported_until_a_channel_needs_it() -> None:
    code = (
        "import sys, monitor.cli, monitor.notify, monitor.notify.apprise, monitor.notify.notifier; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('apprise', 'aiosmtpd')))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "[]"
