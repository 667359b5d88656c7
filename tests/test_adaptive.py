"""Adaptive concurrency: the limit's rules on a fake clock, then the client against the
emulator's capacity model over real sockets."""

from __future__ import annotations

import heapq
import itertools
import random
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

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
from cvekyc_async._adaptive import AdaptiveLimit, Token, is_overload
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
    # 2 x: queueing at the service, once it lasts two windows (one may be a hiccup).
    assert window(limit, 0.200) is None
    assert window(limit, 0.200) == int(grown * 0.9)


def test_an_overload_cuts_at_once_back_to_the_level_that_held() -> None:
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=4, ceiling=64), clock=clock)
    for _ in range(3):
        window(limit, 0.1)
    assert limit.current == 32  # doubled from 16, which held
    in_flight = [limit.started(17 + i) for i in range(16)]
    # The first 429 cuts at once, before any window ends, to the level that held.
    assert limit.finished(in_flight[0], None, overloaded=True) == 16
    # The other answers to attempts sent at the old limit do not cut again.
    for token in in_flight[1:]:
        assert limit.finished(token, None, overloaded=True) is None
    # Nor does one sent after the cut and turned away within a round trip: the same episode.
    clock.now += 0.05
    assert limit.finished(limit.started(16), None, overloaded=True) is None
    assert limit.current == 16


def test_a_probe_above_a_hard_capacity_costs_one_step_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=12, ceiling=64), clock=clock)
    window(limit, 0.1)  # 12 held: slow start doubles
    assert limit.current == 24
    limit.finished(limit.started(13), None, overloaded=True)  # 13 is one too many
    assert limit.current == 12  # the level that held
    clock.now += 5
    window(limit, 0.1)  # the hold is over: a probe above it
    assert limit.current == 13
    limit.finished(limit.started(13), None, overloaded=True)
    assert limit.current == 12  # back to the level that held, and it holds there again
    levels = []
    for _ in range(40):
        clock.now += 0.1
        window(limit, 0.1)
        levels.append(limit.current)
    assert levels[:10] == [12] * 10  # held below the level that overloaded
    assert levels[-1] > 12  # then probed above it


def test_one_burst_of_503_costs_one_cut_and_the_level_comes_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=48, ceiling=48), clock=clock)
    for _ in range(3):
        clock.now += 0.1
        window(limit, 0.1)
    changes = []
    for _ in range(200):  # one second of quick 503s, one every 5 ms
        clock.now += 0.005
        changed = limit.finished(limit.started(limit.current), None, overloaded=True)
        if changed is not None:
            changes.append(changed)
    assert changes == [36]
    back = None
    for step in range(30):  # then answers again, 100 ms each
        clock.now += 0.1
        window(limit, 0.1)
        if back is None and limit.current >= 47:
            back = step
    assert back is not None
    assert back <= 3  # within a few round trips
    assert limit.current == 48  # and the full level once the hold is over


def test_overloads_mixed_with_answers_cut_again_a_bounded_number_of_times() -> None:
    # The service's capacity fell: attempts sent after the cut are answered and turned away.
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=40, ceiling=40), clock=clock)
    window(limit, 0.1)
    levels = []
    for _ in range(100):  # two answers and one overload every 20 ms, for 2 s
        clock.now += 0.02
        limit.finished(limit.started(limit.current), 0.1)
        limit.finished(limit.started(limit.current), 0.1)
        changed = limit.finished(limit.started(limit.current), None, overloaded=True)
        if changed is not None:
            levels.append((changed, clock.now))
    # A quarter; then, a round trip (100 ms) apart, to the answers of the last round trip
    # (10) or by a quarter when that is less; four cuts an episode at most.
    assert [level for level, _ in levels] == [30, 10, 7, 5]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(levels)]
    assert all(0.1 - 1e-9 <= gap < 0.13 for gap in gaps), levels  # a round trip apart


def test_the_no_load_latency_is_only_taken_afresh_at_low_load() -> None:
    # Answers of 5 ms for a while (cache hits, tiny images), then 60 ms for good: shrinking
    # does not bring latency back down, so the limit drops to two in flight until five answers
    # sent that way give the no-load latency; the shrinking is then undone.
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=32, ceiling=64), clock=Clock())
    for _ in range(3):
        window(limit, 0.005)
    levels = []
    for _ in range(40):
        window(limit, 0.060)
        levels.append(limit.current)
    probe = levels.index(2)
    assert min(levels[:probe]) >= 16  # a few steps down, not to the floor
    assert levels[probe + 1] == 64  # back where the shrinking began
    assert levels[-1] == 64


def test_answers_sent_under_load_never_set_the_no_load_latency() -> None:
    limit = AdaptiveLimit(AdaptiveConcurrency(initial=32, ceiling=64), clock=Clock())
    window(limit, 0.005)
    for _ in range(40):
        # 60 ms, but sent with 32 in flight even when the limit is lower: never at low load.
        window(limit, 0.060, in_flight=32)
    assert limit.current == 2  # still waiting for answers at low load


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


# -- a small discrete-event simulation: callers, the limit, a service model ---------------------


class HardCapacity:
    """Takes ``capacity(now)`` at once and answers 429 at once beyond that."""

    def __init__(self, capacity: Callable[[float], int], latency: float, rng: random.Random):
        self.capacity, self.latency, self.rng, self.busy = capacity, latency, rng, 0

    def arrive(self, now: float) -> tuple[float, int]:
        if self.busy >= self.capacity(now):
            return 0.001, 429
        self.busy += 1
        return self.latency * (1 + 0.2 * self.rng.random()), 200

    def leave(self, status: int) -> None:
        self.busy -= status == 200


class Queueing:
    """A fixed number of workers and an unbounded queue: never says no, only grows slower."""

    def __init__(self, workers: int, service: float, rng: random.Random):
        self.free, self.service, self.rng = [0.0] * workers, service, rng

    def arrive(self, now: float) -> tuple[float, int]:
        end = max(now, heapq.heappop(self.free)) + self.service * (1 + 0.2 * self.rng.random())
        heapq.heappush(self.free, end)
        return end - now, 200

    def leave(self, status: int) -> None:
        pass


class Bursts:
    """No capacity limit, but the last second of every five answers 503 at once."""

    def __init__(self, latency: float, rng: random.Random):
        self.latency, self.rng = latency, rng

    def arrive(self, now: float) -> tuple[float, int]:
        if now % 5.0 >= 4.0:
            return 0.001, 503
        return self.latency * (1 + 0.2 * self.rng.random()), 200

    def leave(self, status: int) -> None:
        pass


@dataclass
class Run:
    answers: list[float]  # when each answer came
    statuses: Counter[int]
    levels: list[int]  # the limit every 0.25 s

    def rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.answers) / (end - start)

    def share(self, status: int) -> float:
        return self.statuses[status] / sum(self.statuses.values())


def simulate(
    service: HardCapacity | Queueing | Bursts, seconds: float, seed: int, send_gap: float = 0.0
) -> Run:
    """100 callers, each sending as soon as the limit lets it and retrying an overload twice
    after a random backoff (as the client does), for ``seconds`` of simulated time. With
    ``send_gap``, the client can send only one request every that many seconds (a client
    short of CPU)."""
    rng = random.Random(seed)
    clock = Clock()
    limit = AdaptiveLimit(AdaptiveConcurrency(), clock=clock)
    events: list[tuple[float, int, int, Token | None, float, int]] = []
    waiting: deque[int] = deque([0] * 100)  # callers ready to send: their retry count
    in_flight = 0
    next_send = 0.0
    run = Run([], Counter(), [])
    while True:
        while waiting and in_flight < limit.current:
            if clock.now < next_send:
                heapq.heappush(events, (next_send, rng.getrandbits(60), -1, None, 0, 0))
                break
            next_send = clock.now + send_gap
            retries = waiting.popleft()
            in_flight += 1
            token = limit.started(in_flight)
            latency, status = service.arrive(clock.now)
            heapq.heappush(
                events, (clock.now + latency, id(token), retries, token, latency, status)
            )
        now, _, retries, token, latency, status = heapq.heappop(events)
        if now > seconds:
            return run
        while len(run.levels) * 0.25 <= now:
            run.levels.append(limit.current)
        clock.now = now
        if token is None:  # a backoff is over (or the client may send again)
            if retries >= 0:
                waiting.append(retries)
            continue
        in_flight -= 1
        service.leave(status)
        run.statuses[status] += 1
        if status == 200:
            limit.finished(token, latency)
            run.answers.append(now)
            waiting.append(0)
        else:
            limit.finished(token, None, overloaded=True)
            if retries < 2:
                wait = rng.uniform(0, 0.5 * 2**retries)
                heapq.heappush(events, (now + wait, rng.getrandbits(60), retries + 1, None, 0, 0))
            else:
                waiting.append(0)  # that call failed; the caller takes its next input


@pytest.mark.parametrize("capacity", [8, 16, 40])
def test_behind_a_hard_capacity_it_settles_at_nine_tenths_of_it_or_more(capacity: int) -> None:
    seed = 100 + capacity
    run = simulate(HardCapacity(lambda now: capacity, 0.05, random.Random(seed)), 20, seed)
    best = capacity / 0.055  # every slot busy, at the mean latency
    assert run.rate(5, 20) >= 0.9 * best, (seed, run.levels)
    assert min(run.levels[20:]) >= 0.75 * capacity, (seed, run.levels)
    assert run.share(429) <= 0.02, (seed, run.statuses)


@pytest.mark.parametrize("workers", [4, 8, 16])
def test_behind_a_queue_it_stays_near_the_knee(workers: int) -> None:
    seed = 200 + workers
    run = simulate(Queueing(workers, 0.1, random.Random(seed)), 60, seed)
    late = run.levels[40:]
    assert sum(late) / len(late) <= 1.6 * workers, (seed, run.levels)  # no drift upwards
    assert max(late) <= 2.5 * workers, (seed, run.levels)
    assert run.rate(10, 60) >= 0.9 * workers / 0.11, (seed, run.levels)  # every worker busy


def test_periodic_503_bursts_cost_one_cut_each() -> None:
    run = simulate(Bursts(0.1, random.Random(7)), 30, 7)
    free = 64 / 0.11 * 0.8  # the ceiling's worth, four seconds in five
    assert run.rate(5, 30) >= 0.9 * free, run.levels
    assert min(run.levels[8:]) >= 48, run.levels  # one cut by a quarter a burst, no more


def test_a_client_short_of_cpu_is_not_ratcheted_down_by_bursts() -> None:
    # The client sends at most 300 requests a second, so fewer are in flight than the limit
    # allows: attempts turned away by a burst were sent with few in flight, which says nothing
    # of the service's level. The limit must not fall burst after burst.
    run = simulate(Bursts(0.1, random.Random(11)), 40, 11, send_gap=1 / 300)
    assert run.rate(5, 40) >= 0.9 * 300 * 0.8, run.levels  # all the client can send
    assert min(run.levels[8:]) >= 24, run.levels  # about 30 in flight keep it busy


def test_capacity_steps_down_and_back_up_are_followed() -> None:
    def capacity(now: float) -> int:
        return 8 if 10 <= now < 20 else 40

    run = simulate(HardCapacity(capacity, 0.05, random.Random(5)), 30, 5)
    assert run.rate(13, 20) >= 0.9 * 8 / 0.055, run.levels  # down within 3 s
    assert max(run.levels[4 * 13 : 4 * 20]) <= 10, run.levels
    assert run.rate(23, 30) >= 0.9 * 40 / 0.055, run.levels  # back up within 3 s
    assert run.share(429) <= 0.02, run.statuses


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
    async with (
        cv_emulator.client(
            max_concurrency="auto", retry=RetryPolicy(max_retries=6, backoff_base=0.0)
        ) as client,
        client.extract_as_completed(
            [CARD] * 800, progress=lambda p: levels.append(p.concurrency)
        ) as results,
    ):
        ok = [r.ok async for r in results]
    stats = cv_emulator.stats()
    assert ok == [True] * 800
    assert max(levels) > 6  # it rose past the service's capacity...
    # ...and settled where nothing is turned away (but for a probe above it now and then).
    assert statistics.median(levels[len(levels) // 2 :]) <= 6 + 3, levels
    # Overloads are cut short: a few requests turned away, not a storm.
    assert stats["busy"] <= 0.03 * stats["requests"], stats


@pytest.mark.anyio
async def test_auto_rises_to_its_ceiling_on_an_unlimited_service(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(latency=0.05)
    auto = AdaptiveConcurrency(initial=2, ceiling=12)
    levels: list[int] = []
    async with (
        cv_emulator.client(max_concurrency=auto) as client,
        client.extract_as_completed(
            [CARD] * 200, progress=lambda p: levels.append(p.concurrency)
        ) as results,
    ):
        assert all([r.ok async for r in results])
    # It gets there, and mostly stays (a busy machine's slower answers may cost a step late on).
    assert max(levels) == 12
    assert sorted(levels)[len(levels) // 2] >= 10
    assert cv_emulator.stats()["peak_in_flight"] <= 12
