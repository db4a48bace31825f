"""GET /v2/<name>/tags/list against the real registry: unpaged (2.8.2) and paged (a proxy)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.faults import status_server
from support.images import ImagePusher
from support.paging import PagingProxy
from support.registry import RegistryServer
from support.token_issuer import PASSWORD, USERNAME, TokenIssuer

from monitor.domain import Reason, Status
from monitor.errors import RegistryError
from monitor.reference import parse_reference
from monitor.registry.client import RegistryClient, TagListing
from monitor.registry.credentials import Credential, CredentialStore

TAG_COUNT = 250
ALL_TAGS = sorted(f"1.{n}.0" for n in range(TAG_COUNT))


@pytest.fixture(scope="module")
def many_tags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, str]]:
    """A registry of its own with one repository of 250 tags (one manifest, many tags)."""
    with RegistryServer(tmp_path_factory.mktemp("registry-tags"), "noauth") as server:
        with ImagePusher(server.url) as pusher:
            image = pusher.push_image("team/app", ALL_TAGS[0], seed="tags")
            for tag in ALL_TAGS[1:]:
                pusher.push_raw_manifest("team/app", tag, image.body, image.media_type)
        yield server, "team/app"


def list_tags(
    host: str, repository: str, *, client: Callable[[], RegistryClient] = RegistryClient
) -> TagListing:
    async def main() -> TagListing:
        async with client() as registry_client:
            return await registry_client.list_tags(parse_reference(f"{host}/{repository}"))

    return asyncio.run(main())


def test_the_registrys_own_unpaged_answer(many_tags: tuple[RegistryServer, str]) -> None:
    server, repo = many_tags
    with PagingProxy(server.host, page_size=10_000) as counting:
        listing = list_tags(counting.host, repo)
        assert counting.count("GET", f"/v2/{repo}/tags/list") == 1
    assert listing == TagListing(Status.PRESENT, tuple(ALL_TAGS), pages=1, http_status=200)


@pytest.mark.parametrize("absolute_links", [False, True])
def test_link_pagination_to_the_end(
    many_tags: tuple[RegistryServer, str], absolute_links: bool
) -> None:
    server, repo = many_tags
    with PagingProxy(server.host, page_size=100, absolute_links=absolute_links) as proxy:
        listing = list_tags(proxy.host, repo)
        pages = [r.target for r in proxy.requests if r.path.endswith("/tags/list")]
    assert listing.tags == tuple(ALL_TAGS)
    assert listing.pages == 3
    assert pages == [
        f"/v2/{repo}/tags/list?n=1000",
        f"/v2/{repo}/tags/list?n=100&last={sorted(ALL_TAGS)[99]}",
        f"/v2/{repo}/tags/list?n=100&last={sorted(ALL_TAGS)[199]}",
    ]


def test_a_listing_that_fails_mid_way_is_an_error_not_a_shorter_list(
    many_tags: tuple[RegistryServer, str],
) -> None:
    server, repo = many_tags
    with PagingProxy(server.host, page_size=100) as proxy:
        proxy.fail_on_page = 2
        with pytest.raises(RegistryError) as caught:
            list_tags(proxy.host, repo)
    assert caught.value.reason is Reason.SERVER_ERROR
    assert caught.value.http_status == 500


def test_a_link_that_loops_is_a_protocol_error(many_tags: tuple[RegistryServer, str]) -> None:
    server, repo = many_tags
    with PagingProxy(server.host, page_size=100) as proxy:
        proxy.loop = True
        with pytest.raises(RegistryError, match="tags/list pagination loops") as caught:
            list_tags(proxy.host, repo)
        assert proxy.count("GET", f"/v2/{repo}/tags/list") == 2
    assert caught.value.reason is Reason.PROTOCOL


def test_a_missing_repository_is_missing(registry: RegistryServer) -> None:
    listing = list_tags(registry.host, "team/never-pushed")
    assert listing == TagListing(Status.MISSING, detail="name unknown", http_status=404)


def test_a_repository_whose_tags_were_all_deleted_is_empty(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: Callable[..., str]
) -> None:
    repo = unique_repo()
    image = pusher.push_image(repo, "v1")
    pusher.delete_manifest(repo, image.digest)  # 2.8.2 then answers "tags": null
    assert list_tags(registry.host, repo) == TagListing(Status.PRESENT, (), 1, http_status=200)


def test_token_auth_one_token_for_the_listing_and_the_manifests(
    registry_token: RegistryServer,
    token_pusher: ImagePusher,
    token_issuer: TokenIssuer,
    unique_repo: Callable[..., str],
    tmp_path: Path,
) -> None:
    public, private = unique_repo("public"), unique_repo("private")
    token_pusher.push_image(public, "v1")
    token_pusher.push_image(private, "v1")

    def anonymous() -> RegistryClient:
        return RegistryClient(credentials=CredentialStore(docker_config=tmp_path / "none.json"))

    def as_ci() -> RegistryClient:
        return RegistryClient(
            credentials=CredentialStore(
                lambda host: Credential(username=USERNAME, password=PASSWORD),
                docker_config=tmp_path / "none.json",
            )
        )

    assert list_tags(registry_token.host, public, client=anonymous).tags == ("v1",)
    denied = list_tags(registry_token.host, private, client=anonymous)
    assert (denied.status, denied.detail) == (Status.DENIED, "insufficient_scope")

    async def listing_then_manifest() -> tuple[TagListing, Status]:
        async with as_ci() as client:
            ref = parse_reference(f"{registry_token.host}/{private}:v1")
            listing = await client.list_tags(ref)
            answer = await client.fetch_manifest(ref)
            return listing, answer.status

    token_issuer.reset()
    listing, status = asyncio.run(listing_then_manifest())
    assert (listing.tags, status) == (("v1",), Status.PRESENT)
    assert [r.scopes for r in token_issuer.requests] == [(f"repository:{private}:pull",)]


def test_a_link_to_another_host_is_not_followed() -> None:
    link = '<http://127.0.0.2:9/v2/team/app/tags/list?n=1&last=a>; rel="next"'
    headers = {"Content-Type": "application/json", "Link": link}
    with status_server(200, headers, b'{"name": "team/app", "tags": ["a"]}') as server:
        with pytest.raises(RegistryError, match="Link points at another host") as caught:
            list_tags(server.host, "team/app")
        assert server.count("GET", "/v2/team/app/tags/list") == 1
    assert caught.value.reason is Reason.PROTOCOL
