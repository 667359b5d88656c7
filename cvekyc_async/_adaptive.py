"""Concurrency that finds its own level: ``max_concurrency="auto"``.

Nobody knows the service's capacity for their account: too few requests in flight waste hours
of a big batch, too many queue at the service until it answers 429. The limit here moves with
what the answers say, in the way of TCP Vegas and Netflix's concurrency-limits (Gradient2), with
CUBIC's memory of the level that last overloaded:

- a *window* is one limit's worth of finished attempts (at least ``_MIN_WINDOW``); the *round
  trip* is the last window's median latency (or the no-load latency before there is one);
- the no-load latency is the lowest window median seen (at least 1 ms). It is only ever taken
  afresh, upwards, at low load: when the limit has shrunk for latency ``_STALE_AFTER`` windows
  running and latency has not fallen with it, the limit drops to ``_LOW_LOAD`` in flight until
  ``_PROBE_ANSWERS`` attempts sent that way have answered; their median is the new no-load
  latency, and the limit goes back to where the shrinking began if that is more than
  ``tolerance`` times the old (the service became slower), else where it was. A loaded window
  never sets it;
- while the window's latency stays near the no-load latency and the limit was used in full,
  the limit doubles (slow start, until latency first rises) and then grows by a step that
  doubles each window latency stays flat (by one while it rises), at most a quarter of the limit;
- when latency passes ``tolerance`` times the no-load latency two windows running (one may be a
  pause of either side; two are requests queueing at the service), the limit shrinks by a tenth;
- an overload answer (429, 503, 504, a read timeout) opens an *overload episode*, which lasts
  while overloads keep coming less than one round trip apart. Answers to attempts sent before
  the latest cut never cut. The episode's first cut is at once: back to the level last used in
  full without overload when the limit was above it (a doubling, a step of a probe), else by a
  quarter or to one below the number in flight when the turned-away attempt was sent, whichever
  is lower, never by more than half. A further cut of the same episode needs a round trip since
  the last and an attempt sent after it that was answered: overloads mixed with answers say the
  level is still too high, and the limit goes to the answers of the last round trip (what the
  service serves at once, by Little's law), cutting by a quarter at least, three at most.
  A burst that turns everything away (a service failing for a moment) costs one cut; an episode
  at most ``_MAX_CUTS``;
- after an episode the limit doubles back, window by window, to the level it was cut from (less
  one, or lower where an attempt sent with fewer in flight was turned away; the level a further
  cut reached, when there was one), and holds there for ``_HOLD_ROUND_TRIPS`` round trips
  (within ``_HOLD_MIN`` .. ``_HOLD_MAX`` seconds) before probing above it again; so a hard
  capacity costs a 429 now and then, not a storm, and capacity that comes back is found within
  a few seconds.

It never goes below ``minimum`` nor above ``ceiling``. A limit that is not used in full (fewer
callers than slots) does not grow.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ._errors import APIStatusError, APITimeoutError, CVError

__all__ = ["AdaptiveConcurrency", "AdaptiveLimit", "Token", "is_overload"]

_MIN_WINDOW = 10
# The no-load latency is never taken as less than this (a window of instant answers).
_FLOOR = 0.001
# Shrinking for latency this many windows running without latency falling by _FALLEN means the
# no-load latency may be stale: it is measured afresh at low load.
_STALE_AFTER = 5
_FALLEN = 0.85
# At most this many in flight when an attempt was sent, for its latency to count as no-load.
_LOW_LOAD = 2
# Answers at low load whose median is the new no-load latency.
_PROBE_ANSWERS = 5
# Slow start stops once a window's latency passes this multiple of the no-load latency; above
# it, the growth step stays at one.
_SLOW_START_EXIT = 1.25
_BACKOFF_LATENCY = 0.9
# The first cut of an overload episode when nothing says where the service's level is (and
# the most a further cut leaves); the least a further cut leaves.
_BACKOFF_OVERLOAD = 0.75
_BACKOFF_MOST = 0.25
_MAX_CUTS = 4
# After an episode the limit holds below the level that overloaded for this many round trips,
# in seconds within these bounds, before it probes above it.
_HOLD_ROUND_TRIPS = 30
_HOLD_MIN = 1.5
_HOLD_MAX = 30.0
# The round trip before any answer has said what it is.
_FIRST_ROUND_TRIP = 1.0


@dataclass(frozen=True, slots=True)
class AdaptiveConcurrency:
    """``max_concurrency`` that adapts to the service (``max_concurrency="auto"`` is this with
    its defaults).

    Args:
        initial: requests in flight at the start (default 4).
        ceiling: the most it may reach (default 64); the connection pool is sized to it.
        minimum: the fewest it may fall to (default 1).
        tolerance: how many times the no-load latency the answers may take before the limit
            shrinks (default 1.5): the higher, the more requests may queue at the service.

    Raises:
        ValueError: an option out of range.
    """

    initial: int = 4
    ceiling: int = 64
    minimum: int = 1
    tolerance: float = 1.5

    def __post_init__(self) -> None:
        for name in ("initial", "ceiling", "minimum"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"AdaptiveConcurrency {name} must be an integer >= 1, not {value!r}"
                )
        if not self.minimum <= self.initial <= self.ceiling:
            raise ValueError(
                "AdaptiveConcurrency needs minimum <= initial <= ceiling, not "
                f"{self.minimum} / {self.initial} / {self.ceiling}"
            )
        tolerance = self.tolerance
        if not (
            isinstance(tolerance, (int, float))
            and not isinstance(tolerance, bool)
            and math.isfinite(tolerance)
            and tolerance > 1
        ):
            raise ValueError(
                f"AdaptiveConcurrency tolerance must be a number > 1, not {tolerance!r}"
            )


def is_overload(error: CVError) -> bool:
    """Whether a failed attempt says the service has more than it can take."""
    if isinstance(error, APITimeoutError):
        return error.kind == "read"
    return isinstance(error, APIStatusError) and error.status_code in (429, 503, 504)


class Token(NamedTuple):
    """One attempt as ``AdaptiveLimit.started`` saw it go out."""

    number: int  # its place in the order attempts were started, from 1
    in_flight: int  # attempts in flight when it was sent, itself included


class AdaptiveLimit:
    """The moving limit of one client (pure: fed outcomes, it says what the limit is)."""

    __slots__ = (
        "_answered",
        "_answers",
        "_base",
        "_clock",
        "_config",
        "_cut_from",
        "_cuts",
        "_dirty",
        "_episode_last",
        "_good",
        "_hold_until",
        "_last_cut",
        "_latencies",
        "_level",
        "_low",
        "_over",
        "_peak",
        "_restore",
        "_round_trip",
        "_seen",
        "_shrinks",
        "_shrunk_at",
        "_shrunk_limit",
        "_slow_start",
        "_started",
        "_step",
        "limit",
    )

    def __init__(
        self, config: AdaptiveConcurrency, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        #: The limit now, as a float (it moves in fractions; ``current`` is what applies).
        self.limit = float(config.initial)
        self._slow_start = True
        self._step = 1.0  # growth of a window once slow start is over
        self._base: float | None = None  # the no-load latency
        self._round_trip: float | None = None  # the last window's median latency
        # The window: answers' latencies, attempts ended, most in flight, an overload seen.
        self._latencies: list[float] = []
        self._seen = 0
        self._peak = 0
        self._dirty = False
        self._over = False  # the last window's latency was past the tolerance
        # Windows running that shrank the limit for latency; their first median and limit.
        self._shrinks = 0
        self._shrunk_at = 0.0
        self._shrunk_limit = 0.0
        # While the no-load latency is measured at low load: the limit to go back to, and the
        # latencies of attempts sent at low load.
        self._restore: float | None = None
        self._low: list[float] = []
        self._started = 0  # attempts started so far: each one's number is in its token
        # Overload episodes. Overloads of attempts started before ``_cut_from`` never cut.
        self._cut_from = 0
        self._episode_last = -math.inf  # when the last overload came
        self._last_cut = -math.inf
        self._cuts = 0  # cuts of the episode so far
        self._answered = False  # an attempt started after the last cut was answered
        self._answers: deque[float] = deque()  # when the latest answers came
        self._good = 0  # the last level used in full with no overload
        self._level = 0.0  # the level to come back to after an episode
        self._hold_until = -math.inf

    @property
    def current(self) -> int:
        """Requests that may be in flight now."""
        return max(self._config.minimum, int(self.limit))

    def started(self, in_flight: int) -> Token:
        """An attempt was sent with ``in_flight`` attempts in flight, itself included; returns
        the token to give ``finished``."""
        if in_flight > self._peak:
            self._peak = in_flight
        self._started += 1
        return Token(self._started, in_flight)

    def finished(self, token: Token, latency: float | None, overloaded: bool = False) -> int | None:
        """The attempt ``token`` ended: with an answer after ``latency`` seconds, or failed
        (``None``), saying the service is overloaded or not. Returns the new limit when it
        changes."""
        before = self.current
        if overloaded:
            self._dirty = True
            if self._level > 0 and self.limit < token.in_flight:
                # Turned away when more were in flight than the limit now: the level to come
                # back to is below that.
                self._level = min(self._level, token.in_flight - 1)
            if token.number >= self._cut_from:
                self._overload(token)
                return self._changed(before)
        elif latency is not None:
            if token.number >= self._cut_from:
                self._answered = True
            self._answers.append(self._clock())
            if len(self._answers) > self._config.ceiling * 4:
                self._answers.popleft()
            if self._restore is not None and token.in_flight <= self._low_load():
                self._low.append(latency)
                if len(self._low) >= _PROBE_ANSWERS:
                    self._end_probe()
                    return self._changed(before)
        self._seen += 1
        if latency is not None:
            self._latencies.append(latency)
        if self._seen < max(_MIN_WINDOW, self.current):
            return None
        self._end_window()
        return self._changed(before)

    def _changed(self, before: int) -> int | None:
        after = self.current
        return after if after != before else None

    def _low_load(self) -> int:
        return max(self._config.minimum, _LOW_LOAD)

    def _trip(self) -> float:
        """The round trip: how long an answer takes now."""
        if self._round_trip is not None:
            return self._round_trip
        return self._base if self._base is not None else _FIRST_ROUND_TRIP

    def _served(self, now: float, trip: float) -> int:
        """Answers in the last round trip."""
        answers = self._answers
        while answers and answers[0] < now - trip:
            answers.popleft()
        return len(answers)

    def _new_window(self) -> None:
        self._latencies = []
        self._seen = 0
        self._peak = 0
        self._dirty = False

    def _overload(self, token: Token) -> None:
        # At once, not at the window's end: each slot over the service's capacity turns into a
        # stream of quick 429s.
        config = self._config
        now = self._clock()
        trip = self._trip()
        if self._restore is not None:  # measuring the no-load latency: given up
            self.limit, self._restore, self._low = self._restore, None, []
        current = self.current
        if now - self._episode_last > trip:
            # A new episode. When the limit was probing above a level that held, back to it;
            # else by a quarter; and never above what was in flight when the service said no.
            level = float(min(current, token.in_flight) - 1)
            if 0 < self._good < current:
                # Above the level that last held (a doubling, or a step of a probe): back to it.
                new = level = max(config.minimum, self.limit * 0.5, self._good)
            else:
                new = max(
                    config.minimum, self.limit * 0.5, min(level, self.limit * _BACKOFF_OVERLOAD)
                )
            self._cuts = 1
            self._level = max(level, new)
        elif self._answered and now - self._last_cut >= trip and self._cuts < _MAX_CUTS:
            # Answers and overloads mixed a round trip after the last cut: still too high. The
            # answers of the last round trip are what the service serves at once (Little's law).
            served = self._served(now, trip)
            new = max(
                config.minimum,
                self.limit * _BACKOFF_MOST,
                min(self.limit * _BACKOFF_OVERLOAD, served),
            )
            self._cuts += 1
            self._level = new
        else:
            # The same episode: one round trip since the last overload has not passed.
            self._episode_last = now
            self._hold_until = max(self._hold_until, now + self._hold(trip))
            return
        self._episode_last = self._last_cut = now
        self._hold_until = now + self._hold(trip)
        self.limit = new
        self._good = min(self._good, int(self._level))
        self._slow_start = False
        self._step = 1.0
        self._cut_from = self._started + 1
        self._answered = False
        self._new_window()

    @staticmethod
    def _hold(trip: float) -> float:
        return min(max(trip * _HOLD_ROUND_TRIPS, _HOLD_MIN), _HOLD_MAX)

    def _end_probe(self) -> None:
        low = sorted(self._low)
        base = max(low[len(low) // 2], _FLOOR)
        assert self._restore is not None
        if self._base is None or base > self._base * self._config.tolerance:
            # The service became slower: the shrinking was for nothing, undone.
            self.limit = self._restore
        else:
            self.limit = self._shrunk_limit  # a queue of ours after all: the shrinking stands
        self._base = self._round_trip = base
        self._restore, self._low = None, []
        self._shrinks = 0
        self._new_window()

    def _end_window(self) -> None:
        config = self._config
        latencies = sorted(self._latencies)
        saturated = self._peak >= self.current
        dirty = self._dirty
        self._new_window()
        if self._restore is not None or not latencies:
            return
        median = latencies[len(latencies) // 2]
        self._round_trip = median
        if self._base is None or median < self._base:
            self._base = max(median, _FLOOR)
        base = self._base
        if median > base * config.tolerance:
            # One slow window may be a hiccup (a pause of either side): two running are a queue.
            if self._over:
                self._shrink_for_latency(median)
            self._over = True
            return
        self._shrinks = 0
        self._over = False
        if not saturated or dirty:
            return
        self._good = self.current
        ceiling = config.ceiling
        if self.limit >= ceiling:
            return
        flat = median <= base * _SLOW_START_EXIT
        if self._level > self.limit:
            # After an overload episode: straight back to the level before it.
            self.limit = min(self._level, self.limit * 2, ceiling)
        elif self._clock() < self._hold_until:
            pass  # holding below the level that overloaded
        elif self._slow_start and flat:
            self.limit = min(ceiling, self.limit * 2)
        else:
            self._slow_start = False
            self.limit = min(ceiling, self.limit + self._step)
            self._step = min(self._step * 2, max(1.0, self.limit / 4)) if flat else 1.0

    def _shrink_for_latency(self, median: float) -> None:
        config = self._config
        if self._shrinks == 0:
            self._shrunk_at, self._shrunk_limit = median, self.limit
        self._shrinks += 1
        if self._shrinks > _STALE_AFTER:
            if median > self._shrunk_at * _FALLEN:
                # Shrinking did not bring latency down: it may be the service's, not a queue
                # of ours. Measure the no-load latency afresh, at low load.
                self._restore = max(self.limit, self._shrunk_limit)
                self._shrunk_limit = self.limit
                self.limit = float(self._low_load())
                self._low = []
                self._shrinks = 0
                return
            # Falling: a queue of ours; go on.
            self._shrinks, self._shrunk_at, self._shrunk_limit = 1, median, self.limit
        self._slow_start = False
        self._step = 1.0
        self._level = 0.0  # latency decides from here, not the level before an overload
        self.limit = max(config.minimum, self.limit * _BACKOFF_LATENCY)
