"""Output formats of `regmon check` on hand-made results: escaping, errors, argument-only refs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from monitor.domain import CheckResult, Reason, Status
from monitor.reference import parse_reference
from monitor.report import (
    Checked,
    exit_code,
    github_escape_data,
    github_escape_property,
    render,
)
from monitor.sources import FoundImage

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("plain", "plain", "plain"),
        ("100% sure", "100%25 sure", "100%25 sure"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("dir,x/a:b.yaml", "dir,x/a:b.yaml", "dir%2Cx/a%3Ab.yaml"),
        ("%3A", "%253A", "%253A"),  # escaped once, so GitHub decodes it to the original
    ],
)
def test_github_escaping(text: str, data: str, prop: str) -> None:
    assert github_escape_data(text) == data
    assert github_escape_property(text) == prop


def _result(ref: str, status: Status, **kw: object) -> CheckResult:
    return CheckResult(parse_reference(ref), status, NOW, **kw)  # type: ignore[arg-type]


ITEMS = [
    Checked(
        parse_reference("reg.test/a:1"),
        (FoundImage("reg.test/a:1", "odd,dir/deploy:x.yaml", 7, "Pod", "a", "ns", "app"),),
    ),
    Checked(parse_reference("reg.test/b:1")),
    Checked(
        parse_reference("reg.test/c:1"),
        (FoundImage("reg.test/c:1", "<stdin>", 3, "service", "c"),),
    ),
]
RESULTS = [
    _result("reg.test/a:1", Status.ERROR, reason=Reason.TIMEOUT, detail="no answer\nwithin 10s"),
    _result("reg.test/b:1", Status.MISSING, detail="manifest unknown"),
    _result("reg.test/c:1", Status.PRESENT, digest="sha256:" + "c" * 64),
]


def test_github_annotations_for_errors_arguments_and_stdin() -> None:
    out, errors = render("github", ITEMS, RESULTS, require_digest=True)
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert annotations == [
        "::error file=odd%2Cdir/deploy%3Ax.yaml,line=7,title=image not checked::reg.test/a:1 could"
        " not be checked: timeout (no answer%0Awithin 10s) — Pod/ns/a container app"
        " (odd,dir/deploy:x.yaml:7)",
        "::error title=image missing::reg.test/b:1 is missing: manifest unknown",
        "::error title=image not pinned::reg.test/c:1 is not pinned by digest; pin it as"
        f" reg.test/c:1@sha256:{'c' * 64} — service/c (<stdin>:3)",
    ]
    assert errors == ["regmon: reg.test/a:1: no answer\nwithin 10s"]
    assert exit_code(RESULTS, require_digest=True) == 3


def test_junit_error_and_failure_elements(tmp_path: Path) -> None:
    out, _ = render("junit", ITEMS, RESULTS, require_digest=True)
    path = tmp_path / "report.xml"
    path.write_text(out)
    (suite,) = list(JUnitXml.fromfile(str(path)))
    assert (suite.tests, suite.failures, suite.errors) == (3, 2, 1)
    cases = {case.name: case for case in suite}
    (error,) = cases["reg.test/a:1"].result
    assert isinstance(error, Error) and error.type == "timeout"
    assert cases["reg.test/a:1"].classname == "odd,dir/deploy:x.yaml"
    (missing,) = cases["reg.test/b:1"].result
    assert isinstance(missing, Failure) and missing.type == "missing"
    assert cases["reg.test/b:1"].classname == "regmon.check"
    (unpinned,) = cases["reg.test/c:1"].result
    assert isinstance(unpinned, Failure) and unpinned.type == "not pinned"


def test_require_digest_alone_is_exit_1() -> None:
    present = [RESULTS[2]]
    assert exit_code(present) == 0
    assert exit_code(present, require_digest=True) == 1
    out, _ = render("text", ITEMS[2:], present, require_digest=True)
    assert out == f"present  reg.test/c:1  sha256:{'c' * 64}  not pinned  <stdin>:3\n"
