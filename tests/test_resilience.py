"""Resilience over real sockets, against the emulator's fault injection."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
from collections import Counter

import anyio
import anyio.to_thread
import httpx
import pytest

import cvekyc_async._attempts as client_module
from cvekyc_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCVClient,
    CVError,
    ExtractionResult,
    RetryPolicy,
)
from cvekyc_async._pacing import Pacer
from cvekyc_async.emulator import Faults, RunningEmulator, specimen_path
from tests import samples
from tests._raw import RawServer

pytestmark = pytest.mark.anyio
CARD = specimen_path("chip_front.jpg")
NO_WAIT = RetryPolicy(backoff_base=0.0)


async def test_faults_are_retried_to_success_over_real_sockets(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(seed=3, rate_503=0.2, rate_500=0.1, rate_drop=0.1, retry_after="0")
    policy = RetryPolicy(backoff_base=0, max_retries=10)  # enough that every call succeeds
    async with cv_emulator.client(retry=policy) as client:
        results = [await client.extract_card(CARD) for _ in range(30)]
        usage = client.usage
    stats = cv_emulator.stats()
    assert all(r.cards[0].info.get("id") == "040204683524" for r in results)
    assert usage.answers == 30
    assert usage.retries == stats["faults_total"]
    assert usage.requests == stats["requests"] == 30 + usage.retries
    # Only the dropped answers were processed before failing: those retries may bill twice.
    assert usage.ambiguous_retries == stats["faults"].get("drop", 0) + stats["faults"].get("500", 0)
    assert stats["billed"] == usage.billed + stats["faults"].get("drop", 0)


async def test_read_timeout_on_a_stalled_answer_is_retried(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(rate_stall=1.0)
    timeout = httpx.Timeout(5.0, read=0.2)
    async with cv_emulator.client(
        retry=RetryPolicy(backoff_base=0, max_retries=1), timeout=timeout
    ) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.extract_card(CARD)
        assert c.usage.ambiguous_retries == 1
    assert info.value.kind == "read"
    assert info.value.attempts == 2
    assert cv_emulator.stats()["requests"] == 2


async def test_total_timeout_bounds_the_whole_call(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(rate_stall=1.0)
    async with cv_emulator.client(total_timeout=0.3) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.extract_card(CARD)
        assert c.in_flight == 0
    assert info.value.kind == "total"
    assert info.value.elapsed >= 0.3


async def test_connect_failures_are_retried_then_raised() -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AsyncCVClient("k", "s", base_url=f"http://127.0.0.1:{port}", retry=NO_WAIT) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(CARD)
        assert c.usage.requests == 3
        assert c.usage.ambiguous_retries == 0
    assert info.value.kind == "connect"


async def test_pool_timeout_of_a_small_caller_pool_is_typed(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(latency=0.5)
    small = httpx.AsyncClient(limits=httpx.Limits(max_connections=1))
    outcomes: list[object] = []
    # The client's timeout applies to each request sent through a caller's pool.
    timeout = httpx.Timeout(5.0, pool=0.05)
    async with (
        small,
        cv_emulator.client(
            http_client=small, max_retries=0, max_concurrency=4, timeout=timeout
        ) as c,
    ):

        async def call() -> None:
            try:
                outcomes.append(await c.extract_card(CARD))
            except CVError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["APITimeoutError", "ExtractionResult"]
    [err] = [o for o in outcomes if isinstance(o, APITimeoutError)]
    assert err.kind == "pool"


async def test_the_client_timeout_applies_through_a_callers_http_client(
    cv_emulator: RunningEmulator,
) -> None:
    # The caller's pool has a short timeout of its own; the client's (default 60 s read) wins,
    # so a slow OCR answer is not cut off and sent again.
    cv_emulator.set_faults(latency=0.3)
    async with (
        httpx.AsyncClient(timeout=0.1) as http,
        cv_emulator.client(http_client=http, max_retries=0) as c,
    ):
        result = await c.extract_card(CARD)
    assert result.attempts == 1
    # And a short client timeout is honoured through a caller's generous pool.
    async with (
        httpx.AsyncClient(timeout=60) as http,
        cv_emulator.client(
            http_client=http, max_retries=0, timeout=httpx.Timeout(5.0, read=0.1)
        ) as c,
    ):
        with pytest.raises(APITimeoutError) as info:
            await c.extract_card(CARD)
    assert info.value.kind == "read"


async def test_in_flight_at_the_server_never_exceeds_max_concurrency(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(latency=0.02, jitter=0.02, rate_503=0.2, retry_after="0", seed=5)
    async with (
        cv_emulator.client(max_concurrency=5, retry=NO_WAIT) as c,
        anyio.create_task_group() as tg,
    ):
        for _ in range(60):
            tg.start_soon(c.extract_card, CARD)
    assert cv_emulator.stats()["peak_in_flight"] == 5


async def test_the_default_pool_does_not_time_out_under_load(cv_emulator: RunningEmulator) -> None:
    # Far more callers than slots: they queue in the client's limiter, never in the pool.
    cv_emulator.set_faults(latency=0.05)
    timeout = httpx.Timeout(5.0, pool=0.01)
    async with cv_emulator.client(max_concurrency=4, timeout=timeout, max_retries=0) as c:
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(c.extract_card, CARD)
        assert c.usage.answers == 40
        assert c.usage.errors == {}


async def test_rate_limit_spaces_request_starts() -> None:
    now = [100.0]
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)

    pacer = Pacer(50, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(4):
        await pacer.wait()  # all at once: each waits one interval more than the last
    assert waits == pytest.approx([0.02, 0.04, 0.06])
    now[0] += 1.0  # after a quiet second the next start goes at once
    await pacer.wait()
    assert len(waits) == 3


async def test_max_per_second_paces_every_attempt(
    cv_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)

    def frozen_pacer(per_second: float) -> Pacer:
        return Pacer(per_second, clock=lambda: 0.0, sleep=fake_sleep)

    monkeypatch.setattr(client_module, "Pacer", frozen_pacer)
    cv_emulator.set_faults(rate_503=1.0, retry_after="0")
    async with cv_emulator.client(max_per_second=10, retry=NO_WAIT) as c:
        with pytest.raises(CVError):
            await c.extract_card(CARD)
    # Three attempts on a frozen clock: the second and third wait one and two intervals.
    assert waits == pytest.approx([0.1, 0.2])


async def test_a_storm_of_cancellations_leaves_the_client_whole(
    cv_emulator: RunningEmulator,
) -> None:
    seed = 20261125
    rng = random.Random(seed)
    cv_emulator.set_faults(latency=0.01, jitter=0.03, rate_503=0.15, retry_after="0", seed=seed)
    concurrency = 8
    # A short pool timeout: a connection leaked by a cancelled request would surface as
    # PoolTimeout in the full-concurrency run below.
    timeout = httpx.Timeout(5.0, pool=1.0)
    async with cv_emulator.client(max_concurrency=concurrency, retry=NO_WAIT, timeout=timeout) as c:
        finished = Counter[str]()

        async def call_then_maybe_cancel(after: float) -> None:
            with anyio.move_on_after(after) as scope:
                try:
                    await c.extract_card(CARD)
                except CVError:  # three 503s in a row: rare, and a typed end all the same
                    finished["failed"] += 1
                    return
            finished["cancelled" if scope.cancelled_caught else "done"] += 1

        # Cancelled at once (while queued), at a random moment (connecting, uploading, awaiting
        # the answer, between retries), or never.
        deadlines = [rng.choice([0.0, rng.uniform(0.0, 0.15), float("inf")]) for _ in range(400)]
        async with anyio.create_task_group() as tg:
            for after in deadlines:
                tg.start_soon(call_then_maybe_cancel, after)
        assert sum(finished.values()) == 400
        assert finished["cancelled"] >= deadlines.count(0.0), f"seed {seed}: {finished}"
        never = deadlines.count(float("inf"))
        assert finished["done"] + finished["failed"] >= never, f"seed {seed}: {finished}"
        assert c.in_flight == 0

        # Afterwards the same client serves requests at full concurrency. (The server first
        # finishes what the cancelled calls had sent: it does not know they were abandoned.)
        assert await anyio.to_thread.run_sync(cv_emulator.wait_idle, 30.0)
        cv_emulator.set_faults(latency=0.1)
        cv_emulator.reset()
        results: list[ExtractionResult] = []

        async def call() -> None:
            results.append(await c.extract_card(CARD))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency * 3):
                tg.start_soon(call)
        assert len(results) == concurrency * 3
        assert cv_emulator.stats()["peak_in_flight"] == concurrency
        assert c.in_flight == 0


MUST_SHOW_FAULTS = Faults(
    seed=42,
    rate_429=0.04,
    rate_500=0.04,
    rate_502=0.03,
    rate_503=0.04,
    rate_504=0.02,
    rate_drop=0.02,
    rate_malformed=0.01,
    retry_after="0",
)


async def test_2000_calls_with_20_percent_faults_all_end_typed(
    cv_emulator: RunningEmulator, anyio_backend: str, slow_tier: bool
) -> None:
    # 2,000 under asyncio; trio runs a quarter of them unless in the slow tier.
    n = 2000 if anyio_backend == "asyncio" or slow_tier else 500
    cv_emulator.set_faults(MUST_SHOW_FAULTS)
    assert sum(
        getattr(MUST_SHOW_FAULTS, f"rate_{k}")
        for k in ("429", "500", "502", "503", "504", "drop", "malformed")
    ) == pytest.approx(0.2)
    outcomes: Counter[str] = Counter()
    async with cv_emulator.client(max_concurrency=32, retry=NO_WAIT) as c:

        async def call() -> None:
            try:
                await c.extract_card(CARD)
                outcomes["ok"] += 1
            except CVError as exc:
                outcomes[type(exc).__name__] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(call)
        usage = c.usage
    stats = cv_emulator.stats()
    print(
        f"\n[{anyio_backend}] {n} calls, 20% faults, concurrency 32: outcomes {dict(outcomes)}; "
        f"client: requests {usage.requests}, retries {usage.retries} "
        f"(ambiguous {usage.ambiguous_retries}), billed {usage.billed}; "
        f"server: requests {stats['requests']}, billed {stats['billed']}, "
        f"faults {stats['faults_total']} {stats['faults']}, "
        f"peak in flight {stats['peak_in_flight']}"
    )
    assert sum(outcomes.values()) == n
    assert set(outcomes) <= {
        "ok",
        "InternalServerError",
        "RateLimitError",
        "APIConnectionError",
        "MalformedResponseError",
    }
    assert outcomes["ok"] == usage.answers == usage.billed
    assert usage.requests == stats["requests"]
    assert stats["peak_in_flight"] <= 32
    # What the server billed beyond what the client saw came from answers lost in transit.
    lost = stats["faults"].get("drop", 0) + stats["faults"].get("malformed", 0)
    assert stats["billed"] == usage.billed + lost
    assert outcomes["ok"] > n * 0.95


# -- the raw edge of the network ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sharded", "pool", "aiohttp"])
async def test_a_server_that_closes_after_the_request_is_an_ambiguous_failure(
    transport: str, anyio_backend: str
) -> None:
    # It read the whole request and may have done the work: billing-safe mode must not resend
    # it, whatever the transport's own name for the failure.
    if transport == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")

    async def close_at_once(head: bytes, writer: asyncio.StreamWriter) -> None:
        pass

    safe = RetryPolicy(retry_ambiguous=False, backoff_base=0.0)
    with RawServer(close_at_once) as server:
        async with AsyncCVClient(
            "k",
            "s",
            base_url=server.base_url,
            retry=safe,
            transport=transport,  # type: ignore[arg-type]
        ) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.extract_card(CARD)
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.kind == "transport"
    assert server.requests == 1


async def test_reads_cancelled_while_they_wait_for_the_budget_close_cleanly() -> None:
    # Eight answers of 1.5 MiB against a 2 MiB budget: all but the largest read wait for it.
    # Cancelling them then must close every stream (under trio, a generator left to the garbage
    # collector is a warning, and warnings are errors here).
    body = samples.answer(dict(samples.PASSPORT, info={"note": "x" * 1_500_000}))
    started = anyio.Event()

    async def big(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    with RawServer(big) as server:
        async with AsyncCVClient(
            "k", "s", base_url=server.base_url, max_response_size=2 * 1024 * 1024, max_retries=0
        ) as client:
            budget = client._engine.read_budget
            take = budget.take

            async def watched(token: int, size: int) -> None:
                if budget._changed is not None:
                    started.set()  # somebody waits for the budget
                await take(token, size)

            budget.take = watched  # type: ignore[method-assign]
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(client.extract_card, CARD)
                    await started.wait()
                    scope.cancel()
            gc.collect()  # what a cancelled read left behind is finalised now, in the test
            await anyio.sleep(0)
            assert budget.used == 0
            assert (await client.extract_card(CARD)).cards  # and the client goes on
