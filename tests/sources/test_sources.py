"""The deployment-file extractors, as tables: every image each fixture uses, with its place."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from support.paths import DATA

from monitor.errors import InputError
from monitor.interpolation import SubstitutionError, substitute
from monitor.report import gather
from monitor.sources.files import file_kind, images_in_paths, images_in_text

DEPLOY = DATA / "deploy"
H = "localhost:5000"
PINNED = "sha256:3c42b3f0ca16e76a50a84b91fcc9b298f369871ed0ae90103a8cf91913a22360"


def table(paths: list[str], environ: dict[str, str] | None = None) -> list[tuple]:
    return [
        (f.where, f.image, f.object, f.container) for f in images_in_paths(paths, environ or {})
    ]


@pytest.fixture(autouse=True)
def _in_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DEPLOY)


# --- compose -------------------------------------------------------------------------------


def test_compose_project_with_env_file_and_profiles() -> None:
    assert table(["compose/compose.yaml"]) == [
        ("compose/compose.yaml:11", f"{H}/shop/api:2.1.0", "service/api", None),  # merged anchor
        ("compose/compose.yaml:23", f"{H}/shop/web:1.4", "service/web", None),  # :- default
        ("compose/compose.yaml:31", f"{H}/shop/worker:2.1.0", "service/worker", None),
        ("compose/compose.yaml:35", f"{H}/library/postgres:16@{PINNED}", "service/db", None),
        ("compose/compose.yaml:41", f"{H}/tools/debug:latest", "service/debug", None),  # profile
        ("compose/compose.yaml:46", "localhost:5001/acme/billing:3.0", "service/billing", None),
    ]


def test_compose_environment_wins_over_env_file() -> None:
    found = table(["compose/compose.yaml"], {"REGISTRY": "reg.example", "WEB_TAG": "2.0",
                                               "DEBUG_TAG": ""})  # fmt: skip
    assert [image for _, image, _, _ in found] == [
        "reg.example/shop/api:2.1.0",
        "reg.example/shop/web:2.0",
        "reg.example/shop/worker:2.1.0",
        f"reg.example/library/postgres:16@{PINNED}",
        "reg.example/tools/debug:",  # ${VAR-default}: set but empty stays empty
        "localhost:5001/acme/billing:3.0",
    ]


def test_compose_required_variable_is_an_error_naming_the_line(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  app:\n    image: ${REG:?set REG first}/app:1\n")
    with pytest.raises(InputError) as caught:
        images_in_paths([str(compose)], {})
    assert str(caught.value) == (
        f"{compose}: line 3: services.app.image: required variable REG is missing a value: "
        "set REG first"
    )


def test_compose_unset_variable_is_named_when_the_reference_breaks(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  app:\n    image: team/app:${TAG}\n")
    with pytest.raises(InputError) as caught:
        gather([], images_in_paths([str(compose)], {}))
    assert str(caught.value).startswith(f"{compose}: line 3: invalid image reference 'team/app:'")
    assert str(caught.value).endswith("(variable TAG is not set)")


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A/b", {"A": "x"}, "x/b"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:+alt}", {"A": "x"}, "alt"),
        ("${A:+alt}", {"A": ""}, ""),
        ("${A+alt}", {"A": ""}, "alt"),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("$$A", {"A": "x"}, "$A"),
        ("a$${A}b", {}, "a${A}b"),
        ("${A}", {}, ""),
    ],
)
def test_compose_interpolation(text: str, variables: dict[str, str], expected: str) -> None:
    assert substitute(text, variables, dialect="compose").value == expected


@pytest.mark.parametrize("text", ["a$ b", "${}", "${A", "${A:x}", "${1A}"])
def test_compose_interpolation_errors(text: str) -> None:
    with pytest.raises(SubstitutionError):
        substitute(text, {}, dialect="compose")


def test_dockerfile_substitution_escapes_and_keeps_a_lone_dollar() -> None:
    assert substitute("\\$A-$-${A}", {"A": "x"}, dialect="dockerfile").value == "$A-$-x"
    assert substitute("`$A", {"A": "x"}, dialect="dockerfile", escape="`").value == "$A"


# --- Kubernetes ---------------------------------------------------------------------------


def test_helm_rendered_stream_with_comments_and_empty_documents() -> None:
    assert table(["k8s/helm-rendered.yaml"]) == [
        ("k8s/helm-rendered.yaml:50", f"{H}/shop/api:2.1.0", "Deployment/shop/shop-api", "migrate"),
        ("k8s/helm-rendered.yaml:54", f"{H}/shop/api:2.1.0", "Deployment/shop/shop-api", "api"),
        ("k8s/helm-rendered.yaml:60", f"{H}/proxy/envoy:v1.29.1", "Deployment/shop/shop-api",
         "envoy"),
        ("k8s/helm-rendered.yaml:82", f"{H}/library/redis:7.2", "StatefulSet/shop/shop-cache",
         "redis"),
    ]  # fmt: skip


def test_kustomize_list() -> None:
    assert table(["k8s/kustomize-list.yaml"]) == [
        ("k8s/kustomize-list.yaml:27", f"{H}/shop/web:1.4", "Deployment/shop/shop-web", "web"),
        ("k8s/kustomize-list.yaml:44", f"{H}/ops/node-agent:0.9", "DaemonSet/ops/node-agent",
         "agent"),
    ]  # fmt: skip


def test_kubectl_get_json_list_with_ephemeral_containers() -> None:
    pod = "Pod/shop/shop-api-6d9f7c8b5-k2x9p"
    assert table(["k8s/cluster.json"]) == [
        ("k8s/cluster.json:47", f"{H}/shop/api:2.1.0", "Deployment/shop/shop-api", "api"),
        (
            "k8s/cluster.json:122",
            f"{H}/shop/api:2.1.0",
            "ReplicaSet/shop/shop-api-6d9f7c8b5",
            "api",
        ),
        ("k8s/cluster.json:168", f"{H}/shop/api:2.1.0", pod, "api"),
        ("k8s/cluster.json:186", f"{H}/tools/busybox:1.36", pod, "debugger-x7wq2"),
    ]  # status.containerStatuses[].image (line 207) is what runs, not what is asked for


def test_cronjob_and_job_templates_with_init_containers() -> None:
    assert table(["k8s/jobs.yaml"]) == [
        ("k8s/jobs.yaml:17", f"{H}/tools/wait-for:1.2", "CronJob/shop/nightly-report",
         "wait-for-db"),
        ("k8s/jobs.yaml:21", f"{H}/shop/report:2.1.0", "CronJob/shop/nightly-report", "report"),
        ("k8s/jobs.yaml:36", f"{H}/tools/wait-for:1.2", "Job/shop/db-migrate-2-1-0",
         "wait-for-db"),
        ("k8s/jobs.yaml:39", f"{H}/shop/migrate:2.1.0", "Job/shop/db-migrate-2-1-0", "migrate"),
    ]  # fmt: skip


def test_kubectl_get_all_kinds_yaml() -> None:
    assert table(["../kubectl-get-all.yaml"]) == [
        ("../kubectl-get-all.yaml:31", f"{H}/shop/web:1.4", "Deployment/shop/shop-web", "web"),
        ("../kubectl-get-all.yaml:69", f"{H}/library/redis:7.2", "StatefulSet/shop/shop-cache",
         "redis"),
        ("../kubectl-get-all.yaml:109", f"{H}/ops/node-agent:0.8", "DaemonSet/ops/node-agent",
         "agent"),
        ("../kubectl-get-all.yaml:148", f"{H}/shop/report:2.1.0", "CronJob/shop/nightly-report",
         "report"),
        ("../kubectl-get-all.yaml:156", f"{H}/tools/wait-for:1.2", "CronJob/shop/nightly-report",
         "wait-for-db"),
        ("../kubectl-get-all.yaml:200", f"{H}/shop/report:2.1.0",
         "Job/shop/nightly-report-29410637", "report"),
        ("../kubectl-get-all.yaml:208", f"{H}/tools/wait-for:1.2",
         "Job/shop/nightly-report-29410637", "wait-for-db"),
        ("../kubectl-get-all.yaml:235", f"{H}/ops/node-agent:0.8", "Pod/ops/node-agent-x8k2d",
         "agent"),
    ]  # fmt: skip


def test_unknown_kinds_and_documents_without_kind_are_skipped() -> None:
    assert table(["k8s/kustomization.yaml", "k8s/values.yaml"]) == []
    crd = "apiVersion: acme.io/v1\nkind: AccessList\nmetadata: {name: a}\nitems: {allow: all}\n"
    assert images_in_text(crd, "crd.yaml", None, ".", {}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: List\nitems: {a: 1}\n", "x.yaml: line 2: List items is not a list"),
        ("kind: Pod\nmetadata: {name: p}\nspec: [1]\n",
         "x.yaml: line 3: Pod/p: the pod spec is not a mapping"),
        ("kind: Job\nmetadata: {name: j, namespace: n}\nspec: {template: {spec:\n"
         "  {containers: {name: c}}}}\n", "x.yaml: line 4: Job/n/j: containers is not a list"),
        ("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: ''}]}\n",
         "x.yaml: line 3: Pod/p container c: image is empty or not a string"),
        ("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: [a]}]}\n",
         "x.yaml: line 3: Pod/p container c: image is empty or not a string"),
    ],
)  # fmt: skip
def test_malformed_pod_templates_name_the_object(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        images_in_text(text, "x.yaml", None, ".", {})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "spec"),
        ("PodTemplate", "template: {spec"),
        ("ReplicationController", "spec: {template: {spec"),
        ("ReplicaSet", "spec: {template: {spec"),
        ("DaemonSet", "spec: {template: {spec"),
        ("StatefulSet", "spec: {template: {spec"),
    ],
)
def test_every_pod_template_kind(kind: str, path: str) -> None:
    closing = "}" * path.count("{")
    text = (
        f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: x}}\n{path}: "
        f"{{containers: [{{name: c, image: 'app:1'}}]}}{closing}\n"
    )
    (found,) = images_in_text(text, "x.yaml", None, ".", {})
    assert (found.image, found.object, found.container, found.line) == (
        "app:1",
        f"{kind}/x",
        "c",
        4,
    )


def test_typed_list_items_take_the_kind_of_the_list() -> None:
    text = (
        '{"kind": "DeploymentList", "apiVersion": "apps/v1", "items": [\n'
        '\t{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"containers": [\n'
        '\t\t{"name": "c", "image": "app:2"}]}}}}]}\n'
    )  # tabs: JSON allows them, YAML does not
    (found,) = images_in_text(text, "-", None, ".", {})
    assert (found.image, found.object, found.line) == ("app:2", "Deployment/a", 3)


# --- Dockerfile ---------------------------------------------------------------------------


def test_multi_stage_dockerfile_with_arg_from() -> None:
    assert table(["docker"]) == [
        ("docker/Dockerfile:6", f"{H}/library/golang:1.22-alpine", "stage/build", None),
        ("docker/Dockerfile:9", f"{H}/tools/busybox:1.36", "stage/build", None),  # COPY --from
        ("docker/Dockerfile:21", f"{H}/base/distroless-static:nonroot", "stage/3", None),
        ("docker/worker.dockerfile:3", f"{H}/library/python:3.12-slim", "stage/deps", None),
    ]  # `FROM build`, `FROM scratch`, `FROM deps`, COPY --from=<stage>, heredoc text: none


@pytest.mark.parametrize(
    ("text", "images"),
    [
        ("FROM alpine:3.20", ["alpine:3.20"]),
        ("from Alpine AS Base\nFROM base\nFROM BASE", ["Alpine"]),
        ("ARG V=1\nARG IMG=app:$V\nFROM ${IMG}", ["app:1"]),
        ("ARG V\nFROM app:${V:-2}", ["app:2"]),
        ("FROM a AS x\nCOPY --from=x /a /b\nCOPY --from=0 /a /b\nCOPY --from=tool:1 /a /b",
         ["a", "tool:1"]),
        ("FROM a\nRUN --mount=type=bind,from=cache:3,target=/c true", ["a", "cache:3"]),
        ("# escape=`\nFROM a `\n  AS b\nFROM b", ["a"]),
        ("FROM --platform=linux/arm64 a", ["a"]),
        ('FROM "quoted:1"', ["quoted:1"]),
    ],
)  # fmt: skip
def test_dockerfile_images(text: str, images: list[str]) -> None:
    found = images_in_text(text, "Dockerfile", "dockerfile", ".", {})
    assert [f.image for f in found] == images


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ARG BASE\nFROM $BASE",
         "Dockerfile: line 2: FROM $BASE: the base image is empty (ARG BASE has no default)"),
        ("FROM a\nFROMM b", "Dockerfile: line 2: unknown instruction FROMM"),
        ("FROM", "Dockerfile: line 1: FROM names no image"),
        ("FROM a b c d", "Dockerfile: line 1: FROM takes an image and an optional AS name"),
        ("", "Dockerfile: file with no instructions"),
    ],
)  # fmt: skip
def test_dockerfile_errors(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        images_in_text(text, "Dockerfile", "dockerfile", ".", {})
    assert str(caught.value).startswith(message)


# --- files, folders, detection, limits ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Dockerfile", "dockerfile"),
        ("Dockerfile.prod", "dockerfile"),
        ("api.dockerfile", "dockerfile"),
        ("Containerfile", "dockerfile"),
        ("Dockerfile.dockerignore", None),
        ("compose.yaml", "compose"),
        ("compose.prod.yml", "compose"),
        ("docker-compose.override.yaml", "compose"),
        ("deploy.yaml", "yaml"),
        ("pods.JSON", "json"),
        ("README.md", None),
    ],
)
def test_file_kind_by_name(name: str, kind: str | None) -> None:
    assert file_kind(name) == kind


def test_folder_walk_skips_hidden_folders_and_other_files(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "compose.yaml").write_text("services: {a: {image: hidden:1}}\n")
    (tmp_path / "notes.txt").write_text("FROM not-a-dockerfile\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Dockerfile").write_text("FROM seen:1\n")
    (tmp_path / "stack.yml").write_text("services:\n  a:\n    image: by-content:1\n")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: shop\nversion: 0.7.2\n")
    (chart / "values.yaml").write_text("image: {repository: shop/api, tag: 2.1.0}\n")
    (chart / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        '  name: {{ include "shop.fullname" . }}\n'
        "  {{- with .Values.labels }}\n  labels:\n    {{- toYaml . | nindent 4 }}\n  {{- end }}\n"
    )  # not YAML until rendered
    (tmp_path / "stack.json").write_text('{"services": {"b": {"image": "json-compose:1"}}}')
    assert [(f.file, f.image) for f in images_in_paths([str(tmp_path)], {})] == [
        (str(tmp_path / "stack.json"), "json-compose:1"),
        (str(tmp_path / "stack.yml"), "by-content:1"),
        (str(tmp_path / "sub" / "Dockerfile"), "seen:1"),
    ]


def test_yaml_flow_mapping_on_stdin_is_yaml_not_json() -> None:
    stdin = io.BytesIO(b"{apiVersion: v1, kind: Pod, metadata: {name: p},\n"
                       b" spec: {containers: [{name: c, image: 'flow:1'}]}}\n")  # fmt: skip
    (found,) = images_in_paths(["-"], {}, stdin)
    assert (found.where, found.image, found.object) == ("<stdin>:2", "flow:1", "Pod/p")


def test_stdin_by_content() -> None:
    stdin = io.BytesIO(b"# a Dockerfile on stdin\nFROM app:1\n")
    (found,) = images_in_paths(["-"], {}, stdin)
    assert (found.where, found.image) == ("<stdin>:2", "app:1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"kind: Pod\n  bad: [indent\n",
            "x.yaml: line 2, column 6: invalid YAML: "
            "mapping values are not allowed in this context",
        ),
        (
            b'{"kind": "Pod",}',
            "x.json: line 1, column 16: invalid JSON: "
            "Expecting property name enclosed in double quotes",
        ),
        (b"kind: Pod\nname: caf\xe9\n", "x.yaml: line 2: not UTF-8 text"),
        (
            b"kind: Pod\n\x00\n",
            "x.yaml: line 2: contains a NUL byte; not a text file",
        ),
        (b"FROM a\n\x00\n", "Dockerfile: line 2: contains a NUL byte; not a text file"),
    ],
)
def test_unparsable_files_name_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    name = message.split(":")[0]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        images_in_paths([str(path)], {})
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_yaml_bomb_is_refused(tmp_path: Path) -> None:
    """Billion laughs as a List: nine aliases of nine aliases … expand to 9**9 items."""
    lines = ['a0: &a0 {kind: Pod, spec: {containers: [{name: c, image: "x:1"}]}}']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "kind: List", "items: *a9"]) + "\n")
    with pytest.raises(InputError) as caught:
        images_in_paths([str(path)], {})
    assert str(caught.value).startswith(f"{path}: line ")
    assert str(caught.value).endswith("values once aliases are expanded, refused")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 500 + "]" * 500)
    with pytest.raises(InputError, match=r"nested deeper than 100 levels, refused"):
        images_in_paths([str(path)], {})


def test_huge_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.sources.files.MAX_FILE_BYTES", 1024)
    path = tmp_path / "big.yaml"
    path.write_text("# filler\n" * 200)
    with pytest.raises(InputError, match=r"big.yaml: larger than"):
        images_in_paths([str(path)], {})


def test_gather_checks_each_reference_once_with_every_place() -> None:
    from monitor.reference import parse_reference

    found = images_in_paths(["."], {})
    items = gather([parse_reference(f"{H}/shop/api:2.1.0"), parse_reference("alpine")], found)
    assert [str(item.reference) for item in items][:3] == [
        f"{H}/shop/api:2.1.0",
        "docker.io/library/alpine:latest",
        f"{H}/shop/web:1.5-rc1",
    ]
    assert len(items) == 18
    api = items[0]
    assert [p.where for p in api.places] == [
        "compose/compose.yaml:11",
        "k8s/cluster.json:47",
        "k8s/cluster.json:122",
        "k8s/cluster.json:168",
        "k8s/helm-rendered.yaml:50",
        "k8s/helm-rendered.yaml:54",
    ]
