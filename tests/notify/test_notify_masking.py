"""monitor.notify.masking: every form a webhook's credentials come back in is masked."""

from __future__ import annotations

import base64

import pytest

from monitor.notify.masking import mask, webhook_secrets
from monitor.notify.sender import Response, classify

URL = "https://bot%40acme:p%2Fss~w0rd@hooks.example.com/services/T000/B000/XXXXSECRETXXXX?token=abc123&x=1"
PAIR = b"bot@acme:p/ss~w0rd"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    "leak",
    [
        "p%2Fss~w0rd",  # as written in the URL
        "p/ss~w0rd",  # unquoted
        base64.b64encode(PAIR).decode(),  # Authorization: Basic …
        base64.urlsafe_b64encode(PAIR).decode(),
        base64.b64encode(PAIR).decode().rstrip("="),
        base64.b64encode(PAIR).decode().replace("/", "\\/"),  # JSON-escaped by PHP and others
        "services/T000/B000/XXXXSECRETXXXX",
        "XXXXSECRETXXXX",
        "abc123",
        SECRET,
        SECRET.removeprefix("whsec_"),
        "Bearer key-0123",  # a configured header's value
    ],
)
def test_every_form_is_masked(leak: str) -> None:
    secrets = webhook_secrets(URL, secret=SECRET, headers={"Authorization": "Bearer key-0123"})
    assert mask(f"denied: {leak}!", secrets) == "denied: ***!"


def test_a_url_without_credentials_masks_only_its_path_and_query() -> None:
    assert webhook_secrets("http://127.0.0.1:8080/") == ()
    assert mask("fine at 127.0.0.1:8080", webhook_secrets("http://127.0.0.1:8080/")) == (
        "fine at 127.0.0.1:8080"
    )


def test_a_secret_at_the_snippet_cut_is_masked_before_the_cut() -> None:
    basic = base64.b64encode(PAIR).decode()
    text = "x" * 190 + basic  # the 200-character cut would split it
    response = Response(401, __import__("httpx").Headers(), text, 1.0)
    error = classify(response, url=URL, redacted_url="https://***@hooks.example.com/***")
    assert error is not None
    assert basic[:10] not in str(error)
    assert str(error).endswith("x***")
