"""monitor.logs: what the service logs per check and per event, at which level."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.domain import CheckResult, Reason, Status
from monitor.events import evaluate
from monitor.logs import CheckLog, setup_logging
from monitor.records import TagState
from monitor.reference import parse_reference

REF = parse_reference("registry.example.com/team/api:v2")
KEY = str(REF)
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def result(status: Status, n: int, **kwargs: object) -> CheckResult:
    return CheckResult(REF, status, T0 + timedelta(minutes=n), duration_ms=12.3, **kwargs)  # type: ignore[arg-type]


PRESENT_A = {"digest": A}
PRESENT_B = {"digest": B}
MISSING = {"detail": "manifest unknown", "http_status": 404}
REFUSED = {"reason": Reason.UNREACHABLE, "detail": "connection refused"}


def run(
    checks: list[tuple[Status, dict[str, object]]], caplog: pytest.LogCaptureFixture
) -> list[tuple[int, str]]:
    journal = CheckLog()
    state: TagState | None = None
    with caplog.at_level(logging.DEBUG, logger="regmon.checks"):
        for n, (status, fields) in enumerate(checks):
            checked = result(status, n, **fields)
            evaluation = evaluate(state, checked, missing_after=2, failing_after=3)
            journal.record(KEY, state, checked, evaluation, failing_after=3)
            state = evaluation.state
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]


def test_each_event_at_its_level_naming_what_changed(caplog: pytest.LogCaptureFixture) -> None:
    P, M, E = Status.PRESENT, Status.MISSING, Status.ERROR
    lines = run(
        [
            (P, PRESENT_A),
            (P, PRESENT_B),
            (M, MISSING),
            (M, MISSING),
            (P, PRESENT_B),
            (E, REFUSED),
            (E, REFUSED),
            (E, REFUSED),
            (E, REFUSED),
            (P, PRESENT_B),
        ],
        caplog,
    )
    W, INFO = logging.WARNING, logging.INFO
    assert lines == [
        (W, f"tag.changed {KEY}: {A} -> {B}"),
        (W, f"tag.missing {KEY}: missing manifest unknown (was present at {B})"),
        (INFO, f"tag.restored {KEY}: present again at {B} (same digest as before)"),
        (
            W,
            f"check {KEY} failed: unreachable: connection refused; "
            "check.failing after 3 consecutive errors",
        ),
        (W, f"check.failing {KEY}: 3 consecutive errors, last unreachable: connection refused"),
        (INFO, f"check.recovered {KEY}: present {B} after 4 failed checks"),
    ]


def test_one_debug_line_per_check(caplog: pytest.LogCaptureFixture) -> None:
    run([(Status.PRESENT, PRESENT_A), (Status.ERROR, REFUSED), (Status.MISSING, MISSING)], caplog)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == [
        f"check {KEY}: present {A} (12 ms)",
        f"check {KEY}: error unreachable: connection refused (12 ms)",
        f"check {KEY}: missing manifest unknown (12 ms)",
    ]


def test_the_first_error_of_every_streak_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    E, P = Status.ERROR, Status.PRESENT
    lines = run([(E, REFUSED), (E, REFUSED), (P, PRESENT_A), (E, REFUSED)], caplog)
    first = (
        logging.WARNING,
        f"check {KEY} failed: unreachable: connection refused; "
        "check.failing after 3 consecutive errors",
    )
    assert lines == [first, first]


def test_a_restart_warns_again_about_a_watch_still_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = TagState(image=KEY, status=Status.ERROR, consecutive_errors=1, last_checked=T0)
    checked = result(Status.ERROR, 1, **REFUSED)
    evaluation = evaluate(stored, checked, missing_after=2, failing_after=3)
    with caplog.at_level(logging.DEBUG, logger="regmon.checks"):
        CheckLog().record(KEY, stored, checked, evaluation, failing_after=3)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]


def test_json_lines_carry_the_event_fields(caplog: pytest.LogCaptureFixture) -> None:
    from monitor.logs import JsonFormatter

    run([(Status.PRESENT, PRESENT_A), (Status.PRESENT, PRESENT_B)], caplog)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["logger"] == "regmon.checks"
    assert (doc["event"], doc["image"], doc["previous_digest"], doc["current_digest"]) == (
        "tag.changed",
        KEY,
        A,
        B,
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    names = [
        "regmon", "monitor", "apscheduler", "alembic", "asyncio", "aiohttp", "httpx", "httpcore",
        "sqlalchemy", "uvicorn", "uvicorn.error", "uvicorn.access",
    ]  # fmt: skip
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names})
    apprise = logging.getLogger("apprise")
    saved_apprise = (apprise.propagate, apprise.handlers[:])
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)
    apprise.propagate, apprise.handlers[:] = saved_apprise


@pytest.mark.usefixtures("restore_logging")
def test_debug_is_regmon_s_own_libraries_stay_at_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("debug", "text")
    logging.getLogger("regmon.checks").debug("ours")
    logging.getLogger("monitor.api").debug("ours too")
    for name in ("apscheduler.scheduler", "alembic.runtime.migration", "asyncio", "aiohttp.client"):
        logging.getLogger(name).debug("noise")
        logging.getLogger(name).info("noise")
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.slack.com/services/T/B/X")
    logging.getLogger("asyncio").warning("worth seeing")
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "DEBUG   regmon.checks: ours",
        "DEBUG   monitor.api: ours too",
        "WARNING asyncio: worth seeing",
    ]


@pytest.mark.usefixtures("restore_logging")
def test_json_is_one_object_per_line_with_the_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("regmon.service").exception("store down")
    logging.getLogger("regmon.service").debug("not at info")
    (line,) = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert sorted(doc) == ["exception", "level", "logger", "message", "time"]
    assert (doc["level"], doc["logger"], doc["message"]) == (
        "error",
        "regmon.service",
        "store down",
    )
    assert doc["exception"].startswith("Traceback (most recent call last):\n")
    assert doc["exception"].endswith("\nValueError: boom")
    assert datetime.fromisoformat(doc["time"]).utcoffset() == timedelta(0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", doc["time"])


@pytest.mark.usefixtures("restore_logging")
def test_at_info_uvicorn_logs_only_errors_and_apprise_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "text")
    setup_logging("info", "text")  # a reload sets it up again: still one handler each
    logging.getLogger("regmon.service").info("started")
    logging.getLogger("regmon.service").debug("hidden")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /healthz HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").error("cannot bind")
    logging.getLogger("apprise").error("Failed to send to ntfy topic topicSecret")
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["INFO    regmon.service: started", "ERROR   uvicorn.error: cannot bind"]
    apprise = logging.getLogger("apprise")
    assert apprise.propagate is False
    assert [type(h) for h in apprise.handlers] == [logging.NullHandler]
