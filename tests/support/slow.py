"""A registry that answers manifests slowly and counts how many were in flight at once."""

from __future__ import annotations

import json
import threading
import time

from support.faults import LoopbackHTTPServer, RecordedRequest, Reply

DIGEST = "sha256:" + "a" * 64


class SlowRegistry(LoopbackHTTPServer):
    """Answers manifests slowly and records how many were in flight at once; with
    ``missing=True`` every manifest is 404 ``MANIFEST_UNKNOWN`` (as slowly)."""

    def __init__(
        self, delay: float, headers: list[tuple[str, str]] | None = None, *, missing: bool = False
    ) -> None:
        super().__init__()
        self.delay = delay
        self.missing = missing
        self.extra = headers or []
        self.inflight = 0
        self.peak = 0
        self._gauge = threading.Lock()

    def respond(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200)
        with self._gauge:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            time.sleep(self.delay)
        finally:
            with self._gauge:
                self.inflight -= 1
        if self.missing:
            error = {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}
            body = json.dumps({"errors": [error]}).encode()
            return Reply(404, [("Content-Type", "application/json")], body)
        return Reply(
            200,
            [
                ("Docker-Content-Digest", DIGEST),
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                *self.extra,
            ],
        )
