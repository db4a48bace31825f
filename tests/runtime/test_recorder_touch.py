"""The recorder marks a record a touch exactly when its state moved only its check timestamps
on top of the version the store holds (``Record.touch``, ``monitor.store.records``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from monitor.config import parse_config, resolve_watches
from monitor.domain import Reason, Status
from monitor.records import Evaluation, TagState
from monitor.runtime.recorder import Recorder
from monitor.store.repository import Record, Recorded

CONFIG = parse_config(
    "database: sqlite:///unused.db\nwatch:\n"
    + "".join(f"  - image: registry.test/app/a{i}:v1\n" for i in range(5))
)
WATCHES = {w.key: w for w in resolve_watches(CONFIG)}
KEYS = list(WATCHES)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def base(key: str) -> TagState:
    return TagState(
        key,
        status=Status.PRESENT,
        decided_status=Status.PRESENT,
        digest="sha256:" + "a" * 64,
        platforms={"linux/amd64": "sha256:" + "b" * 64},
        first_seen=T0,
        last_checked=T0,
        last_decided=T0,
        last_changed=T0,
    )


def checked(previous: TagState, **changes: object) -> TagState:
    at = T0 + timedelta(minutes=5)
    return replace(previous, last_checked=at, last_decided=at, **changes)  # type: ignore[arg-type]


def test_only_timestamps_on_the_stored_version_is_a_touch() -> None:
    written: list[Record] = []

    def write(batch: Sequence[Record]) -> Recorded:
        written.extend(batch)
        return Recorded()

    stored = {KEYS[0]: 1, KEYS[1]: 1, KEYS[3]: 4, KEYS[4]: 1}
    recorder = Recorder(
        write,
        prepare=lambda evaluation, _watch: Record(evaluation),
        stored_versions=stored,
    )
    cases = [
        (KEYS[0], base(KEYS[0]), checked(base(KEYS[0]))),  # touch
        (KEYS[1], base(KEYS[1]), checked(base(KEYS[1]), detail="x")),  # another column moved
        (KEYS[2], None, checked(base(KEYS[2]))),  # never stored
        (KEYS[3], base(KEYS[3]), checked(base(KEYS[3]))),  # the store is at another version
        (
            KEYS[4],
            base(KEYS[4]),
            checked(base(KEYS[4]), status=Status.ERROR, reason=Reason.TIMEOUT),
        ),
    ]
    for key, previous, new in cases:
        recorder.add(Evaluation(new), WATCHES[key], version=2, previous=previous)
    asyncio.run(recorder.flush())
    assert [(r.image, r.expected, r.version, r.touch) for r in written] == [
        (KEYS[0], 1, 2, True),
        (KEYS[1], 1, 2, False),
        (KEYS[2], 0, 2, False),
        (KEYS[3], 4, 2, False),
        (KEYS[4], 1, 2, False),
    ]
