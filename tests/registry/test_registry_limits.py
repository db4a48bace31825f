"""Per-registry limits and transport rules: concurrency cap, rate-limit headers,
HTTPS-only for remote hosts, one token and one challenge for many concurrent checks."""

from __future__ import annotations

import asyncio

import httpx
from support.slow import SlowRegistry

from monitor.checker import check_reference
from monitor.domain import Reason, Status
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient, RegistrySettings

DIGEST = "sha256:" + "a" * 64


def test_requests_to_one_registry_never_exceed_max_concurrency() -> None:
    with SlowRegistry(0.05) as server:

        async def main() -> list[Status]:
            settings = RegistrySettings(max_concurrency=3)
            async with RegistryClient(settings_for=lambda host: settings) as client:
                refs = [parse_reference(f"{server.host}/team/app:v{i}") for i in range(24)]
                results = await asyncio.gather(*(check_reference(client, r) for r in refs))
                return [r.status for r in results]

        statuses = asyncio.run(main())
        assert statuses == [Status.PRESENT] * 24
        assert server.peak == 3  # reached the limit, never beyond it
        assert server.count("HEAD") == 24
        assert server.count("GET", "/v2/") == 1  # one discovery for 24 concurrent checks


def test_ratelimit_headers_are_kept_on_the_result() -> None:
    headers = [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "42;w=21600")]
    with SlowRegistry(0, headers) as server:

        async def main() -> tuple[int | None, int | None]:
            async with RegistryClient() as client:
                result = await check_reference(
                    client, parse_reference(f"{server.host}/team/app:v1")
                )
                return result.ratelimit_limit, result.ratelimit_remaining

        assert asyncio.run(main()) == (100, 42)


def _recording_transport(seen: list[httpx.URL]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        raise httpx.ConnectError("refused", request=request)

    return httpx.MockTransport(handler)


def test_remote_registries_are_https_only_unless_insecure() -> None:
    """Plain HTTP is a fallback for loopback and `insecure: true` only, as with docker."""

    def run(settings: RegistrySettings) -> tuple[list[str], Reason | None]:
        seen: list[httpx.URL] = []

        async def main() -> Reason | None:
            async with RegistryClient(
                settings_for=lambda host: settings,
                transport_factory=lambda verify: _recording_transport(seen),
            ) as client:
                result = await check_reference(
                    client, parse_reference("registry.example.com/team/app:v1"), budget=5
                )
                return result.reason

        reason = asyncio.run(main())
        return sorted({url.scheme for url in seen}), reason

    assert run(RegistrySettings()) == (["https"], Reason.UNREACHABLE)
    assert run(RegistrySettings(insecure=True)) == (["http", "https"], Reason.UNREACHABLE)


def test_the_https_probe_of_a_plain_loopback_registry_is_not_an_error_request() -> None:
    seen: list[tuple[str, str, str]] = []
    with SlowRegistry(0) as server:
        host = server.host

        async def main() -> Status:
            async with RegistryClient(observer=lambda *row: seen.append(row)) as client:
                ref = parse_reference(f"{host}/team/app:v1")
                return (await check_reference(client, ref)).status

        assert asyncio.run(main()) is Status.PRESENT
    assert seen == [(host, "GET", "200"), (host, "HEAD", "200")]


def test_odd_header_bytes_are_not_a_crash() -> None:
    """Unicode digits in ratelimit/content-length headers must not raise from int()."""
    with SlowRegistry(0, [("ratelimit-limit", "\u00b2"), ("ratelimit-remaining", "\u00b9")]) as srv:
        host = srv.host

        async def main() -> tuple[Status, int | None]:
            async with RegistryClient() as client:
                result = await check_reference(client, parse_reference(f"{host}/team/app:v1"))
                return result.status, result.ratelimit_limit

        assert asyncio.run(main()) == (Status.PRESENT, None)


def test_a_bad_ca_file_is_a_tls_error(tmp_path) -> None:
    missing = tmp_path / "no-such-ca.pem"

    async def main() -> tuple[Status, Reason | None, str | None]:
        settings = RegistrySettings(ca_file=str(missing))
        async with RegistryClient(settings_for=lambda host: settings) as client:
            result = await check_reference(
                client, parse_reference("registry.example.com/team/app:v1"), budget=5
            )
            return result.status, result.reason, result.detail

    status, reason, detail = asyncio.run(main())
    assert (status, reason) == (Status.ERROR, Reason.TLS)
    assert detail is not None and str(missing) in detail
