"""Adaptive concurrency: the limit's rules on a fake clock, then the client against the
emulator's capacity model over real sockets."""

from __future__ import annotations

import anyio
import pytest

from cvekyc_async import (
    AdaptiveConcurrency,
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    ConfigurationError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
)
from cvekyc_async._adaptive import AdaptiveLimit, is_overload
from cvekyc_async.emulator import RunningEmulator, specimen_path

CARD = specimen_path("chip_front.jpg")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(limit: AdaptiveLimit, latency: float, *, in_flight: int | None = None) -> int | None:
    """One window of answers, all after ``latency`` seconds, sent with ``in_flight`` in flight
    (the whole limit by default); returns the last change of the limit, if any."""
    changed = None
    size = max(10, limit.current)
    for _ in range(size):
        token = limit.started(limit.current if in_flight is None else in_flight)
        outcome = limit.finished(token, latency)
        changed = outcome if outcome is not None else changed
    return changed


def test_slow_start_doubles_while_latency_holds_then_grows_by_one() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=4, ceiling=64), clock=Clock())
    seen = [limit.current]
    for _ in range(3):
        window(limit, 0.100)
        seen.append(limit.current)
    assert seen == [4, 8, 16, 32]
    window(limit, 0.130)  # latency rose (1.3 x): slow start ends, growth goes on by one
    assert limit.current == 33
    window(limit, 0.130)
    assert limit.current == 34


def test_it_never_passes_the_ceiling() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=4, ceiling=10), clock=Clock())
    for _ in range(10):
        window(limit, 0.1)
    assert limit.current == 10


def test_a_limit_not_used_in_full_does_not_grow() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=8), clock=Clock())
    for _ in range(5):
        window(limit, 0.1, in_flight=3)  # three callers only
    assert limit.current == 8


def test_latency_past_the_tolerance_shrinks_the_limit() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=20, tolerance=1.5), clock=Clock())
    window(limit, 0.100)  # no-load latency
    before = limit.current
    window(limit, 0.140)  # within tolerance: grows
    assert limit.current > before
    grown = limit.current
    assert window(limit, 0.200) == int(grown * 0.9)  # 2 x: queueing at the service


def test_an_overload_cuts_at_once_and_only_once_for_what_was_in_flight() -> None:
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=4, ceiling=64), clock=clock)
    for _ in range(3):
        window(limit, 0.1)
    assert limit.current == 32
    in_flight = [limit.started(32) for _ in range(32)]
    # The first 429 cuts by a quarter, before any window ends.
    assert limit.finished(in_flight[0], None, overloaded=True) == 24
    # The other answers to attempts sent at the old limit do not cut again.
    for token in in_flight[1:]:
        assert limit.finished(token, None, overloaded=True) is None
    assert limit.current == 24
    # An attempt sent after the cut that is turned away cuts again.
    token = limit.started(24)
    assert limit.finished(token, None, overloaded=True) == 18


def test_after_an_overload_the_limit_stays_below_it_for_a_while() -> None:
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=16, ceiling=64), clock=clock)
    window(limit, 0.1)
    assert limit.current == 32
    limit.finished(limit.started(32), None, overloaded=True)
    assert limit.current == 24
    for _ in range(30):
        clock.now += 0.5
        window(limit, 0.1)
    assert limit.current == 31  # grew back to just below the level that overloaded
    clock.now += 30
    for _ in range(5):
        window(limit, 0.1)
    assert limit.current == 36  # then probes above it again, one at a time


def test_a_run_of_quick_answers_does_not_pin_the_limit_down() -> None:
    # Answers of 5 ms for a while (cache hits, tiny images), then 60 ms for good: shrinking
    # does not bring latency back down, so the 5 ms mark is dropped and the limit grows again.
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=32, ceiling=64), clock=Clock())
    for _ in range(3):
        window(limit, 0.005)
    levels = []
    for _ in range(40):
        window(limit, 0.060)
        levels.append(limit.current)
    assert min(levels) >= 16  # a few steps down, not to the floor
    assert levels[-1] == 64


@pytest.mark.parametrize("instant", [0.0, 1e-9])
def test_instant_answers_do_not_pin_the_limit_at_the_floor(instant: float) -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=8, ceiling=32), clock=Clock())
    window(limit, instant)
    for _ in range(40):
        window(limit, 0.002)
    assert limit.current == 32


def test_a_queue_of_ours_is_never_taken_for_the_services_latency() -> None:
    # A service that takes 8 at once and queues the rest, never answering 429: latency grows
    # with what is in flight beyond 8. The limit must come down to near 8 and stay there.
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=4, ceiling=64, tolerance=1.5), clock=Clock())
    levels = []
    for _ in range(400):
        window(limit, 0.05 * max(1.0, limit.current / 8))
        levels.append(limit.current)
    assert max(levels[-300:]) <= 13  # about 1.5 x the no-load latency: half a queue
    assert min(levels[-300:]) >= 7


def test_it_never_falls_below_the_minimum() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=2, minimum=2), clock=Clock())
    for _ in range(10):
        limit.finished(limit.started(2), None, overloaded=True)
    assert limit.current == 2


@pytest.mark.parametrize(
    ("error", "overload"),
    [
        (RateLimitError(429), True),
        (InternalServerError(503), True),
        (InternalServerError(504), True),
        (InternalServerError(500), False),
        (APIStatusError(400), False),
        (APITimeoutError("slow", kind="read"), True),
        (APITimeoutError("no connection", kind="connect"), False),
    ],
)
def test_which_failures_say_the_service_is_overloaded(error: object, overload: bool) -> None:
    assert is_overload(error) is overload  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial": 0}, "initial must be an integer >= 1"),
        ({"ceiling": 2.5}, "ceiling must be an integer"),
        ({"minimum": True}, "minimum must be an integer"),
        ({"initial": 8, "ceiling": 4}, "minimum <= initial <= ceiling"),
        ({"tolerance": 1.0}, "tolerance must be a number > 1"),
        ({"tolerance": float("nan")}, "tolerance must be a number > 1"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveConcurrency(**options)  # type: ignore[arg-type]


def test_the_client_takes_auto_and_refuses_other_words() -> None:
    client = AsyncCVClient("k", "s", max_concurrency="auto")
    assert client.max_concurrency == 64  # the ceiling sizes the pool
    assert client.concurrency == 4
    custom = AsyncCVClient("k", "s", max_concurrency=AdaptiveConcurrency(initial=2, ceiling=9))
    assert (custom.max_concurrency, custom.concurrency) == (9, 2)
    with pytest.raises(ConfigurationError, match="'auto' or an AdaptiveConcurrency"):
        AsyncCVClient("k", "s", max_concurrency="automatic")  # type: ignore[arg-type]
    fixed = AsyncCVClient("k", "s", max_concurrency=7)
    assert fixed.concurrency == fixed.max_concurrency == 7


# -- against the emulator's capacity model ------------------------------------------------------


@pytest.mark.anyio
async def test_the_capacity_model_turns_away_what_its_queue_cannot_hold(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(capacity=2, queue=1, latency=1.0)
    outcomes: list[str] = []
    async with cv_emulator.client(max_concurrency=6, max_retries=0) as client:

        async def call() -> None:
            try:
                await client.extract_card(CARD)
                outcomes.append("ok")
            except RateLimitError as exc:
                outcomes.append(f"429 after {exc.retry_after:g} s")

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(call)
    assert sorted(outcomes) == ["429 after 1 s"] * 3 + ["ok"] * 3
    stats = cv_emulator.stats()
    assert stats["busy"] == 3
    assert stats["billed"] == 3


@pytest.mark.anyio
async def test_auto_finds_a_level_the_service_takes(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(capacity=6, queue=3, latency=0.02, jitter=0.01, retry_after="0", seed=9)
    levels: list[int] = []
    async with cv_emulator.client(
        max_concurrency="auto", retry=RetryPolicy(max_retries=6, backoff_base=0.0)
    ) as client:
        async with client.extract_as_completed(
            [CARD] * 400, progress=lambda p: levels.append(p.concurrency)
        ) as results:
            ok = [r.ok async for r in results]
        final = client.concurrency
    stats = cv_emulator.stats()
    assert ok == [True] * 400
    assert max(levels) > 6  # it rose past the service's capacity...
    assert final <= 6 + 3  # ...and settled where nothing is turned away
    # Overloads are cut short: a few requests turned away, not a storm.
    assert stats["busy"] <= 0.03 * stats["requests"], stats


@pytest.mark.anyio
async def test_auto_rises_to_its_ceiling_on_an_unlimited_service(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(latency=0.05)
    auto = AdaptiveConcurrency(initial=2, ceiling=12)
    async with cv_emulator.client(max_concurrency=auto) as client:
        async with client.extract_as_completed([CARD] * 200) as results:
            assert all([r.ok async for r in results])
        assert client.concurrency == 12
    assert cv_emulator.stats()["peak_in_flight"] <= 12
