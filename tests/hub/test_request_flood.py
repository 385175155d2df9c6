"""Over HTTPS: fresh requester keys from one address get 429 once that address holds its share."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.server.config import ServeConfig
from tests.hub.hubkit import request_token, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_a_flood_of_fresh_keys_from_one_address_is_answered_429(tmp_path: Path) -> None:
    config = ServeConfig(
        data_dir=tmp_path / "data", rate_per_s=1000.0, rate_burst=1000, max_pending_per_address=4
    )
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data", config=config) as running:
        running.add_owner(owner)
        answers: list[tuple[int, str]] = []
        for _ in range(10):
            requester = KeyBundle.generate("x25519")
            async with running.client(requester) as flooder:
                try:
                    now = int(time.time())
                    token = request_token(
                        requester, window=(now - 3600, now - 1800), contact="a@pd.ex"
                    )
                    await flooder.submit_request(token)
                    answers.append((201, ""))
                except ApiError as exc:
                    answers.append((exc.status, f"{exc.code}: {exc.detail[:65]}"))
        refused = "rate_limited: this client address already has 4 pending requests on this device"
        assert answers == [(201, "")] * 4 + [(429, refused)] * 6
        async with running.client(owner) as phone:
            assert len(await phone.requests("pending")) == 4
        # Six refusals, but the log holds only as many as the quiet threshold allows (10 here).
        kinds = [e.body()["kind"] for e in running.device.audit.entries()]
        assert kinds.count("consent.refused") == 6
        assert kinds.count("request.pending") == 4
