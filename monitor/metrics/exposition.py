"""``GET /metrics``: per-image families written from their rendered lines, the rest encoded."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["exposition"]


class _Families(Collector):
    """Already collected families, handed to the library's encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The body and content type of ``GET /metrics`` for the request's ``Accept`` header.

    The format is negotiated as the library does (text 0.0.4 by default,
    OpenMetrics when asked for). Per-image families are written from their
    rendered lines; every other family goes through the library's encoder,
    which ends an OpenMetrics body with ``# EOF``, so it comes last.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    # One growing buffer rather than parts joined at the end: at 50,000
    # watches the body is ~40 MB, and a join would hold it twice.
    body = io.BytesIO()
    others: list[Metric] = []
    for family in registry.collect():
        if isinstance(family, _RenderedFamily):
            family.write(body, openmetrics)
        else:
            others.append(family)
    body.write(encoder(_Families(others)))
    return body.getvalue(), content_type


@dataclass(frozen=True, slots=True)
class _FamilySpec:
    """One per-image family: its OpenMetrics name, type and help."""

    name: str
    type: str
    documentation: str

    def header(self, openmetrics: bool) -> str:
        # Text 0.0.4 names a counter family by its sample name; OpenMetrics without _total.
        shown = self.name if openmetrics or self.type != "counter" else self.name + "_total"
        return f"# HELP {shown} {self.documentation}\n# TYPE {shown} {self.type}\n"


class _RenderedFamily(Metric):
    """A per-image family whose samples are already exposition lines.

    ``exposition`` writes ``lines`` as they are: at 50,000 watches the library's
    path (a ``Sample`` and a label dict per series, then formatting each one)
    took seconds and hundreds of MB per scrape. ``samples`` parses the lines on
    first use, so ``registry.collect()``, ``get_sample_value()`` and the
    library's encoders still see the same series.
    """

    def __init__(self, spec: _FamilySpec, lines: str) -> None:
        self.lines = lines
        self._parsed: list[Sample] | None = None
        super().__init__(spec.name, spec.documentation, spec.type)
        self.spec = spec

    @property
    def samples(self) -> list[Sample]:
        if self._parsed is None:
            text = self.spec.header(openmetrics=False) + self.lines
            self._parsed = [
                sample
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            ]
        return self._parsed

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ assigns an empty list; anything else replaces the lines.
        if value:
            self._parsed = list(value)

    def write(self, out: io.BytesIO, openmetrics: bool) -> None:
        out.write(self.spec.header(openmetrics).encode())
        out.write(self.lines.encode())


def _escape(value: str) -> str:
    """A label value as the exposition formats (text 0.0.4 and OpenMetrics) quote it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value
