"""Platforms by evidence (SPEC §2): config blobs, attestation entries, exact request costs.

Against the real registry; what each config blob says is cross-checked with skopeo.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cli import lines, no_traceback, regmon
from support.faults import CountingProxy
from support.images import ImagePusher
from support.registry import RegistryServer
from support.service import RegmonProcess
from support.wait import wait_for

from monitor.checker import check_reference
from monitor.domain import CheckResult, Status
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient
from monitor.registry.platforms import Platform


def skopeo_config(ref: str) -> dict[str, object]:
    """What the image's config blob says, as skopeo reads it."""
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: run the test command (it installs skopeo)"
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--config", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    doc = json.loads(raw)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_single_arch_amd64_is_not_arm64(
    kind: str, registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("amd64only")
    image = pusher.push_image(repo, "v2", kind, platform="linux/amd64")  # type: ignore[arg-type]
    ref = f"{registry.host}/{repo}:v2"
    config = skopeo_config(ref)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert "variant" not in config

    proc = regmon("check", "--platform", "linux/arm64", ref)
    no_traceback(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines(proc) == [["missing", ref, "no", "linux/arm64", "manifest"]]

    proc = regmon("check", "--json", "--platform", "linux/amd64", "--platform", "linux/arm64", ref)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert (doc["status"], doc["reason"]) == ("missing", "no linux/arm64 manifest")

    proc = regmon("check", "--json", "--platform", "linux/amd64", "--platform", "linux/x86_64", ref)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["digest"] == image.digest
    assert doc["platforms"] == {"linux/amd64": image.digest, "linux/x86_64": image.digest}


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_single_arch_arm64_v8(
    kind: str, registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("arm64only")
    image = pusher.push_image(repo, "v1", kind, platform="linux/arm64/v8")  # type: ignore[arg-type]
    ref = f"{registry.host}/{repo}:v1"
    config = skopeo_config(ref)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")

    proc = regmon(
        "check", "--json", "--platform", "linux/arm64", "--platform", "linux/arm64/v8", ref
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["platforms"] == {"linux/arm64": image.digest, "linux/arm64/v8": image.digest}

    proc = regmon("check", "--platform", "linux/amd64", ref)
    assert proc.returncode == 1
    assert lines(proc) == [["missing", ref, "no", "linux/amd64", "manifest"]]


@pytest.mark.parametrize("stated", [True, False], ids=["buildx-unknown", "annotation-only"])
def test_index_attestation_entries_are_never_platforms(
    stated: bool, registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("attest")
    idx = pusher.push_index(
        repo, "v1", "oci-index", ["linux/arm64"], attestation=True, attestation_platform=stated
    )
    assert idx.attestation is not None
    ref = f"{registry.host}/{repo}:v1"
    attestation = skopeo_config(f"{registry.host}/{repo}@{idx.attestation}")
    assert (attestation["os"], attestation["architecture"]) == ("unknown", "unknown")

    for platform in ("unknown/unknown", "linux/amd64"):
        proc = regmon("check", "--platform", platform, ref)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert lines(proc) == [["missing", ref, "no", platform, "manifest"]]
    proc = regmon("check", "--json", "--platform", "linux/arm64", ref)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["platforms"] == {"linux/arm64": idx.children["linux/arm64"]}


def test_index_entry_without_a_platform_is_decided_by_its_config(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("unstated")
    idx = pusher.push_index(
        repo, "v1", "oci-index", ["linux/arm64/v8", "linux/s390x"], unstated=["linux/arm64/v8"]
    )
    assert "platform" not in json.loads(idx.body)["manifests"][0]
    ref = f"{registry.host}/{repo}:v1"
    proc = regmon("check", "--json", "--platform", "linux/arm64", "--platform", "linux/s390x", ref)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["platforms"] == {
        "linux/arm64": idx.children["linux/arm64/v8"],
        "linux/s390x": idx.children["linux/s390x"],
    }
    # Not assumed linux/amd64 (what ggcr does for an entry without a platform).
    proc = regmon("check", "--platform", "linux/amd64", ref)
    assert lines(proc) == [["missing", ref, "no", "linux/amd64", "manifest"]]


def _requests(proxy: CountingProxy) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in proxy.requests]


def test_cli_request_cost_of_a_single_arch_platform_check(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], tmp_path: Path
) -> None:
    repo = unique_repo("cost")
    image = pusher.push_image(repo, "v1", "oci", platform="linux/amd64")
    config_digest = json.loads(image.body)["config"]["digest"]
    manifest = f"/v2/{repo}/manifests/v1"
    with CountingProxy(registry.host) as proxy:
        ref = f"{proxy.host}/{repo}:v1"
        assert regmon("check", ref).returncode == 0
        assert _requests(proxy) == [("GET", "/v2/"), ("HEAD", manifest)]

        # Platforms need the manifest body: GET instead of HEAD, and the config blob is
        # the one extra request, whatever manifest_method says.
        config = tmp_path / "regmon.yaml"
        config.write_text(f'registries:\n  "{proxy.host}":\n    manifest_method: get\n')
        for args in ((), ("--config", str(config))):
            proxy.reset()
            proc = regmon("check", *args, "--platform", "linux/amd64", ref)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert _requests(proxy) == [
                ("GET", "/v2/"),
                ("GET", manifest),
                ("GET", f"/v2/{repo}/blobs/{config_digest}"),
            ]

        # Two tags of one image, checked at once: one config blob request.
        pusher.push_raw_manifest(repo, "v1-copy", image.body, image.media_type)
        proxy.reset()
        proc = regmon("check", "--platform", "linux/amd64", ref, f"{proxy.host}/{repo}:v1-copy")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proxy.count("GET", f"/v2/{repo}/blobs/") == 1


def test_repeated_platform_checks_in_one_process_cost_one_head(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("cached")
    single = pusher.push_image(repo, "single", "docker", platform="linux/arm64/v8")
    idx = pusher.push_index(repo, "multi", "oci-index", attestation=True)

    async def main(proxy: CountingProxy) -> list[list[tuple[str, str]]]:
        seen: list[list[tuple[str, str]]] = []
        async with RegistryClient() as client:
            for _ in range(3):
                proxy.reset()
                wanted = (
                    ("single", "linux/arm64", single.digest),
                    ("multi", "linux/arm/v7", idx.children["linux/arm/v7"]),
                )
                for tag, platform, digest in wanted:
                    ref = parse_reference(f"{proxy.host}/{repo}:{tag}")
                    result = await check_reference(client, ref, platforms=[platform])
                    assert result.platforms == {platform: digest}, result
                seen.append(_requests(proxy))
        return seen

    with CountingProxy(registry.host) as proxy:
        first, second, third = asyncio.run(main(proxy))
    config_digest = json.loads(single.body)["config"]["digest"]
    assert first == [
        ("GET", "/v2/"),
        ("GET", f"/v2/{repo}/manifests/single"),
        ("GET", f"/v2/{repo}/blobs/{config_digest}"),
        ("GET", f"/v2/{repo}/manifests/multi"),
    ]
    heads = [("HEAD", f"/v2/{repo}/manifests/single"), ("HEAD", f"/v2/{repo}/manifests/multi")]
    assert second == third == heads


def test_a_changed_tag_costs_its_new_manifest_and_config_once(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo("changed")
    pusher.push_image(repo, "v1", "oci", platform="linux/amd64")

    async def main(proxy: CountingProxy) -> tuple[list[tuple[str, str]], CheckResult]:
        ref = parse_reference(f"{proxy.host}/{repo}:v1")
        async with RegistryClient() as client:
            first = await check_reference(client, ref, platforms=["linux/arm64"])
            assert first.detail == "no linux/arm64 manifest"
            moved = pusher.push_image(repo, "v1", "oci", platform="linux/arm64")
            proxy.reset()
            result = await check_reference(client, ref, platforms=["linux/arm64"])
            assert result.platforms == {"linux/arm64": moved.digest}
            after_change = _requests(proxy)
            proxy.reset()
            return after_change, await check_reference(client, ref, platforms=["linux/arm64"])

    with CountingProxy(registry.host) as proxy:
        after_change, again = asyncio.run(main(proxy))
        last = _requests(proxy)
    # HEAD says "another digest": that manifest by digest and its config, once.
    assert [m for m, _ in after_change] == ["HEAD", "GET", "GET"]
    assert after_change[1][1].startswith(f"/v2/{repo}/manifests/sha256:")
    assert after_change[2][1].startswith(f"/v2/{repo}/blobs/sha256:")
    assert again.status is Status.PRESENT
    assert last == [("HEAD", f"/v2/{repo}/manifests/v1")]


def test_watched_platforms_in_the_service_are_decided_by_the_config_blob(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str], tmp_path: Path
) -> None:
    repo = unique_repo("svc")
    pusher.push_image(repo, "amd64", "oci", platform="linux/amd64")
    arm64 = pusher.push_image(repo, "arm64", "oci", platform="linux/arm64/v8")
    with CountingProxy(registry.host) as proxy:
        gone, here = f"{proxy.host}/{repo}:amd64", f"{proxy.host}/{repo}:arm64"
        config = (
            "defaults: {interval: 1s, jitter: 0%, missing_after: 1, failing_after: 1}\n"
            "watch:\n"
            f"  - {{image: '{gone}', platforms: [linux/arm64]}}\n"
            f"  - {{image: '{here}', platforms: [linux/arm64]}}\n"
        )
        svc = RegmonProcess(config, tmp_path / "svc")
        try:

            def checked_three_times() -> dict[str, Any] | None:
                images = svc.images()
                heads = [
                    proxy.count("HEAD", f"/v2/{repo}/manifests/{t}") for t in ("amd64", "arm64")
                ]
                return images if min(heads) >= 3 else None

            images = wait_for(checked_three_times, timeout=20, message=svc.log_tail())
            # One manifest and one config blob per image, however often it is checked.
            assert proxy.count("GET", f"/v2/{repo}/manifests/") == 2, proxy.counts
            assert proxy.count("GET", f"/v2/{repo}/blobs/") == 2, proxy.counts
        finally:
            svc.close()
    assert (images[gone]["status"], images[gone]["detail"]) == (
        "missing",
        "no linux/arm64 manifest",
    )
    assert (images[here]["status"], images[here]["digest"]) == ("present", arm64.digest)
    assert images[here]["platforms"] == {"linux/arm64": arm64.digest}


def test_evidence_cache_is_bounded_and_single_flight() -> None:
    from monitor.registry.evidence import PlatformEvidence

    evidence = PlatformEvidence(size=2)
    fetched: list[str] = []

    async def main() -> None:
        async def served(digest: str) -> tuple[tuple[Platform, str], ...]:
            fetched.append(digest)
            await asyncio.sleep(0.01)
            return ((Platform("linux", "amd64"), digest),)

        def fetch(digest: str) -> Callable[[], Any]:
            return lambda: served(digest)

        # Ten concurrent asks for one digest: one fetch.
        await asyncio.gather(*(evidence.manifests.get("a", fetch("a")) for _ in range(10)))
        await evidence.manifests.get("b", fetch("b"))
        await evidence.manifests.get("c", fetch("c"))  # evicts "a", the least recently used
        await evidence.manifests.get("a", fetch("a"))

    asyncio.run(main())
    assert fetched == ["a", "b", "c", "a"]
    assert "b" not in evidence.manifests and "c" in evidence.manifests
    evidence.remember("host/repo:v1", "c")
    assert evidence.expects("host/repo:v1") and not evidence.expects("host/repo:v2")
