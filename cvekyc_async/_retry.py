"""RetryPolicy: pure functions for "retry this?" and "wait how long?", and the retry budget.

Billing shapes the policy: the service bills every answer with ``errorCode`` 0, so resending a
request that reached it may bill twice. Failures are therefore split in two:

- *not reached*: the request provably did not get to the service (connect failures, pool
  timeouts, 429 and 503, which are refusals). Resending is free.
- *ambiguous*: it may have been processed (read and write timeouts, connections broken after
  sending, 408, 500, 502, 504). Resending may bill twice; ``retry_ambiguous=False`` stops that.

Answers that carry an ``errorCode`` are never retried: codes 1-6 are not transient.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ._errors import APIConnectionError, APIStatusError, APITimeoutError, CVError

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "RetryBudget",
    "RetryPolicy",
    "failure_label",
    "is_ambiguous",
    "is_transient",
    "parse_retry_after",
]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_NOT_REACHED_STATUSES = frozenset({429, 503})
_NOT_REACHED_KINDS = frozenset({"connect", "pool", "queue"})
_SECONDS_RE = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,6})?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header (delay seconds or an HTTP date) as seconds from ``now``.

    Args:
        value: the header's value.
        now: the current Unix time, for tests; defaults to the clock.

    Returns:
        Seconds to wait (0 for a date in the past), or ``None`` when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if _SECONDS_RE.fullmatch(value):
        # ASCII digits only: float() would also read "١٢" as 12. A negative wait is none.
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def failure_label(error: BaseException) -> str:
    """A short, bounded label for why an attempt failed (``"http_503"``, ``"read_timeout"``,
    ``"connection_lost"``...): the retry reason of logs, hooks and metrics. It names the kind of
    failure, never anything the service sent."""
    if isinstance(error, APITimeoutError):
        return f"{error.kind}_timeout"
    if isinstance(error, APIConnectionError):
        return {"connect": "connect_error", "unknown": "transport_error"}.get(
            error.kind, "connection_lost"
        )
    if isinstance(error, APIStatusError):
        return f"http_{error.status_code}" if 100 <= error.status_code <= 599 else "http_other"
    code = getattr(error, "error_code", None)
    if isinstance(code, int):
        return f"error_code_{code}" if 0 <= code <= 99 else "error_code_other"
    return type(error).__name__


def is_transient(error: CVError, statuses: frozenset[int] = DEFAULT_RETRY_STATUSES) -> bool:
    """Whether ``error`` is worth another attempt at all (ignoring billing)."""
    if isinstance(error, APITimeoutError):
        return error.kind not in ("total", "queue")
    if isinstance(error, APIConnectionError):
        return error.kind != "unknown"
    if isinstance(error, APIStatusError):
        return error.status_code in statuses
    return False


def is_ambiguous(error: CVError) -> bool:
    """Whether the service may have processed (and billed) the request behind ``error``."""
    if isinstance(error, APIConnectionError):
        return error.kind not in _NOT_REACHED_KINDS
    if isinstance(error, APIStatusError):
        return error.status_code not in _NOT_REACHED_STATUSES
    return True


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a failed request, and how long to wait first.

    Args:
        max_retries: retries after the first attempt (default 2, so 3 attempts).
        retry_ambiguous: also retry failures after which the service may have done, and
            billed, the work (read timeouts, broken connections, 500/502/504/408). With
            ``False`` only failures that provably did not reach it are retried.
        backoff_base: seconds; retry ``n`` (from 0) waits ``uniform(0, min(cap, base * 2**n))``.
        backoff_cap: the most one backoff wait can be, in seconds.
        max_retry_after: the longest ``Retry-After`` honoured; a longer one ends the retries
            (a 429 then raises ``RateLimitError`` with ``retry_after`` set).
        total_timeout: seconds for all attempts and waits together; ``None`` for no deadline.
            No wait starts that would end past it.
        retry_statuses: HTTP statuses (without an ``errorCode``) worth retrying.
        budget_capacity: tokens in the retry budget shared by the client's requests; ``None``
            turns the budget off.
        retry_cost: tokens one retry takes from the budget.
        timeout_retry_cost: tokens a retry after a timeout takes.
        success_refund: tokens a successful answer puts back.
    """

    max_retries: int = 2
    retry_ambiguous: bool = True
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = 60.0
    total_timeout: float | None = None
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    budget_capacity: int | None = 500
    retry_cost: int = 5
    timeout_retry_cost: int = 10
    success_refund: int = 1

    def __post_init__(self) -> None:
        def whole(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 0

        def seconds(value: object) -> bool:
            # NaN compares false both ways: it fails "value >= 0".
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0

        if not whole(self.max_retries):
            raise ValueError(f"max_retries must be an integer >= 0, not {self.max_retries!r}")
        for name in ("backoff_base", "backoff_cap", "max_retry_after"):
            if not seconds(getattr(self, name)):
                raise ValueError(f"{name} must be a number >= 0, not {getattr(self, name)!r}")
        if self.total_timeout is not None and not (
            seconds(self.total_timeout) and self.total_timeout > 0
        ):
            raise ValueError(
                f"total_timeout must be positive (or None for no deadline), "
                f"not {self.total_timeout!r}"
            )
        if self.budget_capacity is not None and not whole(self.budget_capacity):
            raise ValueError("budget_capacity must be an integer >= 0 (or None for no budget)")
        for name in ("retry_cost", "timeout_retry_cost", "success_refund"):
            if not whole(getattr(self, name)):
                raise ValueError(f"{name} must be an integer >= 0, not {getattr(self, name)!r}")

    def should_retry(self, error: CVError, attempts: int) -> bool:
        """Whether to try again after ``error`` ended attempt number ``attempts`` (from 1).

        Ignores waiting and the deadline; ``next_delay`` decides those.
        """
        if attempts > self.max_retries:
            return False
        if not is_transient(error, self.retry_statuses):
            return False
        return self.retry_ambiguous or not is_ambiguous(error)

    def backoff(self, retry_number: int, draw: float) -> float:
        """Seconds to wait before retry ``retry_number`` (from 0), for a uniform ``draw`` in
        [0, 1): full jitter over ``min(cap, base * 2**n)``."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry_number, 62))
        return draw * ceiling

    def next_delay(
        self, error: CVError, attempts: int, elapsed: float, draw: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up and raise ``error``.

        Args:
            error: what ended the last attempt.
            attempts: attempts made so far (from 1).
            elapsed: seconds since the first attempt started.
            draw: a uniform random number in [0, 1), for the jitter.
        """
        if not self.should_retry(error, attempts):
            return None
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            delay = retry_after
        else:
            delay = self.backoff(attempts - 1, draw)
        if self.total_timeout is not None and elapsed + delay >= self.total_timeout:
            return None
        return delay

    def retry_cost_of(self, error: CVError) -> int:
        """Budget tokens a retry after ``error`` costs."""
        return self.timeout_retry_cost if isinstance(error, APITimeoutError) else self.retry_cost


class RetryBudget:
    """A token bucket shared by one client's requests, so that a failing service is not hammered.

    Retries take tokens and successes put one back; when the bucket runs dry, failures are
    raised without retrying until successes refill it (botocore's standard retry mode).
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.tokens = capacity if capacity is not None else 0

    def withdraw(self, cost: int) -> bool:
        """Take ``cost`` tokens for a retry; ``False`` (and nothing taken) if there are too few."""
        if self.capacity is None:
            return True
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self, amount: int) -> None:
        """Put ``amount`` tokens back after a success, up to the capacity."""
        if self.capacity is not None:
            self.tokens = min(self.capacity, self.tokens + amount)
