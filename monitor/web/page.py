"""The HTML status page (SPEC §8): one row per watched tag, a page at a time, with
filter links by status; every value escaped, no script, no form (the policy has
``form-action 'none'``), one inline style that the policy allows by ``PAGE_CSS_HASH``."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from monitor.domain import Status
from monitor.records import TagState
from monitor.web.views import UNKNOWN, ImagePage, status_name
from monitor.wire import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from monitor.config import Watch

__all__ = ["PAGE_CSS_HASH", "render_status_page"]

_PAGE_CSS: Final = """
:root { color-scheme: light dark; --muted: #6e7781; --line: rgba(127, 127, 127, .25); }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; }
h1 { font-size: 1.25rem; margin: 0 0 .5rem; } h2 { font-size: 1rem; margin: 1rem 0 .5rem; }
.counts { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 1rem; padding: 0; }
.counts li { list-style: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.muted, small { color: var(--muted); }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff;
         font-weight: 600; font-size: 12px; background: #6e7781; }
.present { background: #1a7f37; } .missing { background: #cf222e; }
.denied { background: #bc4c00; } .error { background: #8250df; }
.unknown { background: #6e7781; }
a.badge { text-decoration: none; } a.badge.on { outline: 2px solid currentColor; }
.nav { margin: .5rem 0; }
"""

# The status page's one inline <style>, allowed by its hash: no script, no other source.
PAGE_CSS_HASH: Final = base64.b64encode(hashlib.sha256(_PAGE_CSS.encode()).digest()).decode()


def render_status_page(
    page: ImagePage,
    *,
    repositories: Sequence[Mapping[str, Any]] = (),
    counts: Mapping[str, int],
    now: datetime,
    statuses: Collection[str] = (),
    after: str | None = None,
    limit: int | None = None,
) -> str:
    """The HTML status page: one page of watched tags (``page``), the count of every
    status as filter links, and links to the first and the next page; above them the
    repository watches (``repository_object``s) with their selected tags."""
    total = sum(counts.values())
    rows = [_status_row(watch, state, status_name(state), now) for watch, state in page.rows]
    chosen = set(statuses)
    summary = "".join(
        f'<li><a class="badge {_e(name)}{" on" if name in chosen else ""}" '
        f'href="{_e(_href(limit=limit, statuses=[name]))}">{_e(name)}</a> {count}</li>'
        for name, count in counts.items()
    )
    summary += f'<li><a href="{_e(_href(limit=limit))}">all</a> {total}</li>'
    if rows:
        body = "\n".join(rows)
    else:
        empty = "No watched tags." if total == 0 else "No watched tags on this page."
        body = f'<tr><td colspan="6" class="muted">{empty}</td></tr>'
    matching = sum(counts.get(name, 0) for name in chosen) if chosen else total
    where = f" after <code>{_e(after)}</code>" if after is not None else ""
    links = []
    if after is not None:
        links.append(f'<a href="{_e(_href(limit=limit, statuses=statuses))}">First page</a>')
    if page.next_after is not None:
        href = _href(limit=limit, statuses=statuses, after=page.next_after)
        links.append(f'<a href="{_e(href)}" rel="next">Next page</a>')
    nav = f"{len(rows)} of {matching} shown{where}." + "".join(f" {link}" for link in links)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="30">'
        f"<title>regmon: {total} watched tags</title>"
        f"<style>{_PAGE_CSS}</style></head><body>"
        "<h1>regmon</h1>"
        f'<ul class="counts">{summary}</ul>'
        f"{_repositories(repositories, now)}"
        f'<p class="nav">{nav}</p>'
        "<table><thead><tr><th>Reference</th><th>Status</th><th>Digest</th>"
        "<th>Last change</th><th>Last check</th><th>Reason</th></tr></thead>"
        f"<tbody>\n{body}\n</tbody></table>"
        f'<p class="nav">{nav}</p>'
        f"<p><small>Rendered {_e(format_timestamp(now))}. "
        '<a href="/api/v1/images">JSON</a> · <a href="/metrics">metrics</a></small></p>'
        "</body></html>\n"
    )


_NONE: Final = '<span class="muted">none</span>'
_REPOSITORY_TAGS: Final = 50  # tag badges per repository; the table below has every row


def _repositories(repositories: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not repositories:
        return ""
    rows = []
    for repo in repositories:
        listing = str(repo["status"] or UNKNOWN)
        tags = repo["tags"]
        badges = " ".join(
            f'<span class="badge {_e(tag["status"])}" title="{_e(tag["reference"])}">'
            f"{_e(tag['tag'])}</span>"
            for tag in tags[:_REPOSITORY_TAGS]
        )
        if len(tags) > _REPOSITORY_TAGS:
            badges += f" <small>and {len(tags) - _REPOSITORY_TAGS} more</small>"
        listed = repo["listed_at"]
        when = _moment(parse_timestamp(listed), now) if listed else _moment(None, now)
        cause = ": ".join(str(part) for part in (repo["reason"], repo["detail"]) if part)
        rows.append(
            f"<tr><td><code>{_e(repo['repository'])}</code><br>"
            f"<small>{repo['selected']} of {repo['listed']} tags selected</small></td>"
            f'<td><span class="badge {_e(listing)}">{_e(listing)}</span>'
            f"{'<br><small>' + _e(cause) + '</small>' if cause else ''}</td>"
            f"<td>{when}</td><td>{badges or _NONE}</td></tr>"
        )
    return (
        "<h2>Repositories</h2><table><thead><tr><th>Repository</th><th>Listing</th>"
        "<th>Last listed</th><th>Selected tags</th></tr></thead>"
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table><h2>Tags</h2>"
    )


def _href(*, limit: int | None, statuses: Collection[str] = (), after: str | None = None) -> str:
    query: dict[str, str] = {}
    if statuses:
        query["status"] = ",".join(statuses)
    if limit is not None:
        query["limit"] = str(limit)
    if after is not None:
        query["after"] = after
    return "/?" + urlencode(query) if query else "/"


def _status_row(watch: Watch, state: TagState | None, status: str, now: datetime) -> str:
    digest = state.digest if state is not None else None
    if digest:
        short = digest.split(":", 1)[-1][:12]
        digest_cell = f'<code title="{_e(digest)}">{_e(short)}</code>'
    else:
        digest_cell = '<span class="muted">-</span>'
    reason = ""
    if state is not None and state.status is not None and state.status is not Status.PRESENT:
        parts = [str(state.reason.value) if state.reason is not None else "", state.detail or ""]
        reason = ": ".join(part for part in parts if part)
    decided = ""
    if state is not None and state.status is Status.ERROR and state.decided_status is not None:
        decided = f"<br><small>last decided: {_e(str(state.decided_status))}</small>"
    schedule = f"every {_duration(watch.interval)}" if watch.interval else f"cron {watch.cron}"
    return (
        f"<tr><td><code>{_e(watch.key)}</code><br><small>{_e(schedule)}</small>"
        f"{_origin(watch)}</td>"
        f'<td><span class="badge {_e(status)}">{_e(status)}</span>{decided}</td>'
        f"<td>{digest_cell}</td>"
        f"<td>{_moment(state.last_changed if state else None, now)}</td>"
        f"<td>{_moment(state.last_checked if state else None, now)}</td>"
        f"<td>{_e(reason)}</td></tr>"
    )


_PLACES_SHOWN: Final = 3  # a base image used in 200 manifests would fill the page


def _origin(watch: Watch) -> str:
    """Where a deployment file's image came from; nothing for a ``watch:`` entry."""
    if not watch.places:
        return ""
    shown = ", ".join(watch.places[:_PLACES_SHOWN])
    more = len(watch.places) - _PLACES_SHOWN
    if more > 0:
        shown += f" and {more} more"
    return f"<br><small>{_e(watch.source)}: {_e(shown)}</small>"


def _moment(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return '<span class="muted">never</span>'
    stamp = format_timestamp(moment)
    return (
        f'<time datetime="{_e(stamp)}">{_e(_ago(moment, now))}</time><br><small>{_e(stamp)}</small>'
    )


def _ago(moment: datetime, now: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    return f"{_duration(seconds)} ago"


def _duration(seconds: float) -> str:
    span = timedelta(seconds=seconds)
    if span < timedelta(minutes=1):
        return f"{int(seconds)} s"
    if span < timedelta(hours=1):
        return f"{max(int(seconds // 60), 1)} min"
    if span < timedelta(days=2):
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
