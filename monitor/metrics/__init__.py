"""Prometheus metrics (SPEC §7) on an injected ``CollectorRegistry``.

instruments.py  ``Metrics``: the service-wide instruments, updated as work happens
state.py        the scrape-time collector of per-image families and the webhook backlog
exposition.py   ``GET /metrics``: pre-rendered families as they are, the rest by the library

Two halves:

* ``Metrics`` owns the service-wide instruments the service updates as work
  happens (checks, registry requests, webhook deliveries).
* ``_StateCollector`` is registered beside them and builds the per-image
  families at scrape time from ``ServiceView.watches()``/``states()``, plus
  the webhook backlog from one grouped query on the ``deliveries`` table. The
  state is read on every scrape, so nothing can drift and a restart resets
  nothing that is persisted (``digest_changes`` lives in ``TagState``).
  The per-image families (8 series per watch, ~400,000 at 50,000 watches)
  are rendered straight to exposition lines, and ``exposition()`` (what
  ``GET /metrics`` serves) writes those lines as they are; everything else
  goes through the library's encoders.

Labels follow SPEC §7: ``image`` is the watch key; no label is named
``namespace``/``pod``/``job``/``instance``; a digest only ever appears in
``regmon_image_digest_info``; no error text, timestamp or version in a label
(``regmon_build_info{version}`` is the one sanctioned exception, by SPEC).
"""

from monitor.metrics.exposition import exposition
from monitor.metrics.instruments import (
    CHECK_DURATION_BUCKETS,
    DELIVERY_OUTCOMES,
    METRIC_NAMES,
    Metrics,
)

__all__ = ["CHECK_DURATION_BUCKETS", "DELIVERY_OUTCOMES", "METRIC_NAMES", "Metrics", "exposition"]
