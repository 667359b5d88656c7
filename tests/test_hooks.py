"""Event hooks and the call's id: what a hook is told, when, in which order and on which
transport; what a hook that raises does to its call; and the ``X-Request-ID`` every attempt of
a call sends."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from cvekyc_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCVClient,
    ConfigurationError,
    CVClient,
    CVError,
    EventHook,
    HookEvent,
    InternalServerError,
    InvalidImageError,
    RetryPolicy,
)
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples
from tests._flavours import SyncDriven, flavoured

pytestmark = pytest.mark.anyio

PATH = "/api/v2/ekyc/card"
URL = samples.BASE_URL + PATH
CARD = specimen_path("chip_front.jpg")
NO_WAIT = RetryPolicy(backoff_base=0.0, budget_capacity=None)
# A signed image URL, as an application gets one from its object store.
TOKEN = "Sig-7f3a9c0e51d24b6e"
IMAGE_URL = f"https://bucket.example/kyc/front.jpg?X-Amz-Signature={TOKEN}&X-Amz-Expires=60"


def ok() -> httpx.Response:
    return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))


def unavailable(retry_after: str = "0") -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": retry_after}, text="<html>busy</html>")


class Recorder:
    """Hooks that keep every event they are given, in order."""

    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    def hooks(self, *kinds: str) -> dict[str, list[EventHook]]:
        return {k: [self.events.append] for k in kinds or ("request", "response", "retry")}

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


class HookFailure(Exception):
    """What a hook of the application raises."""


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


# -- what a hook is told ---------------------------------------------------------------------


async def test_a_503_then_a_200_gives_five_events_in_order(
    mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(retry_after="3"), ok()])
    seen = Recorder()
    async with client(flavour, event_hooks=seen.hooks()) as c:
        res = await c.extract_card(samples.JPEG)
    assert seen.kinds == ["request", "response", "retry", "request", "response"]
    request1, response1, retry, request2, response2 = seen.events
    # One id for the whole call: the result's, and the one both attempts sent.
    sent = {call.request.headers["X-Request-ID"] for call in route.calls}
    assert sent == {res.request_id} == {e.request_id for e in seen.events}
    for e in seen.events:
        assert (e.operation, e.method, e.url) == ("extract_card", "POST", URL)
    assert [e.attempt for e in seen.events] == [1, 1, 1, 2, 2]
    # Before an attempt: nothing is known yet.
    for e in (request1, request2):
        assert (e.status_code, e.elapsed, e.error, e.reason, e.delay) == (None,) * 5
    assert (response1.status_code, response1.error) == (503, "InternalServerError")
    assert isinstance(response1.elapsed, float)
    assert response1.elapsed >= 0
    assert (response1.reason, response1.delay) == (None, None)
    # The retry says why and how long, and that wait is the one taken (Retry-After: 3).
    assert (retry.status_code, retry.error, retry.reason, retry.delay) == (
        503,
        "InternalServerError",
        "http_503",
        3.0,
    )
    assert retry.elapsed is None
    assert sleeps == [3.0]
    assert (response2.status_code, response2.error, response2.reason) == (200, None, None)
    assert isinstance(response2.elapsed, float)
    assert res.attempts == 2


async def test_an_answer_that_is_not_retried_gives_no_retry_event(
    mock: respx.MockRouter, sleeps: list[float]
) -> None:
    mock.post(PATH).mock(
        return_value=httpx.Response(200, content=samples.answer(None, "3", "bad image"))
    )
    seen = Recorder()
    async with client(event_hooks=seen.hooks()) as c:
        with pytest.raises(InvalidImageError):
            await c.extract_card(samples.JPEG)
    assert seen.kinds == ["request", "response"]
    assert (seen.events[1].status_code, seen.events[1].error) == (200, "InvalidImageError")
    assert sleeps == []


async def test_a_connection_failure_is_told_without_a_status(
    mock: respx.MockRouter, sleeps: list[float]
) -> None:
    mock.post(PATH).mock(side_effect=[httpx.ConnectError("refused"), ok()])
    seen = Recorder()
    async with client(event_hooks=seen.hooks(), retry=NO_WAIT) as c:
        await c.extract_card(samples.JPEG)
    assert seen.kinds == ["request", "response", "retry", "request", "response"]
    response1, retry = seen.events[1], seen.events[2]
    assert (response1.status_code, response1.error) == (None, "APIConnectionError")
    assert (retry.status_code, retry.reason) == (None, "connect_error")


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("extract_card", "/api/v2/ekyc/card", "extract_card"),
        ("extract_cards", "/api/v2/ekyc/cards", "extract_cards"),
        ("ocr_card", "/api/v2/ocr/card", "ocr_card"),
    ],
)
async def test_each_operation_is_named_in_its_events(
    mock: respx.MockRouter, method: str, path: str, operation: str
) -> None:
    mock.post(path).mock(return_value=ok())
    seen = Recorder()
    images = [samples.JPEG, samples.JPEG] if method == "extract_cards" else [samples.JPEG]
    async with client(event_hooks=seen.hooks()) as c:
        await getattr(c, method)(*images)
    assert {(e.operation, e.url) for e in seen.events} == {(operation, samples.BASE_URL + path)}


async def test_an_image_url_and_its_token_stay_out_of_every_event(
    mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.get(PATH).mock(side_effect=[unavailable(), ok()])
    seen = Recorder()
    async with client(flavour, event_hooks=seen.hooks(), retry=NO_WAIT) as c:
        await c.extract_card(IMAGE_URL)
    # The URL did go out, in the query, as format_type=url asks...
    assert all(TOKEN in str(call.request.url) for call in route.calls)
    assert route.call_count == 2
    # ... and no event shows it: the URL is the endpoint's, without a query.
    assert seen.kinds == ["request", "response", "retry", "request", "response"]
    for e in seen.events:
        assert (e.method, e.url) == ("GET", URL)
        assert TOKEN not in repr(e)
        assert "bucket.example" not in repr(e)
        assert "?" not in e.url


async def test_async_hooks_are_awaited_in_their_order(mock: respx.MockRouter) -> None:
    mock.post(PATH).mock(return_value=ok())
    order: list[str] = []

    def first(event: HookEvent) -> None:
        order.append(f"{event.kind}:first")

    async def second(event: HookEvent) -> None:
        await anyio.lowlevel.checkpoint()
        await anyio.sleep(0)
        order.append(f"{event.kind}:second")

    class Third:
        """A callable object whose ``__call__`` is a coroutine function."""

        async def __call__(self, event: HookEvent) -> None:
            await anyio.lowlevel.checkpoint()
            order.append(f"{event.kind}:third")

    hooks: list[EventHook] = [first, second, Third()]
    async with client(event_hooks={"request": hooks, "response": hooks}) as c:
        await c.extract_card(samples.JPEG)
    assert order == [
        "request:first",
        "request:second",
        "request:third",
        "response:first",
        "response:second",
        "response:third",
    ]


async def test_a_request_hook_may_wait_before_the_attempt_goes_out(
    mock: respx.MockRouter,
) -> None:
    sent: list[bool] = []
    route = mock.post(PATH).mock(return_value=ok())

    async def gate(event: HookEvent) -> None:
        await anyio.sleep(0)
        sent.append(route.called)  # the attempt waits for the hook

    async with client(event_hooks={"request": [gate]}) as c:
        await c.extract_card(samples.JPEG)
    assert sent == [False]
    assert route.call_count == 1


# -- a hook that raises ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "answers", "sent"),
    [
        ("request", "503-200", 0),  # before the first attempt: nothing is sent
        ("response", "503-200", 1),  # after the 503: not retried
        ("response", "200", 1),  # after the answer: the call still fails with the hook's error
        ("retry", "503-200", 1),  # before the retry's wait: not retried
    ],
)
async def test_a_hook_that_raises_fails_the_call_with_its_error_and_frees_the_slot(
    mock: respx.MockRouter,
    sleeps: list[float],
    flavour: str,
    kind: str,
    answers: str,
    sent: int,
) -> None:
    route = mock.post(PATH)
    boom = HookFailure("refused by the application")
    armed = [True]
    calls: list[HookEvent] = []

    def hook(event: HookEvent) -> None:
        calls.append(event)
        if armed[0]:
            armed[0] = False
            raise boom

    async with client(
        flavour,
        event_hooks={kind: [hook]},
        max_concurrency=1,
        queue_timeout=10.0,  # a slot that was not given back fails the next call, not hangs it
        retry=NO_WAIT,
    ) as c:
        route.mock(side_effect=[unavailable(), ok()] if answers == "503-200" else [ok()])
        with pytest.raises(HookFailure) as info:
            await c.extract_card(samples.JPEG)
        assert info.value is boom  # the hook's own exception, not wrapped
        assert len(calls) == 1  # called once: the call ended there
        assert route.call_count == sent
        assert c.in_flight == 0
        assert c.usage.requests == sent
        assert c.usage.retries == 0  # a retry its hook refused never happened
        # The one slot is free: the next call goes through.
        route.mock(side_effect=None, return_value=ok())
        res = await c.extract_card(samples.JPEG)
        assert res.attempts == 1
        assert c.in_flight == 0
    assert route.call_count == sent + 1


async def test_a_hook_that_raises_a_base_exception_frees_the_slot(
    mock: respx.MockRouter,
) -> None:
    route = mock.post(PATH).mock(return_value=ok())

    class Stop(BaseException):
        pass

    def hook(event: HookEvent) -> None:
        raise Stop

    async with AsyncCVClient(
        samples.API_KEY,
        samples.API_SECRET,
        base_url=samples.BASE_URL,
        max_concurrency=1,
        event_hooks={"request": [hook]},
    ) as c:
        with pytest.raises(Stop):
            await c.extract_card(samples.JPEG)
        assert c.in_flight == 0
        with anyio.fail_after(10):
            await c.with_options(event_hooks=None).extract_card(samples.JPEG)
    assert route.call_count == 1


@pytest.mark.parametrize("kind", ["request", "response"])
async def test_a_hook_that_raises_a_library_error_is_not_retried(
    mock: respx.MockRouter, sleeps: list[float], kind: str
) -> None:
    route = mock.post(PATH).mock(return_value=ok())
    boom = APIConnectionError("the application's own policy refused it", kind="connect")
    calls: list[HookEvent] = []

    def hook(event: HookEvent) -> None:
        calls.append(event)
        raise boom

    async with client(event_hooks={kind: [hook]}, retry=NO_WAIT) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(samples.JPEG)
        usage = c.usage
    assert info.value is boom
    assert len(calls) == 1
    assert route.call_count == (0 if kind == "request" else 1)
    assert usage.retries == 0


async def test_an_answer_billed_before_a_response_hook_raised_is_still_counted(
    mock: respx.MockRouter,
) -> None:
    mock.post(PATH).mock(return_value=ok())

    def hook(event: HookEvent) -> None:
        raise HookFailure("refused after the answer")

    async with client(event_hooks={"response": [hook]}) as c:
        with pytest.raises(HookFailure):
            await c.extract_card(samples.JPEG)
        usage = c.usage
    assert usage.requests == 1
    assert usage.billed + usage.ambiguous_retries >= 1  # the service billed this answer


@pytest.mark.parametrize("kind", ["response", "retry"])
async def test_a_hook_that_raises_a_library_error_after_a_retryable_answer_sends_once(
    mock: respx.MockRouter, sleeps: list[float], flavour: str, kind: str
) -> None:
    # The 503 alone would be retried, and a connect failure is one the client retries too: the
    # hook's error is neither, and ends the call after the one request.
    route = mock.post(PATH).mock(side_effect=[unavailable(), ok()])
    boom = APIConnectionError("the application's own policy refused it", kind="connect")
    calls: list[HookEvent] = []

    def hook(event: HookEvent) -> None:
        calls.append(event)
        raise boom

    async with client(flavour, event_hooks={kind: [hook]}, retry=NO_WAIT) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(samples.JPEG)
        usage = c.usage
        assert c.in_flight == 0
    assert info.value is boom
    assert [e.kind for e in calls] == [kind]
    assert route.call_count == usage.requests == 1
    assert sleeps == []  # no retry's wait was taken


# -- a hook's KeyboardInterrupt or SystemExit under CVClient ----------------------------------


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_a_base_exception_from_a_hook_under_cvclient_reaches_its_caller_only(
    mock: respx.MockRouter, raised: type[BaseException]
) -> None:
    # Hooks run in the client's loop thread. A KeyboardInterrupt or SystemExit raised there
    # belongs to the call whose hook raised it: it must reach that call's thread as raised, not
    # end the loop and with it every other thread's call and the client.
    others = 3
    lock = threading.Lock()
    arrived = [0]
    all_in, release = threading.Event(), threading.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        with lock:
            arrived[0] += 1
            if arrived[0] == others:
                all_in.set()
        await anyio.to_thread.run_sync(release.wait, 10)  # (the bound is a failure guard)
        return ok()

    route = mock.post(PATH).mock(side_effect=held)
    boom = raised("from the application's hook")

    def hook(event: HookEvent) -> None:
        raise boom

    outcomes: dict[object, object] = {}

    def call(name: object, c: CVClient) -> None:
        try:
            outcomes[name] = c.extract_card(samples.JPEG)
        except BaseException as exc:  # what reached this thread is the point
            outcomes[name] = exc

    c = CVClient(samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL, backend="asyncio")
    try:
        bad = c.with_options(event_hooks={"request": [hook]})
        threads = [threading.Thread(target=call, args=(i, c), daemon=True) for i in range(others)]
        for thread in threads:
            thread.start()
        assert all_in.wait(10)
        assert c.in_flight == others
        # Another thread's call whose hook raises, while those are in flight.
        raising = threading.Thread(target=call, args=("bad", bad), daemon=True)
        raising.start()
        raising.join(10)
        assert not raising.is_alive()
        assert outcomes["bad"] is boom
        assert c.in_flight == others  # the others are still in flight, untouched
        release.set()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()
        for i in range(others):
            result = outcomes[i]
            assert not isinstance(result, BaseException), result
            assert result.cards[0].type == "chip_id_card_front"  # type: ignore[attr-defined]
        # The client is as it was: open, nothing in flight, and it still answers.
        assert not c.is_closed
        assert c.in_flight == 0
        assert c.extract_card(samples.JPEG).attempts == 1
        # From the main thread too, which waits for its result in another way (so as to see
        # Ctrl-C at once); the loop, seen serving just now, is not left waiting on.
        with pytest.raises(raised) as info:
            bad.extract_card(samples.JPEG)
        assert info.value is boom
        assert not c.is_closed
        assert c.in_flight == 0
        assert c.extract_card(samples.JPEG).attempts == 1
    finally:
        release.set()
        c.close()
    assert route.call_count == others + 2  # the raising calls sent nothing


# -- a hook's stray CancelledError, and a real cancellation ---------------------------------


async def _cancelled_future() -> None:
    future = asyncio.get_running_loop().create_future()
    future.cancel()  # a shared writer task of the application's, say, was cancelled
    await future


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="before 3.11 asyncio cannot tell a hook's own CancelledError from the call's "
    "cancellation (no Task.cancelling()): it is taken as the call's",
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("how", ["raises", "awaits a cancelled future"])
@pytest.mark.parametrize("kind", ["request", "response"])
async def test_a_hook_raising_cancelled_error_fails_its_call_when_nothing_cancelled_it(
    mock: respx.MockRouter, flavour: str, how: str, kind: str
) -> None:
    route = mock.post(PATH).mock(return_value=ok())

    async def hook(event: HookEvent) -> None:
        if how == "raises":
            raise asyncio.CancelledError
        await _cancelled_future()

    async with client(flavour, event_hooks={kind: [hook]}) as c:
        with anyio.fail_after(10), pytest.raises(RuntimeError) as info:
            await c.extract_card(samples.JPEG)
        assert "an event hook raised CancelledError, but the call was not cancelled" in str(
            info.value
        )
        assert c.in_flight == 0
        # Nothing cancelled this task either: it carries on.
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):  # (always: the test is skipped before 3.11)
            assert task.cancelling() == 0
        # A batch accounts for every input: none is lost as if the batch were cancelled.
        with anyio.fail_after(10):
            results = await c.extract_many([samples.JPEG] * 3, concurrency=3)
        assert [r.index for r in results] == [0, 1, 2]
        for r in results:
            assert not r.ok
            assert isinstance(r.error, CVError)
            assert isinstance(r.error.__cause__, RuntimeError)
        # And the client still answers without the hook.
        res = await c.with_options(event_hooks=None).extract_card(samples.JPEG)
        assert res.attempts == 1
        assert c.in_flight == 0
    assert route.call_count == (1 if kind == "request" else 5)


@pytest.mark.parametrize("kind", ["request", "response"])
async def test_cancelling_a_call_while_its_hook_waits_cancels_it(
    mock: respx.MockRouter, kind: str
) -> None:
    route = mock.post(PATH).mock(return_value=ok())
    entered = anyio.Event()

    async def hook(event: HookEvent) -> None:
        entered.set()
        await anyio.Event().wait()  # never set: only the cancellation ends it

    caught: list[bool] = []
    scopes: list[anyio.CancelScope] = []
    async with client(event_hooks={kind: [hook]}) as c:

        async def call() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await c.extract_card(samples.JPEG)
            caught.append(scope.cancelled_caught)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await entered.wait()
                scopes[0].cancel()
        # Cancelled, as the caller asked: no RuntimeError out of the task group, nothing
        # raised in the call's place.
        assert caught == [True]
        assert c.in_flight == 0
        res = await c.with_options(event_hooks=None).extract_card(samples.JPEG)
        assert res.attempts == 1
    assert route.call_count == (1 if kind == "request" else 2)


# -- total_timeout bounds the hooks too -----------------------------------------------------


@pytest.mark.parametrize("kind", ["request", "response", "retry"])
async def test_total_timeout_bounds_a_hook_that_never_returns(
    mock: respx.MockRouter, sleeps: list[float], flavour: str, kind: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(), ok()] if kind == "retry" else [ok()])
    entered: list[str] = []

    async def stuck(event: HookEvent) -> None:
        entered.append(event.kind)
        # An Event that is never set; the hook gives up after 5 s only so that a client that
        # does not bound it fails this test instead of hanging it.
        with anyio.move_on_after(5):
            await anyio.Event().wait()

    async with client(flavour, total_timeout=0.3, retry=NO_WAIT, event_hooks={kind: [stuck]}) as c:
        started = time.perf_counter()
        with anyio.fail_after(10), pytest.raises(APITimeoutError) as info:
            await c.extract_card(samples.JPEG)
        elapsed = time.perf_counter() - started
        assert c.in_flight == 0
        usage = c.usage
    assert elapsed < 5
    assert info.value.kind == "total"
    assert "no answer within total_timeout=0.3 s" in str(info.value)
    assert entered == [kind]
    assert route.call_count == (0 if kind == "request" else 1)
    assert sleeps == []  # a retry's wait was never taken
    if kind == "response":
        # The answer came, and was billed, before its hook ran out the time: it is counted.
        assert (usage.requests, usage.billed) == (1, 1)
    else:
        assert usage.billed == 0


# -- where hooks are given -------------------------------------------------------------------


BAD_HOOKS: list[Any] = [
    [print],  # not a dict
    ("request", print),
    {"send": [print]},  # an unknown kind
    {"Request": [print]},
    {"request": print},  # one callable, not a list of them
    {"request": "print"},
    {"request": None},
    {"request": [print, "print"]},  # not callable
    {"response": [None]},
    {"retry": [42]},
]


@pytest.mark.parametrize("hooks", BAD_HOOKS)
def test_bad_event_hooks_are_refused_when_the_client_is_made(hooks: Any) -> None:
    with pytest.raises(ConfigurationError, match="event_hooks"):
        AsyncCVClient("k", "s", base_url=samples.BASE_URL, event_hooks=hooks)
    with pytest.raises(ConfigurationError, match="event_hooks"):
        CVClient("k", "s", base_url=samples.BASE_URL, event_hooks=hooks)
    made = AsyncCVClient("k", "s", base_url=samples.BASE_URL)
    with pytest.raises(ConfigurationError, match="event_hooks"):
        made.with_options(event_hooks=hooks)
    with (
        CVClient("k", "s", base_url=samples.BASE_URL) as sync,
        pytest.raises(ConfigurationError, match="event_hooks"),
    ):
        sync.with_options(event_hooks=hooks)


@pytest.mark.parametrize(
    "hooks",
    [None, {}, {"request": []}, {"request": (print,)}, {"retry": [print], "response": [len]}],
)
def test_good_event_hooks_are_taken(hooks: Any) -> None:
    AsyncCVClient("k", "s", base_url=samples.BASE_URL, event_hooks=hooks)
    with CVClient("k", "s", base_url=samples.BASE_URL, event_hooks=hooks) as sync:
        sync.with_options(event_hooks=hooks)


async def test_with_options_replaces_the_hooks_for_the_view_only(
    mock: respx.MockRouter, flavour: str
) -> None:
    mock.post(PATH).mock(return_value=ok())
    mine, theirs = Recorder(), Recorder()
    async with client(flavour, event_hooks=mine.hooks()) as c:
        await c.with_options(event_hooks=None).extract_card(samples.JPEG)
        assert mine.events == []
        await c.with_options(event_hooks=theirs.hooks("request")).extract_card(samples.JPEG)
        assert (mine.kinds, theirs.kinds) == ([], ["request"])
        # A view that does not name them keeps the client's; the client keeps its own.
        await c.with_options(timeout=5.0).extract_card(samples.JPEG)
        assert mine.kinds == ["request", "response"]
        await c.extract_card(samples.JPEG)
        assert mine.kinds == ["request", "response"] * 2
        # A view of a view without hooks stays without them.
        await c.with_options(event_hooks=None).with_options(timeout=5.0).extract_card(samples.JPEG)
    assert mine.kinds == ["request", "response"] * 2
    assert theirs.kinds == ["request"]


def test_sync_hooks_of_a_cvclient_run_in_its_loop_thread(mock: respx.MockRouter) -> None:
    mock.post(PATH).mock(side_effect=[unavailable(), ok()])
    where: list[tuple[str, threading.Thread, bool]] = []

    def hook(event: HookEvent) -> None:
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        where.append((event.kind, threading.current_thread(), in_loop))

    async def async_hook(event: HookEvent) -> None:
        await asyncio.sleep(0)
        where.append((f"async {event.kind}", threading.current_thread(), True))

    hooks: dict[str, list[EventHook]] = {
        "request": [hook, async_hook],
        "response": [hook],
        "retry": [hook],
    }
    with CVClient(
        samples.API_KEY,
        samples.API_SECRET,
        base_url=samples.BASE_URL,
        retry=NO_WAIT,
        event_hooks=hooks,
    ) as c:
        res = c.extract_card(samples.JPEG)
        assert c.in_flight == 0
    assert res.attempts == 2
    assert [kind for kind, _, _ in where] == [
        "request",
        "async request",
        "response",
        "retry",
        "request",
        "async request",
        "response",
    ]
    threads = {thread for _, thread, _ in where}
    assert len(threads) == 1  # the client's one loop thread...
    assert threading.current_thread() not in threads  # ... not the caller's
    assert all(in_loop for _, _, in_loop in where)  # inside its running event loop


# -- every transport -------------------------------------------------------------------------


TRANSPORTS = ["aiohttp", "sharded", "pool", "http_client", "sync_http_client"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")
    return str(request.param)


def emulator_client(emulator: RunningEmulator, transport: str, **kwargs: Any) -> tuple[Any, Any]:
    """A client for the emulator sending through ``transport``, and the caller's own httpx
    client it sends through (to close after it), if any."""
    if transport == "http_client":
        own: Any = httpx.AsyncClient(trust_env=False)
        return emulator.client(http_client=own, **kwargs), own
    if transport == "sync_http_client":
        own = httpx.Client(trust_env=False)
        return SyncDriven(emulator.sync_client(http_client=own, **kwargs)), own
    return emulator.client(transport=transport, **kwargs), None


def shown(events: list[HookEvent], base_url: str) -> list[tuple[Any, ...]]:
    """The events as compared across transports (times vary; the id is checked apart)."""
    return [
        (
            e.kind,
            e.operation,
            e.method,
            e.url.replace(base_url, "<emulator>"),
            e.attempt,
            e.status_code,
            e.error,
            e.reason,
            e.delay,
        )
        for e in events
    ]


def expected(
    kind: str,
    attempt: int,
    status: int | None = None,
    error: str | None = None,
    reason: str | None = None,
    delay: float | None = None,
    *,
    operation: str = "extract_card",
) -> tuple[Any, ...]:
    method, path = ("GET", "/api/v2/ocr/card") if operation == "ocr_card" else ("POST", PATH)
    return (kind, operation, method, "<emulator>" + path, attempt, status, error, reason, delay)


EXPECTED_EVENTS = [
    # a call meeting 503 twice (max_retries=1)
    expected("request", 1),
    expected("response", 1, 503, "InternalServerError"),
    expected("retry", 1, 503, "InternalServerError", "http_503", 0.0),
    expected("request", 2),
    expected("response", 2, 503, "InternalServerError"),
    # then a file, answered
    expected("request", 1),
    expected("response", 1, 200),
    # then an image by URL, answered
    expected("request", 1, operation="ocr_card"),
    expected("response", 1, 200, operation="ocr_card"),
]


async def test_the_same_events_on_every_transport(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    seen = Recorder()
    made, own = emulator_client(
        cv_emulator,
        transport,
        event_hooks=seen.hooks(),
        retry=RetryPolicy(max_retries=1, backoff_base=0.0),
    )
    image_url = cv_emulator.specimen_url("chip_front.jpg") + f"?token={TOKEN}"
    try:
        async with made as c:
            cv_emulator.set_faults(rate_503=1.0, retry_after="0")
            with pytest.raises(InternalServerError) as info:
                await c.extract_card(CARD)
            cv_emulator.clear_faults()
            first = await c.extract_card(CARD)
            second = await c.ocr_card(image_url)
            assert c.in_flight == 0
    finally:
        if isinstance(own, httpx.AsyncClient):
            await own.aclose()
        elif own is not None:
            own.close()
    assert shown(seen.events, cv_emulator.base_url) == EXPECTED_EVENTS
    ids = [e.request_id for e in seen.events]
    assert ids == [info.value.request_id] * 5 + [first.request_id] * 2 + [second.request_id] * 2
    assert len(set(ids)) == 3
    assert all(TOKEN not in repr(e) for e in seen.events)
    assert cv_emulator.stats()["requests"] == 4


# -- the call's id ---------------------------------------------------------------------------


async def test_every_attempt_of_a_call_sends_the_same_request_id(
    mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(), unavailable(), ok(), ok()])
    seen = Recorder()
    async with client(flavour, event_hooks=seen.hooks(), retry=NO_WAIT) as c:
        res = await c.extract_card(samples.JPEG)
        other = await c.extract_card(samples.JPEG)
    sent = [call.request.headers.get_list("X-Request-ID") for call in route.calls]
    assert sent == [[res.request_id]] * 3 + [[other.request_id]]
    assert res.request_id != other.request_id
    assert str(uuid.UUID(res.request_id)) == res.request_id
    assert [e.request_id for e in seen.events] == [res.request_id] * 8 + [other.request_id] * 2


async def test_a_failed_call_carries_the_id_it_sent(
    mock: respx.MockRouter, sleeps: list[float]
) -> None:
    route = mock.post(PATH).mock(return_value=unavailable())
    seen = Recorder()
    async with client(event_hooks=seen.hooks(), retry=NO_WAIT) as c:
        with pytest.raises(CVError) as info:
            await c.extract_card(samples.JPEG)
    assert route.call_count == 3
    assert {call.request.headers["X-Request-ID"] for call in route.calls} == {info.value.request_id}
    assert {e.request_id for e in seen.events} == {info.value.request_id}


async def test_request_id_header_none_sends_no_id_but_the_call_still_has_one(
    mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(), ok()])
    seen = Recorder()
    async with client(flavour, request_id_header=None, event_hooks=seen.hooks()) as c:
        res = await c.extract_card(samples.JPEG)
    assert route.call_count == 2
    for call in route.calls:
        assert "X-Request-ID" not in call.request.headers
        assert not any("request-id" in name.lower() for name in call.request.headers)
    assert str(uuid.UUID(res.request_id)) == res.request_id
    assert {e.request_id for e in seen.events} == {res.request_id}


async def test_a_custom_request_id_header(
    mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(), ok(), ok(), ok()])
    async with client(flavour, request_id_header="X-Correlation-ID") as c:
        res = await c.extract_card(samples.JPEG)
        # A view may name another header, or none, for its own calls only.
        by_view = await c.with_options(request_id_header="X-Trace-Id").extract_card(samples.JPEG)
        silent = await c.with_options(request_id_header=None).extract_card(samples.JPEG)
    first, retried, viewed, unnamed = (call.request.headers for call in route.calls)
    for headers in (first, retried):
        assert headers.get_list("X-Correlation-ID") == [res.request_id]
        assert "X-Request-ID" not in headers
    assert viewed.get_list("X-Trace-Id") == [by_view.request_id]
    assert "X-Correlation-ID" not in viewed
    assert "X-Correlation-ID" not in unnamed
    assert "X-Request-ID" not in unnamed
    assert len({res.request_id, by_view.request_id, silent.request_id}) == 3


@pytest.mark.parametrize("name", ["", "X Request", "X-Request-ID\r\n", "Authorization", 5])
def test_a_bad_request_id_header_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="request_id_header"):
        AsyncCVClient("k", "s", base_url=samples.BASE_URL, request_id_header=name)
