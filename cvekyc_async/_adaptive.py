"""Concurrency that finds its own level: ``max_concurrency="auto"``.

Nobody knows the service's capacity for their account: too few requests in flight waste hours
of a big batch, too many queue at the service until it answers 429. The limit here moves with
what the answers say, in the way of TCP Vegas and Netflix's concurrency-limits (Gradient2):

- a *window* is one limit's worth of finished attempts (at least ``_MIN_WINDOW``);
- the no-load latency is the lowest window median seen (at least 1 ms); when the limit has
  shrunk for latency ``_STALE_AFTER`` windows running and latency has not fallen with it, the
  latency is not the client's doing (a run of quick answers set the mark too low, or the
  service became slower for good), and the no-load latency is taken afresh;
- while the window's latency stays near the no-load latency and the limit was used in full,
  the limit doubles (slow start, until latency first rises) and then grows by one a window;
- when latency passes ``tolerance`` times the no-load latency (requests are queueing at the
  service), the limit shrinks by a tenth;
- on an overload answer (429, 503, 504, a read timeout) it shrinks by a quarter at once, as
  AIMD and botocore's adaptive mode do; answers to attempts sent before that cut do not cut
  again, and for ``_HOLD`` seconds the limit stays below the level that overloaded (as CUBIC
  lingers below its last maximum), so overloads come seldom, not as a storm of 429s.

It never goes below ``minimum`` nor above ``ceiling``. A limit that is not used in full (fewer
callers than slots) does not grow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import APIStatusError, APITimeoutError, CVError

__all__ = ["AdaptiveConcurrency", "AdaptiveLimit", "is_overload"]

_MIN_WINDOW = 10
# The no-load latency is never taken as less than this (a window of instant answers).
_FLOOR = 0.001
# Shrinking for latency this many windows running without latency falling by _FALLEN means the
# no-load latency is stale: it is taken afresh.
_STALE_AFTER = 5
_FALLEN = 0.85
# Slow start stops once a window's latency passes this multiple of the no-load latency.
_SLOW_START_EXIT = 1.25
_BACKOFF_LATENCY = 0.9
_BACKOFF_OVERLOAD = 0.75
# Seconds after an overload during which the limit stays below the level that overloaded.
_HOLD = 30.0


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


class AdaptiveLimit:
    """The moving limit of one client (pure: fed outcomes, it says what the limit is)."""

    __slots__ = (
        "_base",
        "_cap",
        "_cap_until",
        "_clock",
        "_config",
        "_cut_from",
        "_latencies",
        "_overloaded",
        "_peak",
        "_seen",
        "_shrinks",
        "_shrunk_at",
        "_slow_start",
        "_started",
        "limit",
    )

    def __init__(
        self, config: AdaptiveConcurrency, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        self._shrinks = 0  # windows running that shrank the limit for latency
        self._shrunk_at = 0.0  # the window median when that run began
        #: The limit now, as a float (it moves in fractions; ``current`` is what applies).
        self.limit = float(config.initial)
        self._slow_start = True
        self._base: float | None = None
        self._latencies: list[float] = []
        self._seen = 0
        self._overloaded = False
        self._peak = 0
        self._started = 0  # attempts started so far: each one's number is its token
        self._cut_from = 0  # overloads of attempts started before this do not cut again
        self._cap = config.ceiling
        self._cap_until = 0.0

    @property
    def current(self) -> int:
        """Requests that may be in flight now."""
        return max(self._config.minimum, int(self.limit))

    def started(self, in_flight: int) -> int:
        """An attempt was sent with ``in_flight`` attempts in flight, itself included; returns
        the token to give ``finished``."""
        if in_flight > self._peak:
            self._peak = in_flight
        self._started += 1
        return self._started

    def finished(self, token: int, latency: float | None, overloaded: bool = False) -> int | None:
        """The attempt ``token`` ended: with an answer after ``latency`` seconds, or failed
        (``None``), saying the service is overloaded or not. Returns the new limit when it
        changes."""
        if overloaded and token >= self._cut_from:
            return self._cut()
        self._seen += 1
        if latency is not None:
            self._latencies.append(latency)
        if self._seen < max(_MIN_WINDOW, self.current):
            return None
        return self._end_window()

    def _cut(self) -> int | None:
        # At once, not at the window's end: each slot over the service's capacity turns into a
        # stream of quick 429s. Attempts already in flight were sent at the old limit: their
        # overloads do not cut again. The limit that overloaded is not reached again for a while.
        before = self.current
        config = self._config
        self._slow_start = False
        self._cut_from = self._started + 1
        self._cap = max(config.minimum, before - 1)
        self._cap_until = self._clock() + _HOLD
        self.limit = max(config.minimum, self.limit * _BACKOFF_OVERLOAD)
        self._latencies = []
        self._seen = 0
        self._peak = 0
        after = self.current
        return after if after != before else None

    def _end_window(self) -> int | None:
        config = self._config
        before = self.current
        latencies = sorted(self._latencies)
        saturated = self._peak >= before
        self._latencies = []
        self._seen = 0
        self._peak = 0
        median = latencies[len(latencies) // 2] if latencies else None
        now = self._clock()
        if median is not None and (self._base is None or median < self._base):
            self._base = max(median, _FLOOR)
        base = self._base
        ceiling = self._cap if now < self._cap_until else config.ceiling
        if median is None or base is None:
            pass
        elif median > base * config.tolerance:
            if self._shrinks == 0:
                self._shrunk_at = median
            self._shrinks += 1
            if self._shrinks > _STALE_AFTER and median > self._shrunk_at * _FALLEN:
                # Shrinking did not bring latency down: it is the service's, not a queue of
                # ours. Take it as the no-load latency from here.
                self._base = max(median, _FLOOR)
                self._shrinks = 0
                return None
            if self._shrinks > _STALE_AFTER:
                self._shrinks, self._shrunk_at = 1, median  # falling: a queue; go on
            self._slow_start = False
            self.limit = max(config.minimum, self.limit * _BACKOFF_LATENCY)
        else:
            self._shrinks = 0
            if saturated and self.limit < ceiling:
                if self._slow_start and median <= base * _SLOW_START_EXIT:
                    self.limit = min(ceiling, self.limit * 2)
                else:
                    self._slow_start = False
                    self.limit = min(ceiling, self.limit + 1)
        after = self.current
        return after if after != before else None
