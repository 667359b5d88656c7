"""The transports: sharded small pools by default, one pool or aiohttp on request."""

from __future__ import annotations

import contextlib
import random

import anyio
import httpx
import pytest

from cvekyc_async import AsyncCVClient, ConfigurationError, CVError, RetryPolicy
from cvekyc_async._transport import ShardedTransport, build_transport
from cvekyc_async.emulator import RunningEmulator, specimen_path

CARD = specimen_path("chip_front.jpg")


@pytest.mark.parametrize(
    ("connections", "per_pool", "pools"),
    [(1, 4, 1), (4, 4, 1), (10, 4, 3), (256, 4, 64), (8, 16, 1)],
)
def test_pools_are_small_and_cover_the_connections(
    connections: int, per_pool: int, pools: int
) -> None:
    assert (
        ShardedTransport(max_connections=connections, connections_per_pool=per_pool).pools == pools
    )


def test_transport_choices() -> None:
    assert isinstance(build_transport("sharded", max_connections=8), ShardedTransport)
    assert isinstance(build_transport("pool", max_connections=8), httpx.AsyncHTTPTransport)
    with pytest.raises(ValueError, match="transport must be"):
        build_transport("carrier-pigeon", max_connections=8)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="transport must be"):
        AsyncCVClient("k", "s", transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not both"):
        AsyncCVClient("k", "s", transport="pool", http_client=httpx.AsyncClient())


@pytest.mark.anyio
async def test_requests_spread_over_pools_and_are_released(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(latency=0.05)
    async with cv_emulator.client(max_concurrency=12, transport="sharded") as client:
        transport = client._engine.http._transport
        assert isinstance(transport, ShardedTransport)
        peak: list[int] = []

        async def call() -> None:
            await client.extract_card(CARD)
            peak.append(max(transport._in_flight))

        async with anyio.create_task_group() as tg:
            for _ in range(36):
                tg.start_soon(call)
        assert max(peak) <= 4  # no pool ever held more than its connections
        assert transport._in_flight == [0, 0, 0]


@pytest.mark.anyio
async def test_cancelled_requests_release_their_pool(cv_emulator: RunningEmulator) -> None:
    rng = random.Random(7)
    cv_emulator.set_faults(latency=0.01, jitter=0.03, seed=7)
    async with cv_emulator.client(
        max_concurrency=8, retry=RetryPolicy(backoff_base=0), transport="sharded"
    ) as client:
        transport = client._engine.http._transport
        assert isinstance(transport, ShardedTransport)

        async def call(after: float) -> None:
            with anyio.move_on_after(after), contextlib.suppress(CVError):
                await client.extract_card(CARD)

        async with anyio.create_task_group() as tg:
            for _ in range(150):
                tg.start_soon(call, rng.uniform(0, 0.06))
        assert transport._in_flight == [0, 0]


@pytest.mark.anyio
async def test_one_pool_transport_reads_cards(cv_emulator: RunningEmulator) -> None:
    async with cv_emulator.client(transport="pool") as client:
        assert (await client.extract_card(CARD)).billed


async def _read_with_aiohttp(emu: RunningEmulator) -> bool:
    async with emu.client(transport="aiohttp") as client:
        result = await client.extract_card(CARD)
        results = await client.extract_many([CARD, specimen_path("passport.jpg")])
    return result.billed and all(r.ok for r in results)


def test_aiohttp_transport_reads_cards_under_asyncio(cv_emulator: RunningEmulator) -> None:
    assert anyio.run(_read_with_aiohttp, cv_emulator, backend="asyncio")


async def _aiohttp_under_trio(emu: RunningEmulator) -> None:
    async with emu.client(transport="aiohttp") as client:
        await client.extract_card(CARD)


def test_aiohttp_transport_under_trio_says_so(cv_emulator: RunningEmulator) -> None:
    with pytest.raises(ConfigurationError, match="only under asyncio"):
        anyio.run(_aiohttp_under_trio, cv_emulator, backend="trio")
    assert cv_emulator.stats()["requests"] == 0
