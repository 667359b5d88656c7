"""RetryPolicy's pure functions, by tables of cases: no clock, no network."""

from __future__ import annotations

import email.utils

import pytest

from cvekyc_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    CVError,
    InvalidInputError,
    MalformedResponseError,
    RateLimitError,
    RetryPolicy,
)
from cvekyc_async._retry import RetryBudget, is_ambiguous, parse_retry_after


def status(code: int, retry_after: float | None = None) -> APIStatusError:
    cls = RateLimitError if code == 429 else APIStatusError
    return cls(code, retry_after=retry_after)


# (error, retried by default, retried with retry_ambiguous=False)
DECISIONS: list[tuple[str, CVError, bool, bool]] = [
    ("connect refused", APIConnectionError("x", kind="connect"), True, True),
    ("reset after sending", APIConnectionError("x", kind="transport"), True, False),
    ("connect timeout", APITimeoutError("x", kind="connect"), True, True),
    ("pool timeout", APITimeoutError("x", kind="pool"), True, True),
    ("read timeout", APITimeoutError("x", kind="read"), True, False),
    ("write timeout", APITimeoutError("x", kind="write"), True, False),
    ("overall deadline", APITimeoutError("x", kind="total"), False, False),
    ("408", status(408), True, False),
    ("429", status(429), True, True),
    ("500", status(500), True, False),
    ("502", status(502), True, False),
    ("503", status(503), True, True),
    ("504", status(504), True, False),
    ("400", status(400), False, False),
    ("401", status(401), False, False),
    ("404", status(404), False, False),
    ("413", status(413), False, False),
    ("malformed 200", MalformedResponseError("x", status_code=200), False, False),
    ("bad input", InvalidInputError("x"), False, False),
    *[
        (f"errorCode {code}", APIError(code, "m", status_code=st), False, False)
        for code in range(1, 8)
        for st in (200, 500)
    ],
]


@pytest.mark.parametrize(
    ("name", "error", "default", "safe"), DECISIONS, ids=[d[0] for d in DECISIONS]
)
def test_which_failures_are_retried(name: str, error: CVError, default: bool, safe: bool) -> None:
    assert RetryPolicy().should_retry(error, 1) is default
    assert RetryPolicy(retry_ambiguous=False).should_retry(error, 1) is safe


@pytest.mark.parametrize(
    ("max_retries", "attempts", "expected"),
    [(2, 1, True), (2, 2, True), (2, 3, False), (0, 1, False), (5, 5, True), (5, 6, False)],
)
def test_max_retries_counts_retries_after_the_first_attempt(
    max_retries: int, attempts: int, expected: bool
) -> None:
    policy = RetryPolicy(max_retries=max_retries)
    assert policy.should_retry(status(503), attempts) is expected


@pytest.mark.parametrize(
    ("retry_number", "draw", "expected"),
    [
        (0, 0.0, 0.0),
        (0, 0.5, 0.25),
        (0, 0.999, 0.4995),
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (3, 1.0, 4.0),
        (4, 1.0, 8.0),  # capped
        (10, 0.5, 4.0),
        (500, 1.0, 8.0),  # no overflow for absurd retry counts
    ],
)
def test_backoff_is_full_jitter_under_a_cap(
    retry_number: int, draw: float, expected: float
) -> None:
    assert RetryPolicy().backoff(retry_number, draw) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("error", "attempts", "elapsed", "draw", "policy", "expected"),
    [
        # plain backoff: retry n waits draw * min(8, 0.5 * 2**n)
        (status(503), 1, 0.0, 0.5, RetryPolicy(), 0.25),
        (status(502), 2, 0.0, 0.5, RetryPolicy(), 0.5),
        # Retry-After wins over backoff, up to 60 s
        (status(429, 7.0), 1, 0.0, 0.9, RetryPolicy(), 7.0),
        (status(503, 60.0), 1, 0.0, 0.9, RetryPolicy(), 60.0),
        (status(429, 61.0), 1, 0.0, 0.9, RetryPolicy(), None),
        (status(429, 5.0), 1, 0.0, 0.9, RetryPolicy(max_retry_after=4), None),
        # no wait starts that would end past the deadline
        (status(503), 1, 9.0, 0.99, RetryPolicy(total_timeout=10), 0.495),
        (status(503), 2, 9.5, 0.99, RetryPolicy(total_timeout=10), None),
        (status(429, 3.0), 1, 0.0, 0.0, RetryPolicy(total_timeout=2), None),
        (status(429, 3.0), 1, 0.0, 0.0, RetryPolicy(total_timeout=3.5), 3.0),
        # not retried at all
        (status(400), 1, 0.0, 0.5, RetryPolicy(), None),
        (status(503), 3, 0.0, 0.5, RetryPolicy(), None),
        (APITimeoutError("x", kind="read"), 1, 0.0, 0.5, RetryPolicy(retry_ambiguous=False), None),
    ],
)
def test_next_delay(
    error: CVError,
    attempts: int,
    elapsed: float,
    draw: float,
    policy: RetryPolicy,
    expected: float | None,
) -> None:
    delay = policy.next_delay(error, attempts, elapsed, draw)
    assert delay == (None if expected is None else pytest.approx(expected))


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("nan", None),
        ("", None),
        (None, None),
        ("soon", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP date
    ],
)
def test_parse_retry_after_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    got = parse_retry_after(header, now=NOW)
    assert got == (None if expected is None else pytest.approx(expected))


def test_timeout_retries_cost_more_budget() -> None:
    policy = RetryPolicy()
    assert policy.retry_cost_of(status(503)) == 5
    assert policy.retry_cost_of(APITimeoutError("x", kind="read")) == 10


def test_budget_runs_dry_and_successes_refill_it() -> None:
    budget = RetryBudget(500)
    assert sum(budget.withdraw(5) for _ in range(150)) == 100
    assert budget.tokens == 0
    assert not budget.withdraw(5)
    for _ in range(7):
        budget.refund(1)
    assert budget.withdraw(5)
    assert budget.tokens == 2
    budget.refund(10_000)
    assert budget.tokens == 500


def test_no_budget_never_runs_dry() -> None:
    budget = RetryBudget(None)
    assert all(budget.withdraw(10) for _ in range(1000))


def test_ambiguity_of_not_transient_errors_is_conservative() -> None:
    assert is_ambiguous(MalformedResponseError("x", status_code=200))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"backoff_base": -1}, "backoff_base"),
        ({"total_timeout": 0}, "total_timeout"),
        ({"budget_capacity": -5}, "budget_capacity"),
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
