"""A rotated password file is picked up by a running client, without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.images import ImagePusher
from support.registry import RegistryServer

from monitor.checker import check_reference, client_from_config
from monitor.config import parse_config
from monitor.domain import Reason, Status
from monitor.reference import parse_reference


def test_rejected_credentials_are_resolved_again(
    registry_basic: RegistryServer, basic_pusher: ImagePusher, unique_repo, tmp_path: Path
) -> None:
    repo = unique_repo("rotate")
    image = basic_pusher.push_image(repo, "v1", "oci")
    secret = tmp_path / "password"
    secret.write_text("old-password\n")
    config = parse_config(
        f'registries:\n  "{registry_basic.host}":\n    username: ci\n    password_file: {secret}\n'
    )
    ref = parse_reference(f"{registry_basic.host}/{repo}:v1")

    async def main() -> list[tuple[Status, Reason | None, str | None]]:
        seen = []
        async with client_from_config(config) as client:
            result = await check_reference(client, ref, budget=5)
            seen.append((result.status, result.reason, result.digest))
            secret.write_text("s3cret\n")  # the operator rotates the secret
            result = await check_reference(client, ref, budget=5)
            seen.append((result.status, result.reason, result.digest))
        return seen

    assert asyncio.run(main()) == [
        (Status.ERROR, Reason.AUTH_FAILED, None),
        (Status.PRESENT, None, image.digest),
    ]
