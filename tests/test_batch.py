"""The batch helper against the emulator: order, exactly-once accounting, laziness, fatal stops."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from cvekyc_async import (
    AsyncCVClient,
    AuthenticationError,
    BatchProgress,
    BatchResult,
    InvalidInputError,
    NoDocumentError,
    QuotaExceededError,
    RetryPolicy,
)
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(backoff_base=0.0, max_retries=6)
CARD = specimen_path("chip_front.jpg")


def distinct_images(n: int) -> list[bytes]:
    """n different JPEG-looking inputs: the emulator gives each its own synthetic card."""
    return [samples.JPEG + i.to_bytes(4, "big") for i in range(n)]


async def test_extract_many_returns_one_result_per_input_in_order(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    inputs: list[object] = [
        CARD,
        str(tmp_path / "missing.jpg"),
        specimen_path("blank.jpg"),
        b"not an image",
        specimen_path("passport.jpg"),
        cv_emulator.specimen_url("chip_back.jpg"),
    ]
    async with cv_emulator.client() as c:
        results = await c.extract_many(inputs)
    assert [r.index for r in results] == list(range(len(inputs)))
    assert [r.input for r in results] == inputs
    assert [r.ok for r in results] == [True, False, False, False, True, True]
    assert isinstance(results[1].error, InvalidInputError)
    assert results[1].attempts == 0
    assert isinstance(results[2].error, NoDocumentError)
    assert results[2].attempts == 1
    assert isinstance(results[3].error, InvalidInputError)
    assert results[4].result is not None
    assert results[4].result.cards[0].type == "passport"
    assert [r.billed for r in results] == [True, False, False, False, True, True]


async def test_every_input_ends_exactly_once_under_faults(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(
        seed=11, rate_503=0.1, rate_500=0.05, rate_drop=0.05, rate_malformed=0.02, retry_after="0"
    )
    images = distinct_images(300)
    async with cv_emulator.client(retry=NO_WAIT, max_concurrency=16) as c:
        results = await c.extract_many(images, concurrency=24)
        usage = c.usage
    assert [r.index for r in results] == list(range(300))
    assert all(r.input is images[r.index] for r in results)
    outcomes = Counter("ok" if r.ok else type(r.error).__name__ for r in results)
    assert sum(outcomes.values()) == 300
    assert outcomes["ok"] == usage.answers
    # Only truncated answers are not retried; everything else got through.
    assert set(outcomes) <= {"ok", "MalformedResponseError"}
    assert outcomes["MalformedResponseError"] == cv_emulator.stats()["faults"].get("malformed", 0)


async def test_results_stream_in_completion_order(cv_emulator: RunningEmulator) -> None:
    seen: list[BatchResult] = []
    async with (
        cv_emulator.client() as c,
        c.extract_as_completed(distinct_images(40), concurrency=8) as results,
    ):
        async for r in results:
            seen.append(r)
    assert sorted(r.index for r in seen) == list(range(40))


async def test_inputs_are_pulled_lazily_with_backpressure(cv_emulator: RunningEmulator) -> None:
    pulled = 0
    consumed = 0
    peak_pending = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled, peak_pending
        i = 0
        while True:
            pulled += 1
            peak_pending = max(peak_pending, pulled - consumed)
            i += 1
            yield samples.JPEG + i.to_bytes(8, "big")

    concurrency = 4
    async with (
        cv_emulator.client(max_concurrency=concurrency) as c,
        c.extract_as_completed(endless(), concurrency=concurrency) as results,
    ):
        async for r in results:
            assert r.ok
            consumed += 1
            if consumed == 60:
                break
    # Workers hold one input each and the stream buffers one result per worker.
    bound = 2 * concurrency + 1
    assert peak_pending <= bound
    assert pulled <= 60 + bound
    assert c.in_flight == 0


async def test_async_iterable_inputs(cv_emulator: RunningEmulator) -> None:
    async def paths() -> AsyncIterator[Path]:
        for name in ("chip_front.jpg", "chip_back.jpg", "passport.jpg"):
            await anyio.lowlevel.checkpoint()
            yield specimen_path(name)

    async with cv_emulator.client() as c:
        results = await c.extract_many(paths(), concurrency=3)
    assert [r.result.cards[0].type for r in results if r.result] == [
        "chip_id_card_front",
        "chip_id_card_back",
        "passport",
    ]


async def test_quota_used_up_stops_the_batch_and_marks_the_rest(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.state.settings.quota = 5
    async with cv_emulator.client() as c:
        results = await c.extract_many(distinct_images(50), concurrency=1)
    assert [r.ok for r in results[:5]] == [True] * 5
    assert all(isinstance(r.error, QuotaExceededError) for r in results[5:])
    assert results[5].attempts == 1
    assert all(r.attempts == 0 for r in results[6:])  # never sent
    assert cv_emulator.stats()["requests"] == 6


async def test_bad_credentials_stop_the_batch(cv_emulator: RunningEmulator) -> None:
    async with AsyncCVClient(
        cv_emulator.api_key, "wrong-secret", base_url=cv_emulator.base_url
    ) as c:
        results = await c.extract_many(distinct_images(30), concurrency=3)
    assert len(results) == 30
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert cv_emulator.stats()["requests"] <= 3
    assert sum(r.attempts == 0 for r in results) >= 27


async def test_fatal_stop_can_be_turned_off(cv_emulator: RunningEmulator) -> None:
    cv_emulator.state.settings.quota = 2
    async with cv_emulator.client() as c:
        results = await c.extract_many(distinct_images(10), concurrency=2, fatal_errors=())
    assert sum(r.ok for r in results) == 2
    assert all(r.attempts == 1 for r in results)
    assert cv_emulator.stats()["requests"] == 10


async def test_cancelling_a_batch_stops_it_and_keeps_the_client(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(latency=0.01)
    with anyio.CancelScope() as scope:

        def stop_after_20(p: BatchProgress) -> None:
            if p.done == 20:
                scope.cancel()

        async with cv_emulator.client(max_concurrency=8) as c:
            await c.extract_many(distinct_images(10_000), progress=stop_after_20)
    assert scope.cancelled_caught
    assert c.in_flight == 0
    assert cv_emulator.stats()["requests"] < 100
    async with cv_emulator.client() as again:
        assert (await again.extract_card(CARD)).billed


async def test_the_same_client_works_after_a_cancelled_batch(
    cv_emulator: RunningEmulator,
) -> None:
    async with cv_emulator.client(max_concurrency=4) as c:
        with anyio.CancelScope() as scope:

            def stop(p: BatchProgress) -> None:
                if p.done == 10:
                    scope.cancel()

            await c.extract_many(distinct_images(1000), progress=stop)
        assert c.in_flight == 0
        results = await c.extract_many(distinct_images(12))
        assert all(r.ok for r in results)


async def test_pairs_for_the_two_sides_endpoint(cv_emulator: RunningEmulator) -> None:
    pairs: list[object] = [
        (specimen_path("chip_front.jpg"), specimen_path("chip_back.jpg")),
        [specimen_path("cccd_front.jpg"), specimen_path("cccd_back.png")],
        specimen_path("chip_front.jpg"),  # not a pair
    ]
    async with cv_emulator.client() as c:
        results = await c.extract_many(pairs, endpoint="cards")
    assert results[0].result is not None
    assert [card.type for card in results[0].result.cards] == [
        "chip_id_card_front",
        "chip_id_card_back",
    ]
    assert results[1].ok
    assert isinstance(results[2].error, InvalidInputError)
    assert "(front, back) pairs" in str(results[2].error)


async def test_ocr_endpoint_in_a_batch(cv_emulator: RunningEmulator) -> None:
    async with cv_emulator.client() as c:
        [r] = await c.extract_many([specimen_path("scan.pdf")], endpoint="ocr")
    assert r.result is not None
    assert len(r.result.cards) == 2


async def test_progress_reports_done_failed_billed_and_total(
    cv_emulator: RunningEmulator,
) -> None:
    reports: list[BatchProgress] = []
    inputs = [CARD, specimen_path("blank.jpg"), CARD, b"junk"]
    async with cv_emulator.client() as c:
        await c.extract_many(inputs, concurrency=1, progress=reports.append)
        await c.extract_many(iter([CARD]), progress=reports.append)
    assert [(p.done, p.failed, p.billed, p.total) for p in reports] == [
        (1, 0, 1, 4),
        (2, 1, 1, 4),
        (3, 1, 2, 4),
        (4, 2, 2, 4),
        (1, 0, 1, None),
    ]


@pytest.mark.parametrize(
    ("inputs", "kwargs", "message"),
    [
        ([CARD], {"endpoint": "pdf"}, "endpoint must be"),
        ([CARD], {"concurrency": 0}, "concurrency must be"),
        ([CARD], {"fatal_errors": (ValueError,)}, "fatal_errors"),
        ("front.jpg", {}, "inputs must be an iterable"),
        (42, {}, "inputs must be an iterable"),
    ],
)
async def test_bad_batch_options_raise_before_anything_is_sent(
    cv_emulator: RunningEmulator, inputs: object, kwargs: dict, message: str
) -> None:
    async with cv_emulator.client() as c:
        with pytest.raises(InvalidInputError, match=message):
            await c.extract_many(inputs, **kwargs)  # type: ignore[arg-type]
    assert cv_emulator.stats()["requests"] == 0


async def test_empty_batch(cv_emulator: RunningEmulator) -> None:
    async with cv_emulator.client() as c:
        assert await c.extract_many([]) == []
