"""Prepared batches for the store's ``record_evaluations`` from evaluations and callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.records import Evaluation, Event
from monitor.store.repository import Record


def prepared(
    evaluations: Sequence[Evaluation],
    payload_for: Callable[[Event], Mapping[str, Any]],
    channels_for: Callable[[Event], Sequence[str]] | None = None,
) -> list[Record]:
    return [
        Record(
            evaluation,
            payloads=tuple(payload_for(event) for event in evaluation.events),
            channels=tuple(
                tuple(channels_for(event)) if channels_for else () for event in evaluation.events
            ),
        )
        for evaluation in evaluations
    ]
