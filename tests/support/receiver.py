"""A real webhook receiver on loopback that verifies every delivery like a user's would.

    with WebhookReceiver(SECRET) as rx:              # answers 200 "ok" to verified deliveries
        rx.url                                       # http://127.0.0.1:PORT/hook
        rx.answer(500)                               # every request -> 500 from now on
        rx.answer(429, {"Retry-After": "2"}, times=1)  # next request -> 429, then back to 200
        rx.answer(401, echo=True)                    # body quotes every request header,
                                                     # as debugging receivers do
        rx.hang()                                    # hold requests (until answer/close), then
                                                     # answer 599: recorded as not delivered
        rx.answer(200)
        rx.delivered()                               # [Received] answered 2xx, in arrival order
        rx.attempts                                  # [Received] every request, whatever answered
        rx.invalid                                   # requests whose signature did not verify

Every request is checked with ``standardwebhooks.Webhook(secret).verify``;
one that fails is answered 400 and kept in ``invalid`` (tests assert it is
empty). Handler threads are daemons; ``close()`` releases a hang.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks import Webhook

from .faults import LoopbackHTTPServer, RecordedRequest, Reply

__all__ = ["HUNG", "Received", "WebhookReceiver"]

HUNG = 599  # the status recorded (and sent, if anyone still listens) for a request held by hang()


@dataclass(frozen=True)
class Received:
    """One request: event id and type, parsed body, headers, arrival time, status answered."""

    id: str
    type: str
    body: Any
    raw: bytes
    headers: httpx.Headers
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    status: int


class WebhookReceiver(LoopbackHTTPServer):
    def __init__(self, secret: str | None, *, path: str = "/hook", port: int = 0) -> None:
        super().__init__(port=port)
        self.secret = secret
        self.path = path
        self._state = threading.Condition()
        self._status = 200
        self._headers: list[tuple[str, str]] = []
        self._times: int | None = None  # answers left before going back to 200
        self._echo = False
        self._hang = False
        self._hanging = 0
        self._closing = False
        self._attempts: list[Received] = []
        self._invalid: list[tuple[RecordedRequest, str]] = []

    # -- control -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}{self.path}"

    def answer(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = None,
        echo: bool = False,
        body: bytes | None = None,
    ) -> None:
        """Answer ``status`` (with ``headers``) from now on, or for the next ``times`` requests.

        ``echo``: the body quotes the request target and every request header,
        Authorization first. ``body``: exactly these bytes instead of the usual text.
        """
        with self._state:
            self._body = body
            self._status = status
            self._headers = list((headers or {}).items())
            self._times = times
            self._echo = echo
            self._hang = False
            self._state.notify_all()

    def hang(self) -> None:
        """Accept requests and never answer them (until ``answer()`` or ``close()``)."""
        with self._state:
            self._hang = True

    def close(self) -> None:
        with self._state:
            self._closing = True
            self._state.notify_all()
        super().close()

    # -- records -----------------------------------------------------------------------

    @property
    def hanging(self) -> int:
        """Requests held by ``hang()`` right now."""
        with self._state:
            return self._hanging

    @property
    def attempts(self) -> list[Received]:
        with self._state:
            return list(self._attempts)

    @property
    def invalid(self) -> list[tuple[RecordedRequest, str]]:
        with self._state:
            return list(self._invalid)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.attempts if 200 <= r.status < 300]

    def delivered_ids(self) -> list[str]:
        return [r.id for r in self.delivered()]

    def attempts_for(self, event_id: str) -> list[Received]:
        return [r for r in self.attempts if r.id == event_id]

    # -- the server --------------------------------------------------------------------

    def respond(self, request: RecordedRequest) -> Reply:
        arrived, wall = time.monotonic(), time.time()
        headers = dict(request.headers.items())
        try:
            if self.secret is None:
                body = json.loads(request.body)
            else:
                body = Webhook(self.secret).verify(request.body, headers)
        except Exception as exc:
            with self._state:
                self._invalid.append((request, repr(exc)))
            return Reply(400, [("Content-Type", "text/plain")], b"signature does not verify")
        with self._state:
            hung = self._hang
            if hung:
                self._hanging += 1
            while self._hang and not self._closing:
                self._state.wait(0.1)
            status, reply_headers, echo = self._status, list(self._headers), self._echo
            fixed_body = getattr(self, "_body", None)
            if hung:
                # The sender has long given up on this request: answer, but it was not delivered.
                self._hanging -= 1
                status, reply_headers = HUNG, []
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._status, self._headers, self._times, self._echo = 200, [], None, False
                    self._body = None
            event_id = request.headers.get("webhook-id", "")
            kind = body.get("type", "") if isinstance(body, dict) else ""
            self._attempts.append(
                Received(event_id, kind, body, request.body, request.headers, arrived, wall, status)
            )
        if status == HUNG:
            return Reply(status, [("Content-Type", "text/plain")], b"too late")
        if status in (204, 304):
            return Reply(status, reply_headers)  # no body allowed
        if fixed_body is not None:
            return Reply(status, reply_headers, fixed_body)
        text = b"ok" if 200 <= status < 300 else f"receiver says {status}".encode()
        if echo:
            # Authorization first, as a "bad credentials" page would quote it.
            items = sorted(request.headers.items(), key=lambda item: item[0] != "authorization")
            quoted = "\n".join(f"{name}: {value}" for name, value in items)
            text += f"\nyou sent {request.target}\n{quoted}".encode()
        return Reply(status, [("Content-Type", "text/plain"), *reply_headers], text)
