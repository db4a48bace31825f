"""Registry outages (monitor.outage, monitor.runtime.outages): the rules, check by check.

Each scenario feeds check results, tag by tag in check order, through the
service's StateCache with its Outages and prepares every evaluation with the
Router, as the service does; it asserts which events were recorded and which
webhooks each one goes to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from monitor.config import Config, Watch, parse_config, resolve_watches
from monitor.domain import CheckResult, Reason, Status
from monitor.logs import CheckLog
from monitor.notify.routing import Router
from monitor.outage import MIN_TAGS, Tally
from monitor.records import RegistryState
from monitor.runtime.cache import StateCache
from monitor.runtime.outages import Outages
from monitor.store.repository import Record

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
OK = Status.PRESENT
ERR = Status.ERROR


@pytest.mark.parametrize(
    ("checked", "errors", "outage"),
    [
        (0, 0, False),
        (1, 1, False),  # one tag: never an outage, its check.failing is the notification
        (2, 2, False),
        (3, 2, False),
        (3, 3, True),
        (5, 3, False),
        (5, 4, True),  # 80 %: one tag still answered (a cache) does not hide the outage
        (5, 5, True),
        (10, 7, False),
        (10, 8, True),
        (100_000, 79_999, False),
        (100_000, 80_000, True),
    ],
)
def test_outage_needs_three_checked_tags_and_80_percent_in_error(
    checked: int, errors: int, outage: bool
) -> None:
    assert MIN_TAGS == 3
    assert Tally(checked, errors).outage is outage


def config(tags: int, *, failing_after: int = 3, hooks: str = "", extra: str = "") -> Config:
    text = (
        "database: sqlite:///unused.db\n"
        f"defaults: {{interval: 1m, failing_after: {failing_after}}}\n"
        "webhooks:\n"
        + (hooks or "  - {name: ops, url: 'https://hooks.example.com/ops'}\n")
        + "watch:\n"
        + "".join(f"  - image: reg.example.com/team/app{i}:v1\n" for i in range(tags))
        + extra
    )
    return parse_config(text)


@dataclass
class Sent:
    """What one prepared event is: its type, its tag, the webhooks it goes to."""

    type: str
    image: str
    channels: tuple[str, ...]


@dataclass
class Harness:
    config: Config
    outages: Outages = field(default_factory=Outages)
    clock: Iterator[int] = field(default_factory=count)
    records: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.watches: dict[str, Watch] = {w.key: w for w in resolve_watches(self.config)}
        self.keys = list(self.watches)
        self.cache = StateCache(None, self.outages)
        self.outages.watch(self.watches, self.cache.states())
        self.router = Router(lambda: self.config, self.outages.webhooks)

    def check(self, index: int, status: Status, *, took: float = 0.0) -> list[Sent]:
        """One check of tag ``index`` that took ``took`` seconds (it ends on the clock)."""
        watch = self.watches[self.keys[index]]
        at = T0 + timedelta(seconds=next(self.clock))
        result = CheckResult(
            watch.image,
            status,
            at,
            digest=DIGEST if status is OK else None,
            reason=Reason.UNREACHABLE if status is ERR else None,
            duration_ms=took * 1000,
        )
        evaluation, _ = self.cache.evaluate(watch, result)
        record = self.router.prepare(evaluation, watch)
        self.records.append(record)
        return [
            Sent(str(event.type), event.image, channels)
            for event, channels in zip(evaluation.events, record.channels, strict=True)
        ]

    def cycle(self, statuses: Sequence[Status] | Status, tags: Sequence[int] = ()) -> list[Sent]:
        """One check of each tag (or of ``tags``), in order."""
        indexes = list(tags) or list(range(len(self.keys)))
        if isinstance(statuses, Status):
            statuses = [statuses] * len(indexes)
        return [sent for i, s in zip(indexes, statuses, strict=True) for sent in self.check(i, s)]


def delivered(sent: Sequence[Sent]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(s.type, s.image.rsplit("/", 1)[-1], s.channels) for s in sent if s.channels]


def recorded(sent: Sequence[Sent]) -> list[str]:
    return [s.type for s in sent]


def test_five_tag_outage_is_one_registry_failing_and_one_registry_recovered() -> None:
    h = Harness(config(5))
    assert h.cycle(OK) == []  # the baseline
    outage = h.cycle(ERR) + h.cycle(ERR) + h.cycle(ERR) + h.cycle(ERR)
    # The first tag to reach failing_after (3) finds every tag in error: registry.failing
    # comes first, in the same evaluation, and every check.failing is recorded, not sent.
    assert recorded(outage) == ["registry.failing"] + ["check.failing"] * 5
    assert delivered(outage) == [("registry.failing", "app0:v1", ("ops",))]
    failing = h.records[15].evaluation  # app0's third error
    assert failing.registry == RegistryState(
        "reg.example.com", failing=True, since=T0 + timedelta(seconds=15)
    )
    assert failing.events[0].registry is not None
    assert (failing.events[0].registry.tags, failing.events[0].registry.errors) == (5, 5)
    assert h.outages.is_failing("reg.example.com")

    back = h.cycle(OK)
    # 4 of 5 in error is still 80 %: the second tag that answers ends the outage.
    assert recorded(back) == ["check.recovered", "registry.recovered"] + ["check.recovered"] * 4
    assert delivered(back) == [("registry.recovered", "app1:v1", ("ops",))]
    assert not h.outages.is_failing("reg.example.com")
    assert all(not state.failing_covered for state in h.cache.states().values())
    # Quiet again; a later flaky tag is a per-tag event once more.
    assert h.cycle(OK) == []
    flaky = h.cycle([ERR], tags=[2]) + h.cycle([ERR], tags=[2]) + h.cycle([ERR], tags=[2])
    assert delivered(flaky) == [("check.failing", "app2:v1", ("ops",))]


def test_one_flaky_tag_on_a_healthy_registry_stays_a_per_tag_check_failing() -> None:
    h = Harness(config(5))
    h.cycle(OK)
    sent = []
    for _ in range(4):
        sent += h.cycle([ERR, OK, OK, OK, OK])
    assert delivered(sent) == [("check.failing", "app0:v1", ("ops",))]
    sent = h.cycle(OK)
    assert delivered(sent) == [("check.recovered", "app0:v1", ("ops",))]


def test_a_registry_with_one_or_two_watched_tags_has_per_tag_events_only() -> None:
    for tags in (1, 2):
        h = Harness(config(tags))
        h.cycle(OK)
        sent = h.cycle(ERR) + h.cycle(ERR) + h.cycle(ERR) + h.cycle(OK)
        expected = [("check.failing", f"app{i}:v1", ("ops",)) for i in range(tags)]
        expected += [("check.recovered", f"app{i}:v1", ("ops",)) for i in range(tags)]
        assert delivered(sent) == expected
        assert not h.outages.is_failing("reg.example.com")


def test_three_tags_all_in_error_are_an_outage_that_the_first_answer_ends() -> None:
    h = Harness(config(3))
    h.cycle(OK)
    sent = h.cycle(ERR) + h.cycle(ERR) + h.cycle(ERR) + h.cycle(OK)
    assert delivered(sent) == [
        ("registry.failing", "app0:v1", ("ops",)),
        ("registry.recovered", "app0:v1", ("ops",)),  # 2 of 3 in error is under 80 %
    ]


def test_tags_never_checked_do_not_count() -> None:
    h = Harness(config(5))
    # Only two of five tags have been checked: no outage, however long they fail.
    sent = h.cycle(ERR, tags=[0, 1]) + h.cycle(ERR, tags=[0, 1]) + h.cycle(ERR, tags=[0, 1])
    assert delivered(sent) == [
        ("check.failing", "app0:v1", ("ops",)),
        ("check.failing", "app1:v1", ("ops",)),
    ]


def test_with_failing_after_1_the_tags_before_the_share_is_known_are_sent() -> None:
    h = Harness(config(5, failing_after=1))
    h.cycle(OK)
    sent = h.cycle(ERR)
    # app0..app2 reach failing_after while 1, 2, 3 of 5 tags are in error: sent; app3 makes it
    # 4 of 5 and registry.failing covers app3 and app4.
    assert delivered(sent) == [
        ("check.failing", "app0:v1", ("ops",)),
        ("check.failing", "app1:v1", ("ops",)),
        ("check.failing", "app2:v1", ("ops",)),
        ("registry.failing", "app3:v1", ("ops",)),
    ]
    sent = h.cycle(OK)
    # Recovered while the registry is failing (app0, app1): recorded only; after it recovered,
    # a tag whose check.failing was sent (app2) gets its check.recovered; covered ones do not.
    assert delivered(sent) == [
        ("registry.recovered", "app1:v1", ("ops",)),
        ("check.recovered", "app2:v1", ("ops",)),
    ]


def test_a_covered_tag_that_still_fails_after_the_outage_is_announced_once() -> None:
    h = Harness(config(5))
    h.cycle(OK)
    h.cycle(ERR), h.cycle(ERR), h.cycle(ERR)
    # The registry answers again, except for app4 (a problem of its own). Its first check
    # after the recovery was already running when the registry came back (5 s, while the
    # recovery was 3 s before it ended): it proves nothing.
    sent = h.cycle(OK, tags=[0, 1, 2, 3]) + h.check(4, ERR, took=5)
    assert delivered(sent) == [("registry.recovered", "app1:v1", ("ops",))]
    sent = h.check(4, ERR) + h.check(4, ERR)
    assert delivered(sent) == [("check.failing", "app4:v1", ("ops",))]
    assert recorded(sent) == ["check.failing"]
    (announced,) = h.records[-2].evaluation.events
    assert (announced.previous_status, announced.current_status) == (OK, ERR)
    assert announced.reason == "unreachable"
    # Its recovery is its own again.
    assert delivered(h.check(4, OK)) == [("check.recovered", "app4:v1", ("ops",))]


def test_a_webhook_that_does_not_take_registry_events_still_gets_every_per_tag_event() -> None:
    hooks = (
        "  - {name: ops, url: 'https://hooks.example.com/ops'}\n"
        "  - {name: tags, url: 'https://hooks.example.com/tags',"
        " events: [check.failing, check.recovered]}\n"
        "  - {name: pager, url: 'https://hooks.example.com/pager', events: [registry.failing]}\n"
    )
    h = Harness(config(3, hooks=hooks))
    h.cycle(OK)
    sent = h.cycle(ERR) + h.cycle(ERR) + h.cycle(ERR) + h.cycle(OK)
    assert delivered(sent) == [
        ("registry.failing", "app0:v1", ("ops", "pager")),
        ("check.failing", "app0:v1", ("tags",)),
        ("check.failing", "app1:v1", ("tags",)),
        ("check.failing", "app2:v1", ("tags",)),
        ("registry.recovered", "app0:v1", ("ops",)),
        # pager takes registry.failing only: check.recovered is not covered for it, but it
        # does not take check.recovered either.
        ("check.recovered", "app0:v1", ("tags",)),
        ("check.recovered", "app1:v1", ("tags",)),
        ("check.recovered", "app2:v1", ("tags",)),
    ]


def test_registry_events_go_to_the_webhooks_of_every_watch_of_the_registry() -> None:
    hooks = (
        "  - {name: ops, url: 'https://hooks.example.com/ops'}\n"
        "  - {name: dev, url: 'https://hooks.example.com/dev'}\n"
        "  - {name: other, url: 'https://hooks.example.com/other'}\n"
    )
    text = (
        "database: sqlite:///unused.db\n"
        "defaults: {interval: 1m, failing_after: 2}\n"
        "webhooks:\n" + hooks + "watch:\n"
        "  - {image: 'reg.example.com/a:v1', webhooks: [dev]}\n"
        "  - {image: 'reg.example.com/b:v1', webhooks: [ops]}\n"
        "  - {image: 'reg.example.com/c:v1', webhooks: [ops]}\n"
        "  - {image: 'other.example.com/d:v1', webhooks: [other]}\n"
    )
    h = Harness(parse_config(text))
    h.cycle(OK)
    sent = h.cycle(ERR, tags=[0, 1, 2]) + h.cycle(ERR, tags=[0, 1, 2])
    # Triggered by a's check (a names dev only); b and c name ops: both hear of it.
    assert delivered(sent) == [("registry.failing", "a:v1", ("ops", "dev"))]
    assert not h.outages.is_failing("other.example.com")


def test_restart_during_an_outage_continues_from_the_stored_states() -> None:
    h = Harness(config(5))
    h.cycle(OK)
    h.cycle(ERR), h.cycle(ERR), h.cycle(ERR)
    stored_states = {key: (state, 1) for key, state in h.cache.states().items()}
    # A new service: tallies from the stored tag states, registry states from the store.
    again = Harness(
        config(5), outages=Outages({"reg.example.com": RegistryState("reg.example.com", True, T0)})
    )
    again.cache = StateCache(stored_states, again.outages)
    again.outages.watch(again.watches, again.cache.states())
    assert again.cycle(ERR) == [] and again.cycle(ERR) == []  # nothing announced twice
    back = again.cycle(OK)
    assert delivered(back) == [("registry.recovered", "app1:v1", ("ops",))]
    assert [s.channels for s in back if s.type == "check.recovered"] == [()] * 5


def test_removed_watches_leave_the_tally_on_reload() -> None:
    h = Harness(config(5))
    h.cycle(OK)
    h.cycle(ERR, tags=[0, 1, 2])
    smaller = config(2)
    h.outages.watch({w.key: w for w in resolve_watches(smaller)}, h.cache.states())
    # Two watched tags remain: never an outage.
    sent = h.cycle(ERR, tags=[0, 1]) + h.cycle(ERR, tags=[0, 1])
    assert recorded(sent) == ["check.failing", "check.failing"]


def test_the_log_names_the_registry(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(config(3))
    h.cycle(OK)
    h.cycle(ERR), h.cycle(ERR)
    previous = h.cache.get(h.keys[0])
    h.check(0, ERR)
    log = CheckLog(logging.getLogger("regmon.test-outage"))
    with caplog.at_level(logging.INFO, "regmon.test-outage"):
        record = h.records[-1]
        result = CheckResult(h.watches[h.keys[0]].image, ERR, T0, reason=Reason.UNREACHABLE)
        log.record(h.keys[0], previous, result, record.evaluation, failing_after=3)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "registry.failing reg.example.com: 3 of 3 tags in error; per-tag check events held"
            " back (reg.example.com/team/app0:v1: error unreachable)",
        ),
        (
            "WARNING",
            "check.failing reg.example.com/team/app0:v1: 3 consecutive errors, last unreachable"
            " (covered by the registry's event)",
        ),
    ]
