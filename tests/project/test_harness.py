"""The harness itself: real registries, the token issuer, pushers and fault servers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from support import registry as registry_module
from support.faults import (
    CountingProxy,
    WireServer,
    bad_request,
    free_port,
    garbage_server,
    hung_server,
    status_server,
)
from support.images import (
    ALL_MANIFEST_TYPES,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImagePusher,
    PushedImage,
    PushedIndex,
    sha256_digest,
)
from support.registry import RegistryServer
from support.token_issuer import SERVICE, TokenIssuer
from support.wait import wait_for

ACCEPT_ALL = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
KINDS = ["oci", "docker", "oci-index", "docker-list"]


def push(pusher: ImagePusher, repo: str, tag: str, kind: str) -> PushedImage | PushedIndex:
    if kind in ("oci", "docker"):
        return pusher.push_image(repo, tag, kind)  # type: ignore[arg-type]
    return pusher.push_index(repo, tag, kind)  # type: ignore[arg-type]


def anonymous_token(issuer: TokenIssuer, *scopes: str) -> str:
    params: list[tuple[str, str | int | float | bool | None]] = [("service", SERVICE)]
    params += [("scope", s) for s in scopes]
    response = httpx.get(issuer.realm, params=params)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **ACCEPT_ALL}


# --- noauth registry and pushers ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_head_with_all_accept_types_returns_pushed_digest(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], kind: str
) -> None:
    repo = unique_repo("harness")
    pushed = push(pusher, repo, "v1", kind)

    head = httpx.head(f"{registry.url}/v2/{repo}/manifests/v1", headers=ACCEPT_ALL)
    get = httpx.get(f"{registry.url}/v2/{repo}/manifests/v1", headers=ACCEPT_ALL)

    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == pushed.digest
    assert head.headers["content-type"] == pushed.media_type
    assert get.content == pushed.body
    assert sha256_digest(get.content) == pushed.digest


def test_index_children_platforms_and_attestation(
    pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("harness")
    index = pusher.push_index(repo, "multi", "oci-index", attestation=True)

    entries = json.loads(index.body)["manifests"]
    platforms = {
        "/".join(filter(None, (e["platform"]["os"], e["platform"]["architecture"],
                               e["platform"].get("variant")))): e
        for e in entries
    }  # fmt: skip
    assert set(platforms) == {"linux/amd64", "linux/arm64", "linux/arm/v7", "unknown/unknown"}
    assert index.children == {
        p: platforms[p]["digest"] for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")
    }
    attestation = platforms["unknown/unknown"]
    assert attestation["digest"] == index.attestation
    assert attestation["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
    for digest in [*index.children.values(), index.attestation]:
        head = pusher.head_manifest(repo, str(digest))
        assert (head.status_code, head.headers["content-type"]) == (200, OCI_MANIFEST)
    assert pusher.head_manifest(repo, "multi").headers["content-type"] == OCI_INDEX


def test_seed_makes_pushes_repeatable_and_no_seed_makes_them_new(
    pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("harness")
    first = pusher.push_image(repo, "a", "docker", seed=7)
    again = pusher.push_image(repo, "b", "docker", seed=7)
    fresh = pusher.push_image(repo, "c", "docker")
    assert first.digest == again.digest != fresh.digest
    assert first.media_type == DOCKER_MANIFEST


def test_delete_tag_removes_manifest(pusher: ImagePusher, unique_repo: Callable[..., str]) -> None:
    repo = unique_repo("harness")
    pushed = pusher.push_image(repo, "gone", "oci")
    pusher.push_image(repo, "kept", "oci")

    assert pusher.delete_tag(repo, "gone") == pushed.digest
    assert pusher.head_manifest(repo, "gone").status_code == 404
    assert pusher.tags(repo) == ["kept"]


def test_skopeo_raw_manifest_hashes_to_pushed_digest(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], tmp_path: Path
) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: install it with `apt-get install -y skopeo`"
    repo = unique_repo("harness")
    pushed = {kind: push(pusher, repo, kind, kind) for kind in KINDS}
    # inspect needs no policy.json; an empty HOME keeps any real auth files out.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    for kind, image in pushed.items():
        result = subprocess.run(
            [skopeo, "inspect", "--raw", "--tls-verify=false",
             f"docker://{registry.host}/{repo}:{kind}"],
            capture_output=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        assert "sha256:" + hashlib.sha256(result.stdout).hexdigest() == image.digest, kind


# --- htpasswd ---------------------------------------------------------------------------------


def test_basic_registry_needs_credentials(
    registry_basic: RegistryServer, basic_pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("harness")
    pushed = basic_pusher.push_image(repo, "v1", "oci")
    url = f"{registry_basic.url}/v2/{repo}/manifests/v1"

    anonymous = httpx.head(url, headers=ACCEPT_ALL)
    wrong = httpx.head(url, headers=ACCEPT_ALL, auth=("ci", "nope"))
    right = httpx.head(url, headers=ACCEPT_ALL, auth=("ci", "s3cret"))

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="regmon-test"'
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert right.headers["docker-content-digest"] == pushed.digest


# --- token auth -------------------------------------------------------------------------------


def test_token_registry_challenge_names_issuer(
    registry_token: RegistryServer, token_issuer: TokenIssuer
) -> None:
    response = httpx.head(f"{registry_token.url}/v2/public/x/manifests/latest")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="{token_issuer.realm}",service="{SERVICE}",scope="repository:public/x:pull"'
    )


def test_anonymous_token_pulls_public_but_not_private(
    registry_token: RegistryServer,
    token_pusher: ImagePusher,
    token_issuer: TokenIssuer,
    unique_repo: Callable[..., str],
) -> None:
    public, private = unique_repo("public"), unique_repo("private")
    pushed_public = token_pusher.push_image(public, "v1", "oci")
    token_pusher.push_image(private, "v1", "oci")
    token_issuer.reset()

    public_token = anonymous_token(token_issuer, f"repository:{public}:pull")
    ok = httpx.head(f"{registry_token.url}/v2/{public}/manifests/v1", headers=bearer(public_token))
    private_token = anonymous_token(token_issuer, f"repository:{private}:pull")
    denied = httpx.head(
        f"{registry_token.url}/v2/{private}/manifests/v1", headers=bearer(private_token)
    )

    assert ok.status_code == 200
    assert ok.headers["docker-content-digest"] == pushed_public.digest
    assert denied.status_code == 401
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert jwt.decode(private_token, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": private, "actions": []}
    ]
    assert [(r.method, r.user, r.status) for r in token_issuer.requests] == [
        ("GET", None, 200),
        ("GET", None, 200),
    ]


def test_ci_token_reads_private_and_missing_tag_is_404(
    registry_token: RegistryServer, token_pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("private")
    pushed = token_pusher.push_image(repo, "v1", "docker")

    found = token_pusher.head_manifest(repo, "v1")
    missing = token_pusher.get_manifest(repo, "nope")

    assert found.status_code == 200
    assert found.headers["docker-content-digest"] == pushed.digest
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_token_claims_and_oauth2_grants(
    registry_token: RegistryServer,
    token_pusher: ImagePusher,
    token_issuer: TokenIssuer,
    unique_repo: Callable[..., str],
) -> None:
    repo = unique_repo("private")
    token_pusher.push_image(repo, "v1", "oci")
    scope = f"repository:{repo}:pull"

    with httpx.Client() as client:
        password = client.post(
            token_issuer.realm,
            data={"grant_type": "password", "username": "ci", "password": "s3cret",
                  "service": SERVICE, "client_id": "regmon", "scope": scope},
        )  # fmt: skip
        refreshed = client.post(
            token_issuer.realm,
            data={"grant_type": "refresh_token", "refresh_token": password.json()["refresh_token"],
                  "service": SERVICE, "client_id": "regmon", "scope": scope},
        )  # fmt: skip
        bad_password = client.post(
            token_issuer.realm,
            data={"grant_type": "password", "username": "ci", "password": "x", "service": SERVICE},
        )
        bad_basic = client.get(token_issuer.realm, params={"service": SERVICE}, auth=("ci", "x"))
        offline = client.get(
            token_issuer.realm,
            params={"service": SERVICE, "scope": scope, "offline_token": "true"},
            auth=("ci", "s3cret"),
        )

    assert (password.status_code, refreshed.status_code, offline.status_code) == (200, 200, 200)
    assert "refresh_token" in offline.json()
    assert (bad_password.status_code, bad_basic.status_code) == (401, 401)
    assert bad_basic.json()["errors"][0]["code"] == "UNAUTHORIZED"
    body = password.json()
    assert body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(
        body["access_token"], token_issuer.public_key, algorithms=["RS256"], audience=SERVICE
    )
    assert header["alg"] == "RS256" and len(header["x5c"]) == 1
    assert claims["iss"] == "regmon-test-issuer" and claims["sub"] == "ci"
    assert claims["aud"] == SERVICE  # a string: registry 2.8 rejects a list
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull"]}]
    for token in (body["access_token"], refreshed.json()["token"]):
        response = httpx.head(f"{registry_token.url}/v2/{repo}/manifests/v1", headers=bearer(token))
        assert response.status_code == 200


def test_scope_param_with_spaces_is_split(token_issuer: TokenIssuer) -> None:
    token = anonymous_token(token_issuer, "repository:public/a:pull repository:public/b:pull,push")
    access = jwt.decode(token, options={"verify_signature": False})["access"]
    assert access == [
        {"type": "repository", "name": "public/a", "actions": ["pull"]},
        {"type": "repository", "name": "public/b", "actions": ["pull"]},
    ]


# --- lifecycle --------------------------------------------------------------------------------


def test_stop_and_start_keeps_port_and_content(
    registry_factory: Callable[..., RegistryServer], unique_repo: Callable[..., str]
) -> None:
    server = registry_factory()
    repo = unique_repo("harness")
    with ImagePusher(server.url) as pusher:
        pushed = pusher.push_image(repo, "v1", "oci")
        host = server.host

        server.stop()
        with pytest.raises(httpx.ConnectError):
            pusher.head_manifest(repo, "v1")
        server.start()

        assert server.host == host
        head = pusher.head_manifest(repo, "v1")
        assert head.headers["docker-content-digest"] == pushed.digest


def test_token_registry_from_factory(
    registry_factory: Callable[..., RegistryServer], unique_repo: Callable[..., str]
) -> None:
    server = registry_factory("token")
    with ImagePusher(server.url, auth=("ci", "s3cret")) as pusher:
        pushed = pusher.push_index(unique_repo("private"), "v1", "docker-list")
    assert len(pushed.children) == 3


def test_missing_registry_binary_fails_not_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "REGISTRY_BINARY", tmp_path / "docker-registry")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y docker-registry"):
        RegistryServer(tmp_path / "reg").start()


# --- fault servers ----------------------------------------------------------------------------


def test_status_server_answers_everything_with_its_status() -> None:
    with status_server(429, {"Retry-After": "1"}, b"slow down") as server:
        ping = httpx.get(f"{server.url}/v2/")
        head = httpx.head(f"{server.url}/v2/a/manifests/b")
        assert (ping.status_code, ping.headers["retry-after"], ping.content) == (
            429,
            "1",
            b"slow down",
        )
        assert head.status_code == 429
        assert server.counts == {("GET", "/v2/"): 1, ("HEAD", "/v2/a/manifests/b"): 1}
        server.reset()
        assert server.requests == []
    with status_server(503) as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 503


def test_hung_server_times_out_the_client() -> None:
    with hung_server() as server, pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/v2/", timeout=0.2)
    assert server.connections == 1


def test_garbage_server_serves_undigested_non_json() -> None:
    with garbage_server() as server:
        ping = httpx.get(f"{server.url}/v2/")
        head = httpx.head(f"{server.url}/v2/a/manifests/b", headers=ACCEPT_ALL)
        get = httpx.get(f"{server.url}/v2/a/manifests/b", headers=ACCEPT_ALL)
    assert ping.status_code == head.status_code == get.status_code == 200
    assert head.headers["content-type"] == OCI_MANIFEST
    assert "docker-content-digest" not in head.headers
    assert "docker-content-digest" not in get.headers
    with pytest.raises(ValueError):
        json.loads(get.content)


def test_a_service_whose_port_was_taken_before_it_bound_it_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() hands out a port that is free now; another process on the machine may
    bind it before ``regmon run`` does (a second later): the harness takes a new one."""
    import socket

    from support import service as service_module
    from support.service import RegmonProcess

    with socket.socket() as taker:
        taker.bind(("127.0.0.1", 0))
        taker.listen()
        taken = taker.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(service_module, "free_port", lambda: next(ports, None) or free_port())
        with RegmonProcess("watch: []\n", tmp_path) as svc:
            assert svc.port != taken
            assert svc.get("/healthz").json() == {"status": "ok"}
            assert f"listen 127.0.0.1:{taken}: Address already in use" in svc.log_text()
            svc.stop()


def test_free_port_refuses_connections() -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{free_port()}/v2/", timeout=2)


def test_counting_proxy_forwards_and_counts(
    registry: RegistryServer, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("harness")
    with CountingProxy(registry.host) as proxy, ImagePusher(proxy.url) as pusher:
        # Uploads follow the registry's absolute Location, which names the proxy.
        pushed = {tag: pusher.push_image(repo, tag, "oci").digest for tag in ("a", "b", "c")}
        assert proxy.count("POST") == proxy.count("PUT", f"/v2/{repo}/blobs/") == 6
        proxy.reset()

        for tag, digest in pushed.items():
            assert pusher.head_manifest(repo, tag).headers["docker-content-digest"] == digest
        assert pusher.get_manifest(repo, "a").status_code == 200

        assert proxy.counts == {
            ("HEAD", f"/v2/{repo}/manifests/a"): 1,
            ("HEAD", f"/v2/{repo}/manifests/b"): 1,
            ("HEAD", f"/v2/{repo}/manifests/c"): 1,
            ("GET", f"/v2/{repo}/manifests/a"): 1,
        }
        assert proxy.requests[0].headers["accept"] == ", ".join(ALL_MANIFEST_TYPES)


def test_counting_proxy_answers_502_when_upstream_is_down() -> None:
    with CountingProxy(f"127.0.0.1:{free_port()}") as proxy:
        assert httpx.get(f"{proxy.url}/v2/").status_code == 502
        assert wait_for(lambda: proxy.count() == 1, message="request counted")


def test_the_wire_server_takes_tls_bytes_with_a_line_break_and_a_colon_as_a_bad_request() -> None:
    """A ClientHello (the HTTPS probe) is random bytes: a "\r\n" and a ":" among them
    once read as a non-ASCII header name, and the server's thread died on it."""
    import socket

    hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03\r\n\x97(o\xe6:\x1a\x0bK" + bytes(40)
    with WireServer(bad_request) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(hello)
            answer = conn.recv(65536)
        [request] = server.requests
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert not request.valid and request.method == "" and not request.headers
