"""The tables are SQLAlchemy Core: the service, the CLI and the API never import the ORM.

``sqlalchemy.orm`` adds ~6 MiB and ~40 modules to a process that only runs Core
statements; Alembic still imports it when it migrates, which these probes do not.
"""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import Engine

# The service's start on a database at head, then one of each kind of read and write.
STORE = """
import sys
from datetime import UTC, datetime, timedelta

import monitor.service
from monitor.domain import Status
from monitor.records import Evaluation, Event, EventType, TagState
from monitor.store.engine import check_schema, make_engine, upgrade
from monitor.store.outbox import claim_due_deliveries, delivery_states, finish_delivery
from monitor.store.repository import (
    Record, history_for, list_events, load_registry_states, load_versioned_states,
    prune, record_evaluations,
)

now = datetime.now(UTC)
image = "r.example/team/app:1"
engine = make_engine(sys.argv[1])
upgrade(engine)
check_schema(engine)
load_versioned_states(engine)
load_registry_states(engine)
event = Event(id="01JD9Z6K3M2Y8T0QX4V5R7N1A0", type=EventType.TAG_MISSING, occurred_at=now,
              image=image)
state = TagState(image=image, status=Status.MISSING, decided_status=Status.MISSING)
evaluation = Evaluation(state=state, events=(event,), changed=True)
record = Record(evaluation, ({"id": event.id},), (("ops",),), expected=0, version=1)
assert len(record_evaluations(engine, [record], now=now).seqs) == 1
(claimed,) = claim_due_deliveries(engine, now, 10, timedelta(minutes=1))
assert finish_delivery(engine, claimed, attempted_at=now, status="delivered")
assert len(history_for(engine, image)) == 1 and len(list_events(engine)) == 1
assert delivery_states(engine, [event.id])[event.id][0].status == "delivered"
prune(engine, now - timedelta(days=1))
engine.dispose()
print("sqlalchemy.orm" in sys.modules)
"""

# Every module of the package: the CLI's commands, the API, the service, the store.
EVERY_MODULE = """
import importlib, pkgutil, sys
import monitor

for module in pkgutil.walk_packages(monitor.__path__, "monitor."):
    if not module.name.endswith(".__main__"):  # that one runs the CLI
        importlib.import_module(module.name)
print("sqlalchemy.orm" in sys.modules)
"""


def probe(source: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", source, *args], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_service_on_a_store_at_head_does_not_import_the_orm(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    assert probe(STORE, url) == "False\n"


def test_no_module_of_regmon_imports_the_orm() -> None:
    assert probe(EVERY_MODULE) == "False\n"
