"""A reverse proxy that pages ``tags/list`` the way Docker Hub and distribution v3 do.

Debian's registry 2.8.2 ignores ``n=`` and sends the whole list without ``Link``.
Registries that page answer at most ``page_size`` tags after ``last``, in
lexical order, with ``Link: </v2/<name>/tags/list?n=…&last=…>; rel="next"``
while more remain. Everything else is forwarded as by ``CountingProxy``.

    with PagingProxy(registry.host, page_size=100) as proxy:
        proxy.url                      # point the client here
        proxy.count("GET", "/v2/team/app/tags/list")   # pages served
        proxy.fail_on_page = 2         # answer the second page with HTTP 500
        proxy.loop = True              # every Link points at the first page again
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote

from .faults import CountingProxy, RecordedRequest, Reply

__all__ = ["PagingProxy"]

_TAGS_LIST = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class PagingProxy(CountingProxy):
    def __init__(
        self,
        upstream_host: str,
        *,
        page_size: int = 100,
        absolute_links: bool = False,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(upstream_host, timeout=timeout)
        self.page_size = page_size
        self.absolute_links = absolute_links
        self.fail_on_page: int | None = None  # 1-based page number answered with HTTP 500
        self.loop = False
        self._pages_served = 0

    def reset(self) -> None:
        super().reset()
        self._pages_served = 0

    def respond(self, request: RecordedRequest) -> Reply:
        match = _TAGS_LIST.match(request.path)
        if request.method != "GET" or match is None:
            return super().respond(request)
        self._pages_served += 1
        if self.fail_on_page is not None and self._pages_served >= self.fail_on_page:
            body = b'{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}'
            return Reply(500, [("Content-Type", "application/json")], body)
        upstream = super().respond(
            RecordedRequest(request.method, request.path, "", request.headers, request.body)
        )
        if upstream.status != 200:
            return upstream
        listing = json.loads(upstream.body)
        tags = sorted(listing.get("tags") or [])
        params = parse_qs(request.query)
        size = min(int(params["n"][0]), self.page_size) if "n" in params else self.page_size
        last = params.get("last", [""])[0]
        remaining = [tag for tag in tags if tag > last] if last else tags
        page, more = remaining[:size], len(remaining) > size
        headers = [("Content-Type", "application/json")]
        if more:
            after = "" if self.loop else f"&last={quote(page[-1])}"
            target = f"/v2/{match['name']}/tags/list?n={size}{after}"
            if self.absolute_links:
                target = f"{self.url}{target}"
            headers.append(("Link", f'<{target}>; rel="next"'))
        body = json.dumps({"name": listing.get("name"), "tags": page}).encode()
        return Reply(200, headers, body)
