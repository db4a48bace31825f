"""One HTTP POST of one delivery, and what its outcome means for retrying.

    2xx                                   delivered
    connection error, timeout, 5xx,       retryable (``DeliveryError(permanent=False)``);
    408, 429, 3xx                         429/503 carry ``retry_after`` from Retry-After
    any other 4xx                         final (``DeliveryError(permanent=True)``)

A redirect is not followed (the signature covers a body for this URL) and is
retried rather than dropped: fixing the URL in the config then delivers it.

Error texts name the webhook by ``WebhookConfig.redacted_url`` (scheme and host)
and the failure by kind, never by the transport's own message (which may quote
the URL), and a quoted receiver answer has the webhook's credentials masked
(``masking``): Slack and Discord URLs carry their token in the path, and a
receiver may echo the Authorization header made from the URL's userinfo.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import httpx

from monitor.errors import RegistryError, RegmonError
from monitor.headers import parse_retry_after
from monitor.notify.masking import mask, webhook_secrets
from monitor.registry.bodies import read_body
from monitor.registry.transport import failure_reason
from monitor.text import clean

__all__ = [
    "MAX_BODY",
    "DeliveryError",
    "Response",
    "classify",
    "parse_retry_after",
    "post",
    "send",
]

MAX_BODY: Final = 64 * 1024  # bytes of a receiver's answer kept (the CLI prints it)
_SNIPPET: Final = 200
_RETRYABLE_4XX: Final = frozenset({408, 429})


class DeliveryError(RegmonError):
    """A delivery attempt that did not succeed.

    ``permanent``: retrying cannot help (a 4xx other than 408/429).
    ``retry_after``: seconds the receiver asked us to wait (Retry-After), if any.
    ``status_code``: the HTTP status, or ``None`` when no answer came.
    ``latency_ms``: time spent on the attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code
        self.latency_ms = latency_ms


@dataclass(frozen=True, slots=True)
class Response:
    """A receiver's answer: status, headers, the first ``MAX_BODY`` bytes of the body as text."""

    status_code: int
    headers: httpx.Headers
    text: str
    latency_ms: float


def _snippet(text: str, secrets: Sequence[str]) -> str:
    # Masked before it is cut: a secret cut in two would no longer match. Then one
    # printable line: a receiver's NUL bytes or escapes reach logs and the database
    # (PostgreSQL refuses NUL in text).
    return clean(mask(text, secrets), _SNIPPET)


def _split_userinfo(url: str) -> tuple[httpx.URL, httpx.BasicAuth | None]:
    """The URL without userinfo, and that userinfo as Basic auth.

    httpx turns URL credentials into an Authorization header and still passes
    the URL on; the aiohttp transport then refuses the request ("Cannot combine
    AUTHORIZATION header with ... credentials encoded in URL").
    """
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return parsed, None
    username, _, password = parsed.userinfo.decode("ascii").partition(":")
    return parsed.copy_with(userinfo=b""), httpx.BasicAuth(unquote(username), unquote(password))


async def post(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_seconds: float,
    redacted_url: str,
) -> Response:
    """POST ``body`` and return the answer, whatever its status.

    Raises ``DeliveryError(permanent=False)`` when no answer came (refused,
    reset, TLS, timeout — ``timeout_seconds`` bounds the whole exchange).
    """
    started = time.monotonic()
    try:
        target, auth = _split_userinfo(url)
        async with asyncio.timeout(timeout_seconds):
            async with http.stream(
                "POST",
                target,
                content=body,
                headers=dict(headers),
                auth=auth,
                timeout=httpx.Timeout(timeout_seconds),
                follow_redirects=False,
            ) as answer:
                status, answer_headers = answer.status_code, answer.headers
                try:
                    # Decoded bytes counted as they stream: a gzip answer stops at the cap.
                    raw = await read_body(answer, MAX_BODY, "the answer", truncate=True)
                except RegistryError:
                    raw = b""  # the status is the answer; an unreadable body is only not shown
    except Exception as exc:
        # httpx and OS errors, and whatever else a transport lets through (aiohttp raises
        # ValueError for some requests): all mean "no answer", all worth a retry.
        latency = (time.monotonic() - started) * 1000
        if isinstance(exc, TimeoutError):
            kind = "timeout"
        elif isinstance(exc, httpx.HTTPError | OSError):
            kind = str(failure_reason(exc))
        else:
            kind = "error"

        raise DeliveryError(
            f"{kind} ({type(exc).__name__}) posting to {redacted_url}",
            permanent=False,
            latency_ms=latency,
        ) from None  # the transport's message and traceback may quote the URL
    latency = (time.monotonic() - started) * 1000
    charset = answer_headers.get("content-type", "")
    match = re.search(r"charset=([\w-]+)", charset)
    try:
        text = raw.decode(match.group(1) if match else "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    return Response(status, answer_headers, text, latency)


def classify(
    response: Response, *, url: str, redacted_url: str, secrets: Sequence[str] = ()
) -> DeliveryError | None:
    """``None`` for a 2xx; else the ``DeliveryError`` the answer means (see the module doc).

    ``secrets`` (``masking.webhook_secrets``) are masked in the quoted answer;
    without them, those of ``url`` alone.
    """
    code = response.status_code
    if 200 <= code < 300:
        return None
    snippet = _snippet(response.text, secrets or webhook_secrets(url))
    message = f"HTTP {code} from {redacted_url}" + (f": {snippet}" if snippet else "")
    retry_after = None
    if code in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    permanent = 400 <= code < 500 and code not in _RETRYABLE_4XX
    return DeliveryError(
        message,
        permanent=permanent,
        retry_after=retry_after,
        status_code=code,
        latency_ms=response.latency_ms,
    )


async def send(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_seconds: float,
    redacted_url: str,
    secrets: Sequence[str] = (),
) -> Response:
    """POST and return the 2xx answer; raise ``DeliveryError`` for anything else."""
    response = await post(
        http, url, body, headers, timeout_seconds=timeout_seconds, redacted_url=redacted_url
    )
    error = classify(response, url=url, redacted_url=redacted_url, secrets=secrets)
    if error is not None:
        raise error
    return response
