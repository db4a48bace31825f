"""Apprise channels (SPEC §6): ``apprise: ntfy://…``, ``mailto://…``, ``tgram://…``, …

Every service the ``apprise`` library supports, behind the ``Notifier`` seam.
``apprise`` is imported on first use (it is heavy and the ``regmon check``
path never needs it).

What a failure means. Apprise answers a send with a status (success,
failure, timeout) and the log lines its plugin wrote; it keeps the HTTP
status only in those lines (``…, error=404.``). So:

    success                                       delivered
    timeout (our deadline passed)                 retry
    "error=NNN": 5xx, 408, 429, 3xx               retry
    "error=NNN": any other 4xx                    final
    a connection error (refused, DNS, TLS, SMTP)  retry
    anything else                                 retry, saying Apprise gave no cause

Apprise does not pass a ``Retry-After`` on; the dispatcher's backoff applies.
A URL that Apprise cannot use is refused at config load (``validate_url``),
so a send never meets one; if it does (an Apprise upgrade), it is final.

Blocking sends run on a small thread pool of the notifier's own (never the
event loop's default executor, which the store uses), bounded by the
webhook's timeout: Apprise's own call deadline, the plugin's socket
timeouts, and an outer ``asyncio`` deadline.

Secrets: Apprise URLs carry tokens in the host and path (``tgram://TOKEN/CHAT``,
``slack://A/B/C``), credentials in the userinfo and keys in the query.
``redact_apprise_url`` keeps the scheme, and the host only when it is a
host name or address that Apprise's own privacy form (``url(privacy=True)``,
which knows per service which parts are private) keeps too. That form is
not shown as such: it keeps the first and last character of tokens, whole
paths (``json://host/PATHSECRET``, ntfy topics), header arguments and
e-mail recipients. Text quoted from Apprise's log lines has every part of the URL
that may be secret replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

from monitor.apprise_urls import (
    apprise_asset,
    apprise_secrets,
    redact_apprise_url,
    scrub,
    validate_url,
)
from monitor.notify.formats.text import TextMessage, text_message
from monitor.notify.notifier import Delivery, Outcome

if TYPE_CHECKING:
    from concurrent.futures import Executor

__all__ = [
    "AppriseNotifier",
    "apprise_secrets",
    "classify_result",
    "redact_apprise_url",
    "validate_url",
]

_SOCKET_MARGIN: Final = 1.0  # seconds past Apprise's deadline a plugin's socket may wait
_OUTER_MARGIN: Final = 5.0  # seconds past Apprise's deadline before we stop waiting
_RETRYABLE_4XX: Final = frozenset({408, 429})
_STATUS = re.compile(r"\berror=(\d{3})\b")
_CONNECTION = re.compile(r"connection error|socket|timed? ?out|unreachable|refused", re.I)


# -- the outcome of one send ----------------------------------------------------------------


def classify_result(result: Any, *, url: str, target: str, timeout: float) -> Outcome:
    """The ``Outcome`` an ``apprise.AppriseResult`` means (see the module doc)."""
    from apprise.result import AppriseResultStatus

    latency = float(getattr(result, "elapsed", 0.0)) * 1000
    if result.status == AppriseResultStatus.SUCCESS:
        return Outcome.delivered(latency_ms=latency)
    if result.status == AppriseResultStatus.TIMEOUT:
        return Outcome.retry(
            f"timeout: {target} did not finish within {timeout:g}s", latency_ms=latency
        )
    messages = [
        str(entry.message)
        for service in result
        for entry in service.logs()
        if str(entry.level) in ("WARNING", "ERROR", "CRITICAL")
    ]
    detail = scrub(messages[-1], url) if messages else ""
    suffix = f": {detail}" if detail else ""
    for message in reversed(messages):
        found = _STATUS.search(message)
        if found:
            code = int(found.group(1))
            text = f"HTTP {code} from {target}{suffix}"
            if 400 <= code < 500 and code not in _RETRYABLE_4XX:
                return Outcome.failed(text, status_code=code, latency_ms=latency)
            return Outcome.retry(text, status_code=code, latency_ms=latency)
    if any(_CONNECTION.search(message) for message in messages):
        return Outcome.retry(f"unreachable: {target}{suffix}", latency_ms=latency)
    return Outcome.retry(
        f"{target}: Apprise reported a failure without a cause (retrying, as it may be "
        f"passing){suffix}",
        latency_ms=latency,
    )


# -- the notifier ---------------------------------------------------------------------------


class AppriseNotifier:
    """Sends deliveries to one Apprise URL; ``str``/``repr`` show only the redacted URL.

    ``executor``: where the blocking sends run; by default a pool of
    ``workers`` threads owned (and shut down by ``aclose``) by this notifier.
    Pass one shared pool when there are many Apprise channels.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        executor: Executor | None = None,
        workers: int = 2,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._target = redact_apprise_url(url)
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="regmon-apprise"
        )

    @property
    def target(self) -> str:
        return self._target

    def __repr__(self) -> str:
        return f"AppriseNotifier({self._target!r}, timeout={self._timeout:g})"

    __str__ = __repr__

    async def send(self, delivery: Delivery) -> Outcome:
        message = text_message(delivery.events)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        future = loop.run_in_executor(self._executor, self._send_blocking, message)
        try:
            return await asyncio.wait_for(future, self._timeout + _OUTER_MARGIN)
        except TimeoutError:
            # The thread may still be in a plugin's hands; its socket timeouts end it.
            latency = (time.monotonic() - started) * 1000
            return Outcome.retry(
                f"timeout: {self._target} did not finish within {self._timeout:g}s",
                latency_ms=latency,
            )

    def _send_blocking(self, message: TextMessage) -> Outcome:
        try:
            import apprise

            plugin = apprise.Apprise.instantiate(self._url, asset=apprise_asset())
            if plugin is None:
                return Outcome.failed(f"Apprise cannot use the URL {self._target}")
            # Bound every socket wait, so a thread Apprise stopped waiting for does not
            # linger; a little past the call deadline, which then names the timeout.
            bound = self._timeout + _SOCKET_MARGIN
            for name in ("socket_connect_timeout", "socket_read_timeout"):
                current = getattr(plugin, name, None)
                if isinstance(current, int | float) and current > bound:
                    setattr(plugin, name, bound)
            sender = apprise.Apprise(asset=plugin.asset)
            sender.add(plugin)
            result = sender.notify(
                body=message.body,
                title=message.title,
                notify_type=message.level,
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self._timeout,
            )
            try:
                return classify_result(
                    result, url=self._url, target=self._target, timeout=self._timeout
                )
            finally:
                for service in result:
                    service.close()
        except Exception as exc:
            # Not Apprise's words: they may quote the URL. A bug here is worth a retry.
            return Outcome.retry(f"{self._target}: internal error ({type(exc).__name__})")

    async def aclose(self) -> None:
        if self._own_executor:
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
