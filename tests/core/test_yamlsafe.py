"""The bounded YAML loader: every hostile document is one line, in bounded time and memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.errors import ConfigError, InputError
from monitor.yamlsafe import (
    MAX_DEPTH,
    MAX_NODES,
    _build,
    _load_composed,
    _Slow,
    compose_documents,
    load_document,
    read_text,
    to_data,
)

BILLION_LAUGHS = textwrap.dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # libyaml's scanner looks ahead in flow context and stops at its own limit first
        (
            "[" * 10_000 + "]" * 10_000,
            "x.yaml: line 1, column 1001: invalid YAML: while increasing flow level; exceeded",
        ),
        ("{a: " * 5_000 + "1" + "}" * 5_000, "x.yaml: line 1, column 401: nested deeper than 100"),
        (BILLION_LAUGHS, "x.yaml: line 7, column 14: more than 2,000,000 values once aliases"),
        ("a: 1\nb: \x00\n", "x.yaml: line 2, column 4: invalid YAML: unacceptable character"),
        ("a: [1, 2\n", "x.yaml: line 2, column 1: invalid YAML: while parsing a flow sequence"),
        ("a: 1\na: 2\n", "x.yaml: line 2, column 1: invalid YAML: duplicate key 'a'"),
        ("a: *nowhere\n", "x.yaml: line 1, column 4: invalid YAML: found undefined alias"),
        ("a: &a [1, {b: *a}]\n", "x.yaml: line 1, column 15: an alias inside the collection it"),
        ("a: " + "9" * 5000, "x.yaml: invalid YAML: Exceeds the limit (4300 digits) for integer"),
    ],
)
def test_hostile_documents_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_document(text, "x.yaml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "watch:\n  - image: nginx:1.25\n  - {image: 'redis:7', interval: 5m, jitter: 0%}\n",
        "a: [1, -2, 0x1f, 0o17, 1_000, 2.5, .inf, -.Inf, 1e3, 0b101, 012, 190:20:30]\n",
        "a: yes\nb: No\nc: off\nd: ~\ne: null\nf: ''\ng:\nh: \"\\x24{X} \\u00e9\"\n",
        "a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: 2001-12-14 21:59:43.10\n",
        "a: |\n  literal\n  text\nb: >\n  folded\n  text\n",
        "a: &x [1, {b: c}]\nb: *x\nc: [*x, *x]\n",
        "a: &k key\n*k : 1\n",
        "1: a\n'1': b\n1.5: c\nfalse: d\n~: e\n",
        "--- [a, b]\n...\n",
        "- " * MAX_DEPTH + "x\n",
    ],
)
def test_the_one_pass_builds_what_the_long_way_builds(text: str) -> None:
    built = _build(text, MAX_DEPTH, MAX_NODES)
    assert repr(built) == repr(_load_composed(text, "x", InputError, MAX_DEPTH, MAX_NODES))


@pytest.mark.parametrize(
    "text",
    [
        "a: !!set {x}\n",
        "a: !!str 1\n",
        "a: ! 1\n",
        "a: !!omap [b: 1]\n",
        "base: &b {x: 1}\nd: {<<: *b, y: 2}\n",
        "a: =\n",
        "a: 1\na: 2\n",
        "1: a\ntrue: b\n",
        "? [1]\n: 2\n",
        "a: &x 1\nb: &x 2\n",
        "a: *nowhere\n",
        "a: &a [*a]\n",
        "- 1\n---\n- 2\n",
        "a: " + "9" * 5000,
        "a: [1, 2\n",
        "- " * (MAX_DEPTH + 1) + "x\n",
        BILLION_LAUGHS,
    ],
)
def test_the_one_pass_leaves_tags_merges_and_every_error_to_the_long_way(text: str) -> None:
    # The long way makes each of these messages (or a tag's or merge's value) as before.
    with pytest.raises(_Slow):
        _build(text, MAX_DEPTH, MAX_NODES)


def test_the_error_class_is_the_callers() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml: line 1, column 4: invalid YAML"):
        load_document("a: *b", "c.yaml", error=ConfigError)


def test_aliases_within_the_bound_are_expanded() -> None:
    text = "base: &base {image: nginx, restart: always}\nweb: {<<: *base, ports: [80]}\n"
    assert load_document(text, "compose.yaml") == {
        "base": {"image": "nginx", "restart": "always"},
        "web": {"image": "nginx", "restart": "always", "ports": [80]},
    }


def test_the_expansion_bound_counts_whole_subtrees() -> None:
    # the mapping and its 3 keys, a: 1 + 10, b: 1 + 10 x 11, c: 1 + 2 x 111 = 349 values
    text = "a: &a [1,2,3,4,5,6,7,8,9,10]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b]\n"
    load_document(text, "x", max_nodes=349)
    with pytest.raises(InputError, match="line 3, column 8: more than 348 values"):
        load_document(text, "x", max_nodes=348)


def test_compose_documents_keeps_lines_and_drops_empty_documents() -> None:
    stream = "# rendered\n---\n---\nkind: Pod\nspec:\n  containers:\n  - image: nginx\n---\n# end\n"
    documents = compose_documents(stream, "chart.yaml")
    assert len(documents) == 1
    spec = dict((k.value, v) for k, v in documents[0].value)["spec"]
    container = spec.value[0][1].value[0]
    image_node = dict((k.value, v) for k, v in container.value)["image"]
    assert (image_node.value, image_node.start_mark.line + 1) == ("nginx", 7)
    assert to_data(documents[0]) == {"kind": "Pod", "spec": {"containers": [{"image": "nginx"}]}}


def test_compose_documents_has_the_same_bounds() -> None:
    with pytest.raises(InputError, match="nested deeper than 100 levels"):
        compose_documents("a: 1\n---\n" + "[" * 200, "s.yaml")


def test_read_text_refuses_devices_and_large_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a" * 2000)
    with pytest.raises(InputError, match=r"big.yaml: larger than 1000 bytes, refused$"):
        read_text(big, max_bytes=1000)
    with pytest.raises(InputError, match=r"^/dev/zero: not a regular file$"):
        read_text("/dev/zero", max_bytes=1000)
    with pytest.raises(InputError, match=r"nope.yaml: no such file$"):
        read_text(tmp_path / "nope.yaml", max_bytes=1000)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: \xe9\n")
    with pytest.raises(InputError, match=r"latin.yaml: line 2: not UTF-8 text$"):
        read_text(latin, max_bytes=1000)


def test_billion_laughs_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    # In a child process so the peak is its own: without the bound, walking the
    # expanded data runs for minutes into a MemoryError. A forked child's peak RSS
    # starts as its parent's (pytest's), so the child resets it first (clear_refs 5).
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    code = (
        "from pathlib import Path\n"
        "Path('/proc/self/clear_refs').write_text('5')\n"
        "from monitor.yamlsafe import load_document\n"
        "from monitor.errors import InputError\n"
        "try:\n"
        f"    load_document(open({str(path)!r}).read(), 'bomb.yaml')\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    message, peak_kib = done.stdout.splitlines()
    assert message.startswith("bomb.yaml: line 7, column 14: more than 2,000,000 values")
    assert int(peak_kib) < 150 * 1024
