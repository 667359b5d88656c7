"""Per-call options (``with_options``), raw answers (``with_raw_response``), ``queue_timeout`` and
the event-loop guard, through both clients where the behaviour is shared."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from cvekyc_async import (
    APIStatusError,
    AsyncCVClient,
    ClientStateError,
    ConfigurationError,
    ExtractionResult,
    NoDocumentError,
    QueueTimeoutError,
    RawResponse,
    RetryPolicy,
)
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples
from tests._flavours import flavoured

pytestmark = pytest.mark.anyio

PATH = "/api/v2/ekyc/card"
OK = httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    import cvekyc_async._attempts as attempts

    async def instant(delay: float) -> None:
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(attempts, "_sleep", instant)


# -- with_options ------------------------------------------------------------------------------


async def test_options_apply_to_the_view_only(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[httpx.Response(503), httpx.Response(503), OK, OK])
    async with client(flavour, max_retries=3) as c:
        once = c.with_options(max_retries=0)
        with pytest.raises(APIStatusError):
            await once.extract_card(jpeg_file)
        assert route.call_count == 1
        res = await c.extract_card(jpeg_file)  # the client keeps its own retries
        assert res.attempts == 2
        assert once.retry_policy.max_retries == 0
        assert c.retry_policy.max_retries == 3
        # The rest of the policy is kept, and the counts are shared.
        assert once.retry_policy.backoff_cap == c.retry_policy.backoff_cap
        assert c.usage.requests == 3
        assert once.usage.requests == 3


async def test_a_view_shares_the_pool_and_closing_it_keeps_the_pool(
    cv_emulator: RunningEmulator, flavour: str
) -> None:
    front = specimen_path("chip_front.jpg")
    base = cv_emulator.client() if flavour == "async" else None
    made = (
        base
        if base is not None
        else flavoured(
            "sync",
            cv_emulator.api_key,
            cv_emulator.api_secret,
            base_url=cv_emulator.base_url,
            trust_env=False,
        )
    )
    async with made as c:
        for _ in range(3):
            await c.extract_card(front)
        view = c.with_options(timeout=5, total_timeout=20, queue_timeout=2)
        async with view:
            for _ in range(3):
                await view.extract_card(front)
        assert not c.is_closed
        await c.extract_card(front)  # the pool is still open
        assert view.timeout.read == 5
        assert view.retry_policy.total_timeout == 20
        assert view.queue_timeout == 2
        assert c.queue_timeout is None
    stats = cv_emulator.stats()
    assert stats["requests"] == 7
    # One pool: calls one after another reuse one connection, through the view too.
    assert stats["connections"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1, "retry": RetryPolicy()}, "not both"),
        ({"timeout": 0}, "timeout"),
        ({"total_timeout": -1}, "total_timeout"),
        ({"total_timeout": True}, "total_timeout"),
        ({"queue_timeout": -1}, "queue_timeout"),
        ({"timeout": httpx.Timeout(float("nan"))}, "timeout"),
        ({"timeout": httpx.Timeout(-1)}, "timeout"),
        ({"retry": None}, "RetryPolicy"),
        ({"queue_timeout": float("nan")}, "queue_timeout"),
        ({"retry": 3}, "RetryPolicy"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    c = AsyncCVClient("k", "s")
    with pytest.raises(ConfigurationError, match=message):
        c.with_options(**options)


def test_a_view_says_so_and_hides_the_secret() -> None:
    c = AsyncCVClient("k", "s3cr3t-value")
    view = c.with_options(max_retries=5)
    assert "view" in repr(view)
    assert "max_retries=5" in repr(view)
    assert "s3cr3t" not in repr(view) + repr(vars(view))


# -- with_raw_response -------------------------------------------------------------------------


async def test_a_raw_answer_is_the_answer_as_received(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    body = samples.answer(samples.CHIP_FRONT)
    mock.post(PATH).mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(200, content=body, headers={"X-Request-Id": "r-42"}),
        ]
    )
    async with client(flavour) as c:
        raw = await c.with_raw_response.extract_card(jpeg_file)
    assert isinstance(raw, RawResponse)
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == "r-42"
    assert raw.content == body
    assert raw.json()["errorCode"] == "0"
    assert raw.attempts == 2
    assert raw.elapsed >= 0
    assert (raw.method, raw.path) == ("POST", PATH)
    parsed = raw.parse()
    assert isinstance(parsed, ExtractionResult)
    assert parsed.cards[0].type == "chip_id_card_front"
    # The bytes hold card data: the repr does not show them.
    assert samples.CHIP_FRONT["info"]["name"] not in repr(raw)
    assert "r-42" not in repr(raw)


async def test_every_endpoint_has_a_raw_form(cv_emulator: RunningEmulator, flavour: str) -> None:
    c = cv_emulator.client() if flavour == "async" else None
    made = c or flavoured(
        "sync", cv_emulator.api_key, cv_emulator.api_secret, base_url=cv_emulator.base_url
    )
    async with made as c:
        raw = c.with_raw_response
        card = await raw.extract_card(specimen_path("chip_front.jpg"))
        cards = await raw.extract_cards(
            specimen_path("chip_front.jpg"), specimen_path("chip_back.jpg")
        )
        ocr = await raw.ocr_card(specimen_path("passport.jpg"))
    assert [r.path for r in (card, cards, ocr)] == [
        "/api/v2/ekyc/card",
        "/api/v2/ekyc/cards",
        "/api/v2/ocr/card",
    ]
    assert len(cards.parse().cards) == 2
    assert all(r.headers["content-type"].startswith("application/json") for r in (card, ocr))


async def test_errors_keep_the_answer_headers_and_body(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    body = samples.answer([], code="1", message="The photo does not contain content")
    mock.post(PATH).respond(200, content=body, headers={"X-Request-Id": "r-7"})
    async with client(flavour) as c:
        with pytest.raises(NoDocumentError) as info:
            await c.with_raw_response.extract_card(jpeg_file)
    assert info.value.headers is not None
    assert info.value.headers["x-request-id"] == "r-7"
    assert info.value.body == body
    assert "r-7" not in str(info.value)


# -- queue_timeout -----------------------------------------------------------------------------


async def test_a_call_that_waits_too_long_for_a_slot_fails_fast_without_sending(
    cv_emulator: RunningEmulator, flavour: str
) -> None:
    # The first call holds the only slot for 1 s (the emulator then answers 504).
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=1)
    front = specimen_path("chip_front.jpg")
    options = {"max_concurrency": 1, "queue_timeout": 0.2, "max_retries": 3}
    made = (
        cv_emulator.client(**options)
        if flavour == "async"
        else flavoured(
            "sync",
            cv_emulator.api_key,
            cv_emulator.api_secret,
            base_url=cv_emulator.base_url,
            **options,
        )
    )

    async def hold_the_slot() -> None:
        with pytest.raises(APIStatusError):
            await c.with_options(queue_timeout=None, max_retries=0).extract_card(front)

    async with made as c, anyio.create_task_group() as tg:
        tg.start_soon(hold_the_slot)
        assert await anyio.to_thread.run_sync(cv_emulator.state.wait_for_count, "requests", 1, 10)
        with pytest.raises(QueueTimeoutError) as info:
            await c.extract_card(front)
        assert info.value.kind == "queue"
        assert info.value.attempts == 0  # nothing was sent
        assert "nothing was sent" in str(info.value)
        assert cv_emulator.stats()["requests"] == 1  # not sent, and not retried
        assert c.usage.errors == {"QueueTimeoutError": 1}


# -- event loops -------------------------------------------------------------------------------


def test_a_client_used_on_a_second_event_loop_says_so(cv_emulator: RunningEmulator) -> None:
    c = cv_emulator.client()
    front = specimen_path("chip_front.jpg")
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(c.extract_card(front))
        with pytest.raises(ClientStateError, match="another event loop"):
            second.run_until_complete(c.extract_card(front))
        first.run_until_complete(c.aclose())
    finally:
        first.close()
        second.close()


def test_a_client_made_outside_any_loop_works_under_trio(cv_emulator: RunningEmulator) -> None:
    c = cv_emulator.client()

    async def read() -> str:
        async with c:
            return (await c.extract_card(specimen_path("chip_front.jpg"))).cards[0].type

    assert anyio.run(read, backend="trio") == "chip_id_card_front"


def test_a_view_with_a_new_policy_keeps_the_clients_deadline() -> None:
    c = AsyncCVClient("k", "s", total_timeout=5)
    assert c.with_options(retry=RetryPolicy(max_retries=1)).retry_policy.total_timeout == 5
    no_deadline = c.with_options(retry=RetryPolicy(max_retries=1), total_timeout=None)
    assert no_deadline.retry_policy.total_timeout is None


@pytest.mark.parametrize(
    "options",
    [
        {"total_timeout": float("nan")},
        {"total_timeout": True},
        {"max_per_second": True},
    ],
)
def test_the_constructor_refuses_what_would_fail_every_call(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AsyncCVClient("k", "s", **options)


@pytest.mark.parametrize(
    "fields",
    [{"max_retries": True}, {"retry_cost": -5}, {"total_timeout": float("nan")}],
)
def test_a_policy_refuses_bools_negatives_and_nan(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        RetryPolicy(**fields)


async def test_an_idle_client_never_times_out_in_its_queue(
    cv_emulator: RunningEmulator,
) -> None:
    async with cv_emulator.client(queue_timeout=0) as c:
        for _ in range(20):
            await c.extract_card(specimen_path("chip_front.jpg"))


async def test_closing_a_client_ends_its_calls_and_sends_nothing_more(
    cv_emulator: RunningEmulator,
) -> None:
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=5)
    front = specimen_path("chip_front.jpg")
    async with anyio.create_task_group() as tg:
        c = cv_emulator.client(max_retries=3)
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await c.extract_card(front)
            except ClientStateError as exc:
                errors.append(exc)

        tg.start_soon(call)
        assert await anyio.to_thread.run_sync(cv_emulator.state.wait_for_count, "requests", 1, 10)
        await c.aclose()
    assert len(errors) == 1
    assert "closed" in str(errors[0])
    assert cv_emulator.stats()["requests"] == 1  # no retry went out after the close


def test_closing_on_another_loop_says_so(cv_emulator: RunningEmulator) -> None:
    c = cv_emulator.client()
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(c.extract_card(specimen_path("chip_front.jpg")))
        with pytest.raises(ClientStateError, match="loop it was opened on"):
            second.run_until_complete(c.aclose())
        assert not c.is_closed
        first.run_until_complete(c.aclose())
        assert c.is_closed
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("url", ["https://a.example/" + "x" * 70_000, "http://a.example/\ud800"])
async def test_urls_that_cannot_be_sent_are_refused_before_sending(url: str) -> None:
    from cvekyc_async import InvalidInputError

    async with AsyncCVClient("k", "s3cr3t", base_url="http://127.0.0.1:9") as c:
        with pytest.raises(InvalidInputError) as info:
            await c.extract_card(url)
    assert info.value.attempts == 0
    assert c.usage.requests == 0
