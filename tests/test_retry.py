"""Retries through the client: exact sequences (respx) with a fake clock for the waits."""

from __future__ import annotations

import email.utils
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

import cvekyc_async._attempts as client_module
from cvekyc_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    CVError,
    InvalidImageError,
    RateLimitError,
    RetryPolicy,
)
from tests import samples
from tests._flavours import flavoured

pytestmark = pytest.mark.anyio
PATH = "/api/v2/ekyc/card"
OK = httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))
NO_WAIT = RetryPolicy(backoff_base=0.0)


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


def responses(*items: Any) -> list[Any]:
    return [httpx.Response(i) if isinstance(i, int) else i for i in items]


@pytest.mark.parametrize(
    ("sequence", "attempts", "ambiguous"),
    [
        ((503, 503, OK), 3, 0),
        ((429, OK), 2, 0),
        ((500, OK), 2, 1),
        ((502, 504, OK), 3, 2),
        ((408, OK), 2, 1),
        ((httpx.ConnectError("refused"), OK), 2, 0),
        ((httpx.ConnectTimeout("slow"), OK), 2, 0),
        ((httpx.PoolTimeout("full"), OK), 2, 0),
        ((httpx.ReadTimeout("slow"), OK), 2, 1),
        ((httpx.WriteTimeout("slow"), OK), 2, 1),
        ((httpx.RemoteProtocolError("closed"), OK), 2, 1),
        ((httpx.ReadError("reset"), OK), 2, 1),
    ],
)
async def test_transient_failures_are_retried_until_success(
    mock: respx.MockRouter,
    jpeg_file: Path,
    sleeps: list[float],
    sequence: tuple[Any, ...],
    attempts: int,
    ambiguous: int,
    flavour: str,
) -> None:
    route = mock.post(PATH).mock(side_effect=responses(*sequence))
    async with client(flavour, retry=NO_WAIT) as c:
        res = await c.extract_card(jpeg_file)
        usage = c.usage
    assert res.attempts == attempts
    assert route.call_count == attempts
    assert (usage.requests, usage.retries, usage.ambiguous_retries) == (
        attempts,
        attempts - 1,
        ambiguous,
    )
    assert (usage.answers, usage.billed, usage.errors) == (1, 1, {})
    assert len(sleeps) == attempts - 1


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (httpx.Response(400), APIStatusError),
        (httpx.Response(404, content=b'{"detail": "x"}'), APIStatusError),
        (
            httpx.Response(200, content=samples.answer(None, "3", "Incorrect image format")),
            InvalidImageError,
        ),
        (httpx.Response(500, content=samples.answer(None, "3", "x")), InvalidImageError),
        (httpx.Response(200, content=b"<html>"), CVError),
    ],
)
async def test_non_transient_failures_are_raised_at_once(
    mock: respx.MockRouter,
    jpeg_file: Path,
    sleeps: list[float],
    first: Any,
    error: type,
    flavour: str,
) -> None:
    route = mock.post(PATH).mock(side_effect=[first, OK])
    async with client(flavour, retry=NO_WAIT) as c:
        with pytest.raises(error) as info:
            await c.extract_card(jpeg_file)
    assert route.call_count == 1
    assert info.value.attempts == 1
    assert sleeps == []


async def test_gives_up_after_max_retries_with_the_last_error(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=responses(503, 503, 502, OK))
    async with client(flavour, max_retries=2) as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
        usage = c.usage
    assert route.call_count == 3
    assert info.value.status_code == 502
    assert info.value.attempts == 3
    assert info.value.elapsed >= 0
    assert (info.value.method, info.value.path) == ("POST", PATH)
    assert usage.errors == {"InternalServerError": 1}
    # Full jitter: each wait lies under min(8, 0.5 * 2**n).
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


@pytest.mark.parametrize(
    ("sequence", "calls"),
    [
        ((500, OK), 1),
        ((502, OK), 1),
        ((httpx.ReadTimeout("slow"), OK), 1),
        ((httpx.RemoteProtocolError("closed"), OK), 1),
        ((httpx.ConnectError("refused"), OK), 2),
        ((httpx.PoolTimeout("full"), OK), 2),
        ((429, OK), 2),
        ((503, OK), 2),
    ],
)
async def test_billing_safe_mode_retries_only_what_never_reached_the_service(
    mock: respx.MockRouter,
    jpeg_file: Path,
    sleeps: list[float],
    sequence: tuple,
    calls: int,
    flavour: str,
) -> None:
    route = mock.post(PATH).mock(side_effect=responses(*sequence))
    policy = RetryPolicy(backoff_base=0, retry_ambiguous=False)
    async with client(flavour, retry=policy) as c:
        if calls == 1:
            with pytest.raises(CVError):
                await c.extract_card(jpeg_file)
        else:
            await c.extract_card(jpeg_file)
        assert c.usage.ambiguous_retries == 0
    assert route.call_count == calls


async def test_retry_after_seconds_sets_the_wait(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    mock.post(PATH).mock(side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), OK])
    async with client(flavour) as c:
        await c.extract_card(jpeg_file)
    assert sleeps == [7.0]


async def test_retry_after_http_date_sets_the_wait(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    mock.post(PATH).mock(side_effect=[httpx.Response(503, headers={"Retry-After": when}), OK])
    async with client(flavour) as c:
        await c.extract_card(jpeg_file)
    [waited] = sleeps
    assert 27 <= waited <= 30


async def test_retry_after_past_the_cap_raises_rate_limit_error(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "3600"}), OK]
    )
    async with client(flavour) as c:
        with pytest.raises(RateLimitError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.retry_after == 3600
    assert route.call_count == 1
    assert sleeps == []


async def test_no_wait_starts_that_would_pass_the_deadline(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "5"}), OK]
    )
    async with client(flavour, total_timeout=2.0) as c:
        with pytest.raises(APIStatusError):
            await c.extract_card(jpeg_file)
    assert route.call_count == 1
    assert sleeps == []


async def test_retry_budget_stops_retries_when_spent(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(return_value=httpx.Response(503))
    policy = RetryPolicy(backoff_base=0, budget_capacity=10, retry_cost=5)
    async with client(flavour, retry=policy) as c:
        with pytest.raises(APIStatusError) as first:
            await c.extract_card(jpeg_file)
        assert first.value.attempts == 3  # two retries: 10 tokens
        with pytest.raises(APIStatusError) as second:
            await c.extract_card(jpeg_file)
        assert second.value.attempts == 1  # budget empty: no retry
        assert c.usage.budget_exhausted == 1
        # Successes refill the bucket: five of them pay for one more retry.
        route.mock(return_value=OK)
        for _ in range(5):
            await c.extract_card(jpeg_file)
        route.mock(side_effect=[httpx.Response(503), httpx.Response(503), OK])
        with pytest.raises(APIStatusError) as third:
            await c.extract_card(jpeg_file)
        assert third.value.attempts == 2


async def test_timeout_retries_cost_more_of_the_budget(
    mock: respx.MockRouter, jpeg_file: Path, sleeps: list[float], flavour: str
) -> None:
    mock.post(PATH).mock(side_effect=httpx.ReadTimeout("slow"))
    policy = RetryPolicy(backoff_base=0, budget_capacity=10, max_retries=5)
    async with client(flavour, retry=policy) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.attempts == 2  # one timeout retry took all 10 tokens


async def test_every_attempt_logs_one_debug_line_without_secrets_or_card_data(
    mock: respx.MockRouter,
    jpeg_file: Path,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
    flavour: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cvekyc_async")
    mock.post(PATH).mock(side_effect=responses(503, httpx.ReadTimeout("slow"), OK))
    async with client(flavour, retry=NO_WAIT) as c:
        await c.extract_card(jpeg_file)
    records = [r for r in caplog.records if r.name == "cvekyc_async"]
    lines = [r.getMessage() for r in records]
    # Every line starts with the call's id, the X-Request-ID every attempt sent.
    (call_id,) = {call.request.headers["X-Request-ID"] for call in mock.calls}
    assert all(line.startswith(f"call {call_id}: ") for line in lines)
    assert {getattr(r, "cvekyc_request_id", None) for r in records} == {call_id}
    attempts = [line for line in lines if " attempt " in line and " -> " in line]
    assert len(attempts) == 3
    assert attempts[0].startswith(f"call {call_id}: POST {PATH} attempt 1 -> 503 in ")
    assert attempts[1].startswith(f"call {call_id}: POST {PATH} attempt 2 -> read timeout in ")
    assert attempts[2].startswith(f"call {call_id}: POST {PATH} attempt 3 -> 200 in ")
    retries = [r for r in records if "retrying in 0.000 s" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.levelno == logging.INFO for r in retries)  # retries show at INFO
    assert "(http_503)" in retries[0].getMessage()
    assert "(read_timeout)" in retries[1].getMessage()
    for line in lines:
        assert samples.API_SECRET not in line
        assert samples.API_KEY not in line
        assert "001099012345" not in line  # nothing read off the card


async def test_backoff_does_not_hold_a_concurrency_slot(
    mock: respx.MockRouter, jpeg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Async only: the fake sleep holds on events of the test's own loop.
    waiting = anyio.Event()
    release = anyio.Event()

    async def held_sleep(delay: float) -> None:
        waiting.set()
        await release.wait()

    monkeypatch.setattr(client_module, "_sleep", held_sleep)
    mock.post(PATH).mock(side_effect=[httpx.Response(503), OK, OK])
    async with client(max_concurrency=1) as c, anyio.create_task_group() as tg:
        tg.start_soon(c.extract_card, jpeg_file)
        with anyio.fail_after(10):
            await waiting.wait()
            assert c.in_flight == 0
            # The only slot is free while the first call waits to retry: this one goes through.
            res = await c.extract_card(jpeg_file)
        assert res.attempts == 1
        release.set()


async def test_cancelling_during_the_backoff_frees_everything(
    mock: respx.MockRouter, jpeg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = anyio.Event()

    async def endless_sleep(delay: float) -> None:
        waiting.set()
        await anyio.sleep_forever()

    monkeypatch.setattr(client_module, "_sleep", endless_sleep)
    mock.post(PATH).mock(side_effect=[httpx.Response(503), OK])
    async with client(max_concurrency=1) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.extract_card, jpeg_file)
            await waiting.wait()
            tg.cancel_scope.cancel()
        assert c.in_flight == 0
        res = await c.extract_card(jpeg_file)
        assert res.attempts == 1


def test_max_retries_and_retry_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        client(max_retries=1, retry=RetryPolicy())
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        client(retry={"max_retries": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="total_timeout"):
        client(total_timeout=-1)
    with pytest.raises(ConfigurationError, match="max_per_second"):
        client(max_per_second=0)


def test_max_retries_builds_the_policy() -> None:
    assert client().retry_policy == RetryPolicy()
    assert client(max_retries=5).retry_policy.max_retries == 5
    assert client(total_timeout=30).retry_policy.total_timeout == 30


async def test_connection_errors_say_whether_the_request_left(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(PATH).mock(side_effect=[httpx.ConnectError("refused"), httpx.ReadError("reset")])
    async with client(flavour, max_retries=0) as c:
        with pytest.raises(APIConnectionError) as refused:
            await c.extract_card(jpeg_file)
        with pytest.raises(APIConnectionError) as reset:
            await c.extract_card(jpeg_file)
    assert (refused.value.kind, reset.value.kind) == ("connect", "transport")
