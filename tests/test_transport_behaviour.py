"""One behaviour suite, run on every transport over real sockets.

Which failures are retried, and whether a retry may bill twice, depends on how the transport
reports them; so does each kind of timeout, what cancellation leaves behind and the bound on
requests in flight. Every case here runs on ``sharded``, ``pool`` and ``aiohttp`` (asyncio only)
and must end the same way on each. The proxy cases run on every transport in test_proxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from cvekyc_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    CVError,
    ExtractionResult,
    InternalServerError,
    MalformedResponseError,
    QueueTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
)
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples
from tests._raw import Answer, KeepAliveServer, RawServer, silent_server

pytestmark = pytest.mark.anyio
CARD = specimen_path("chip_front.jpg")
SAFE = RetryPolicy(max_retries=1, backoff_base=0.0, retry_ambiguous=False)
NO_WAIT = RetryPolicy(backoff_base=0.0)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sharded", "pool", "aiohttp"])
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")
    return str(request.param)


def raw_client(base_url: str, transport: str, **kwargs: object) -> AsyncCVClient:
    return AsyncCVClient(
        "k",
        "s",
        base_url=base_url,
        transport=transport,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


# -- what each failure is, and whether it is retried -----------------------------------------


@pytest.mark.parametrize(
    ("fault", "cls", "sent"),
    [
        # Billing-safe retries resend only what provably did not reach the service: 429 and
        # 503 say the work was not done; 500/502/504 and a dropped answer may have been.
        ("429", RateLimitError, 2),
        ("503", InternalServerError, 2),
        ("500", InternalServerError, 1),
        ("502", InternalServerError, 1),
        ("504", InternalServerError, 1),
        ("drop", APIConnectionError, 1),
        ("malformed", MalformedResponseError, 1),
    ],
)
async def test_each_fault_ends_as_its_error_and_billing_class(
    cv_emulator: RunningEmulator, transport: str, fault: str, cls: type[CVError], sent: int
) -> None:
    cv_emulator.set_faults(**{f"rate_{fault}": 1.0}, retry_after="0")
    async with cv_emulator.client(retry=SAFE, transport=transport) as client:
        with pytest.raises(CVError) as info:
            await client.extract_card(CARD)
    assert type(info.value) is cls
    assert info.value.attempts == sent
    assert cv_emulator.stats()["requests"] == sent
    if fault == "drop":
        assert info.value.kind == "transport"  # type: ignore[attr-defined]


async def test_faults_are_retried_to_success(cv_emulator: RunningEmulator, transport: str) -> None:
    cv_emulator.set_faults(rate_503=0.3, rate_drop=0.1, rate_429=0.1, retry_after="0", seed=3)
    async with cv_emulator.client(
        retry=RetryPolicy(max_retries=8, backoff_base=0.0), transport=transport
    ) as client:
        results = [await client.extract_card(CARD) for _ in range(20)]
        usage = client.usage
    assert all(r.billed for r in results)
    stats = cv_emulator.stats()
    assert usage.requests == stats["requests"] == 20 + usage.retries
    assert usage.retries > 0
    # Each dropped answer was billed by the service and retried: the client says so.
    assert usage.ambiguous_retries == stats["faults"].get("drop", 0)


async def test_a_refused_connection_is_retried_even_in_billing_safe_mode(transport: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with raw_client(f"http://127.0.0.1:{port}", transport, retry=SAFE) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.extract_card(CARD)
        assert client.usage.requests == 2
        assert client.usage.ambiguous_retries == 0
    assert info.value.kind == "connect"
    assert not isinstance(info.value, APITimeoutError)
    assert "http://" not in str(info.value)  # messages quote no URL


@pytest.mark.parametrize("style", ["file", "url"])
async def test_a_server_that_closes_after_the_request_is_ambiguous(
    transport: str, style: str
) -> None:
    # It read the whole request and may have done the work: neither the transport (aiohttp
    # resends a GET on its own) nor billing-safe retries may send it again.
    async def close_at_once(head: bytes, writer: asyncio.StreamWriter) -> None:
        pass

    image: object = CARD if style == "file" else "https://images.example/card.jpg?sig=s3cret"
    with RawServer(close_at_once) as server:
        async with raw_client(server.base_url, transport, retry=SAFE) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.extract_card(image)  # type: ignore[arg-type]
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.kind == "transport"
    assert server.requests == 1
    assert "s3cret" not in str(info.value)


async def test_connections_the_server_closed_while_idle_are_not_reused(transport: str) -> None:
    # The server closes each connection after its answer without saying so: a transport that
    # sent the next request into it would fail it (ambiguously). Each checks first.
    # The next request waits until the server says it has closed the connection: before that
    # the connection is still open, and no check can know that the server is about to close it
    # (the race every HTTP/1.1 client runs with such a server). The wait blocks the event loop
    # on purpose, as a busy application would: no transport sees the close in the background,
    # so the check made when a connection is taken from the pool must find it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests._closing"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().split()[-1]
        async with raw_client(f"http://127.0.0.1:{port}", transport, max_retries=0) as client:
            for _ in range(60):
                assert (await client.extract_card(CARD)).billed
                closed = proc.stdout.readline()
                assert closed == "closed\n"
            assert client.usage.requests == 60  # each found closed before it was used
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_request_crossing_the_servers_close_is_resent_as_never_delivered(
    transport: str,
) -> None:
    # Without waiting for the close, the next request and the close cross now and then: the
    # server's side then resets the connection, so that request never reached it. It is sent
    # again, even in billing-safe mode, and not counted as possibly billed twice.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests._closing"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().split()[-1]
        async with raw_client(f"http://127.0.0.1:{port}", transport, retry=SAFE) as client:
            for _ in range(60):
                assert (await client.extract_card(CARD)).billed
            usage = client.usage
        assert usage.ambiguous_retries == 0
        assert usage.requests == 60 + usage.retries
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# -- one answer per request: never another call's card ---------------------------------------


def _marked(number: int) -> bytes:
    """An image that tells the server which call sent it."""
    return samples.JPEG + b"MARK%06d" % number


def _card_answer(card_id: str, status: bytes = b"200 OK") -> bytes:
    body = samples.answer([{**samples.CHIP_FRONT, "info": {"id": card_id}}])
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


def _mark_of(body: bytes) -> str:
    found = re.search(rb"MARK(\d{6})", body)
    assert found is not None
    return found.group(1).decode()


def _with_extra(mode: str) -> object:
    """A server that sends one answer too many after each of its answers: another person's
    card, at once in the same write, at once in a write of its own, or 20 ms later."""

    def answer(head: bytes, body: bytes) -> Answer:
        mark = _mark_of(body)
        own, extra = _card_answer(mark), _card_answer("EXTRA" + mark)
        if mode == "same packet":
            return [own + extra]
        if mode == "at once":
            return [own, extra]
        return [own, 0.02, extra]

    return answer


@pytest.mark.parametrize("mode", ["same packet", "at once", "20 ms later"])
async def test_an_extra_answer_never_reaches_the_next_call(transport: str, mode: str) -> None:
    with KeepAliveServer(_with_extra(mode)) as server:  # type: ignore[arg-type]
        async with raw_client(server.base_url, transport, max_retries=0) as client:
            got = []
            for number in range(20):
                result = await client.extract_card(_marked(number))
                got.append(result.cards[0].info.id)
                # The next call starts once the extra answer is on its way to the client.
                await anyio.to_thread.run_sync(server.wait_answered, number + 1)
    assert got == [f"{n:06d}" for n in range(20)]
    assert server.connections == 20  # no connection that held more was used again


async def test_part_of_an_extra_head_with_the_answer_retires_the_connection(
    transport: str,
) -> None:
    # The answer and the first bytes of an extra answer's head come in one read, the rest of
    # it later, after the next call has gone out: that call must get its own answer (not the
    # extra, not a garbled one), so the connection is not used again.
    def answer(head: bytes, body: bytes) -> Answer:
        mark = _mark_of(body)
        extra = _card_answer("EXTRA" + mark)
        return [_card_answer(mark) + extra[:40], 0.02, extra[40:]]

    with KeepAliveServer(answer) as server:
        async with raw_client(server.base_url, transport, max_retries=0) as client:
            got = [(await client.extract_card(_marked(n))).cards[0].info.id for n in range(10)]
    assert got == [f"{n:06d}" for n in range(10)]
    assert server.connections == 10


@pytest.mark.parametrize("framing", ["length", "chunked", "chunked with trailers"])
async def test_a_connection_is_reused_after_a_well_framed_answer(
    transport: str, framing: str
) -> None:
    # The other side of the rule: answers that end where their framing says keep their
    # connection, whatever the framing.
    def answer(head: bytes, body: bytes) -> Answer:
        data = samples.answer([{**samples.CHIP_FRONT, "info": {"id": _mark_of(body)}}])
        if framing == "length":
            return [_card_answer(_mark_of(body))]
        trailer = b"X-Checksum: 1\r\n" if framing == "chunked with trailers" else b""
        return [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(data) - 10, data[:-10])
            + b"%x\r\n%s\r\n0\r\n%s\r\n" % (10, data[-10:], trailer)
        ]

    with KeepAliveServer(answer) as server:
        async with raw_client(server.base_url, transport, max_retries=0) as client:
            got = [(await client.extract_card(_marked(n))).cards[0].info.id for n in range(10)]
    assert got == [f"{n:06d}" for n in range(10)]
    assert server.connections == 1


async def test_extra_answers_under_load_reach_no_call(transport: str) -> None:
    # Extras that come in the same read as the answer are found whatever the timing. (One that
    # comes in a later packet is found only if it arrives before the connection's next request
    # leaves: no client can tell a later extra from the next answer.)
    mode = "same packet"
    got: dict[int, str] = {}

    async def one(number: int) -> None:
        result = await client.extract_card(_marked(number))
        got[number] = str(result.cards[0].info.id)

    with KeepAliveServer(_with_extra(mode)) as server:  # type: ignore[arg-type]
        async with (
            raw_client(server.base_url, transport, max_retries=0, max_concurrency=4) as client,
            anyio.create_task_group() as tg,
        ):
            for number in range(40):
                tg.start_soon(one, number)
    assert got == {n: f"{n:06d}" for n in range(40)}


async def test_a_late_answer_after_a_gateway_timeout_reaches_no_call(transport: str) -> None:
    # A gateway gives up (504) and the real answer, for that call, follows on the connection:
    # the next call, sent at once, must get its own answer, not that one.
    def answer(head: bytes, body: bytes) -> Answer:
        mark = _mark_of(body)
        if int(mark) % 2 == 0:
            return [_card_answer("", b"504 Gateway Timeout"), 0.02, _card_answer("LATE" + mark)]
        return [_card_answer(mark)]

    with KeepAliveServer(answer) as server:
        async with raw_client(server.base_url, transport, max_retries=0) as client:
            for number in range(0, 20, 2):
                with pytest.raises(InternalServerError) as info:
                    await client.extract_card(_marked(number))
                assert info.value.status_code == 504
                result = await client.extract_card(_marked(number + 1))
                assert result.cards[0].info.id == f"{number + 1:06d}"


# -- answers that arrived but are not HTTP ------------------------------------------------------

_OK = samples.answer([samples.CHIP_FRONT])


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"HTZP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", id="garbage status line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_OK), len(_OK) + 1, _OK),
            id="conflicting Content-Length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (b"a" * 200_000, len(_OK), _OK),
            id="a header over the limit",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(_OK), len(_OK), _OK),
            id="Content-Length with chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n%s\r\n0\r\n\r\n" % _OK,
            id="a broken chunk",
        ),
    ],
)
async def test_an_answer_that_is_not_http_is_malformed_and_not_resent(
    transport: str, wire: bytes
) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(wire)

    with RawServer(answer) as server:
        async with raw_client(server.base_url, transport, retry=NO_WAIT) as client:
            with pytest.raises(MalformedResponseError) as info:
                await client.extract_card(CARD)
            usage = client.usage
    assert server.requests == 1  # it arrived, so the request was read: never sent again
    assert info.value.attempts == 1
    assert usage.ambiguous_retries == 0
    # Nothing the server sent is quoted, not even in the exceptions chained out of sight.
    seen: BaseException | None = info.value
    while seen is not None:
        assert "aaaa" not in repr(seen)
        assert "HTZP" not in repr(seen)
        seen = seen.__cause__ or seen.__context__


async def test_a_long_header_in_a_valid_answer_is_read_alike(transport: str) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nX-Trace: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (b"t" * 9_000, len(_OK), _OK)
        )

    with RawServer(answer) as server:
        async with raw_client(server.base_url, transport, retry=NO_WAIT) as client:
            result = await client.extract_card(CARD)
    assert result.billed
    assert server.requests == 1


async def test_an_answer_before_the_upload_is_read_is_the_calls_answer(transport: str) -> None:
    # A proxy refuses a large upload as soon as it sees the head (413) and closes, most of the
    # body unread: the call gets the 413, once, on every transport; not a broken connection
    # that would be sent again.
    big = samples.JPEG + bytes(6 * 1024 * 1024)

    async def refuse(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RawServer(refuse, read_body=False))
        async with raw_client(
            server.base_url, transport, retry=NO_WAIT, max_file_size=len(big)
        ) as client:
            with pytest.raises(APIStatusError) as info:
                await client.extract_card(big)
            usage = client.usage
    assert info.value.status_code == 413
    assert server.requests == usage.requests == 1


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"],
    ids=["100 Continue", "103 Early Hints"],
)
async def test_an_interim_answer_does_not_end_a_large_upload(
    transport: str, interim: bytes
) -> None:
    # A server may say "go on" before it reads the body: that is no early answer, and the
    # whole upload goes out and gets its answer, once.
    big = _marked(1) + bytes(3 * 1024 * 1024)

    def answer(head: bytes, body: bytes) -> Answer:
        assert len(body) > len(big)  # the whole upload arrived
        return [_card_answer(_mark_of(body))]

    with KeepAliveServer(answer, interim=interim) as server:
        async with raw_client(
            server.base_url, transport, retry=NO_WAIT, max_file_size=len(big)
        ) as client:
            result = await client.extract_card(big)
            usage = client.usage
    assert result.cards[0].info.id == "000001"
    assert usage.requests == 1


# -- each kind of timeout --------------------------------------------------------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connection hangs in the handshake."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
                fillers.append(s)
            yield port
        finally:
            for s in fillers:
                s.close()


async def test_a_connection_not_made_in_time_is_a_connect_timeout(transport: str) -> None:
    timeout = httpx.Timeout(5.0, connect=0.2)
    with full_backlog() as port:
        async with raw_client(
            f"http://127.0.0.1:{port}", transport, retry=SAFE, timeout=timeout
        ) as client:
            with pytest.raises(APITimeoutError) as info:
                await client.extract_card(CARD)
            # Nothing reached the service: retried even in billing-safe mode.
            assert client.usage.requests == 2
    assert info.value.kind == "connect"


async def test_a_stalled_answer_is_a_read_timeout(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=30)
    timeout = httpx.Timeout(5.0, read=0.2)
    async with cv_emulator.client(retry=SAFE, timeout=timeout, transport=transport) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.extract_card(CARD)
    assert info.value.kind == "read"
    assert info.value.attempts == 1  # ambiguous: not resent in billing-safe mode


async def test_an_upload_that_stops_moving_is_a_write_timeout(transport: str) -> None:
    big = samples.JPEG + bytes(24 * 1024 * 1024)  # far more than the socket buffers hold
    timeout = httpx.Timeout(10.0, write=0.3)
    with silent_server(receive_buffer=4096) as port:
        async with raw_client(
            f"http://127.0.0.1:{port}",
            transport,
            retry=SAFE,
            timeout=timeout,
            max_file_size=len(big),
        ) as client:
            with pytest.raises(APITimeoutError) as info:
                await client.extract_card(big)
    assert info.value.kind == "write"
    assert info.value.attempts == 1  # part of it was sent: ambiguous


async def test_total_timeout_bounds_the_call(cv_emulator: RunningEmulator, transport: str) -> None:
    cv_emulator.set_faults(latency=1.0)
    async with cv_emulator.client(total_timeout=0.2, transport=transport) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.extract_card(CARD)
        assert client.in_flight == 0
    assert info.value.kind == "total"


async def test_a_full_client_fails_fast_with_queue_timeout(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=30)
    timeout = httpx.Timeout(5.0, read=2.0)
    async with cv_emulator.client(
        max_concurrency=1, queue_timeout=0.05, timeout=timeout, retry=SAFE, transport=transport
    ) as client:

        async def hold() -> None:
            with contextlib.suppress(CVError):
                await client.extract_card(CARD)

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            while client.in_flight == 0:
                await anyio.sleep(0.005)
            with pytest.raises(QueueTimeoutError) as info:
                await client.extract_card(CARD)
            tg.cancel_scope.cancel()
    assert info.value.attempts == 0
    assert cv_emulator.stats()["requests"] == 1


async def test_the_pool_never_times_out_behind_the_limiter(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    cv_emulator.set_faults(latency=0.03)
    timeout = httpx.Timeout(5.0, pool=0.001)
    async with cv_emulator.client(
        max_concurrency=4, timeout=timeout, max_retries=0, transport=transport
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(client.extract_card, CARD)
        assert client.usage.answers == 32
        assert client.usage.errors == {}


# -- the bound on requests in flight, and cancellation ----------------------------------------


async def test_requests_in_flight_and_connections_stay_within_max_concurrency(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    cv_emulator.set_faults(latency=0.02, jitter=0.02, rate_503=0.2, retry_after="0", seed=5)
    async with (
        cv_emulator.client(max_concurrency=5, retry=NO_WAIT, transport=transport) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(60):
            tg.start_soon(client.extract_card, CARD)
    stats = cv_emulator.stats()
    assert stats["peak_in_flight"] == 5
    assert stats["connections"] <= 5  # connections are kept and reused, never more than slots


async def test_cancellations_leave_the_transport_whole(
    cv_emulator: RunningEmulator, transport: str
) -> None:
    seed = 20261126
    rng = random.Random(seed)
    cv_emulator.set_faults(latency=0.01, jitter=0.03, seed=seed)
    concurrency = 6
    timeout = httpx.Timeout(5.0, pool=1.0)
    async with cv_emulator.client(
        max_concurrency=concurrency, retry=NO_WAIT, timeout=timeout, transport=transport
    ) as client:
        finished = Counter[str]()

        async def call(after: float) -> None:
            with anyio.move_on_after(after) as scope:
                await client.extract_card(CARD)
            finished["cancelled" if scope.cancelled_caught else "done"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(120):
                tg.start_soon(call, rng.choice([0.0, rng.uniform(0.0, 0.08), float("inf")]))
        assert sum(finished.values()) == 120, f"seed {seed}"
        assert client.in_flight == 0
        # No connection was left half-used: the client then runs at full concurrency.
        assert await anyio.to_thread.run_sync(cv_emulator.wait_idle, 30.0)
        cv_emulator.set_faults(latency=0.1)
        cv_emulator.reset()
        results: list[ExtractionResult] = []

        async def one() -> None:
            results.append(await client.extract_card(CARD))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency * 2):
                tg.start_soon(one)
        assert len(results) == concurrency * 2
        assert cv_emulator.stats()["peak_in_flight"] == concurrency


# -- reading answers ---------------------------------------------------------------------------


async def test_answers_are_decoded_and_capped_alike(transport: str) -> None:
    body = samples.answer(samples.CHIP_FRONT)
    packed = gzip.compress(body)
    huge = b"x" * 300_000

    # The server closes each connection after its answer, and says so.
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        if b"get_thumb=true" in head:  # over the cap, in chunks with no length announced
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(4):
                writer.write(b"%x\r\n%s\r\n" % (len(huge), huge))
            writer.write(b"0\r\n\r\n")
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(packed) + packed
        )

    with RawServer(answer) as server:
        async with raw_client(
            server.base_url, transport, max_retries=0, max_response_size=1_000_000
        ) as client:
            result = await client.extract_card(CARD)
            assert result.cards[0].info.id == samples.CHIP_FRONT["info"]["id"]
            with pytest.raises(ResponseTooLargeError):
                await client.extract_card(CARD, get_thumb=True)
            raw = await client.with_raw_response.extract_card(CARD)
            assert raw.http_version == "HTTP/1.1"
            assert raw.content == body


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (b"X-Request-ID: svc-1\r\n", "svc-1"),
        (b"X-Request-ID: svc-1\r\nX-Request-ID: svc-2\r\n", None),  # which one? neither
        (b"Request-ID: svc-3\r\n", "svc-3"),
    ],
    ids=["one", "twice", "other name"],
)
async def test_the_services_request_id_reads_alike_on_every_transport(
    transport: str, extra: bytes, expected: str | None
) -> None:
    # Headers are looked up one by one on the aiohttp transport and through httpx.Headers on
    # the others: a header sent twice reads as both values joined on each, so the result and
    # the raw headers agree.
    def answer(head: bytes, body: bytes) -> Answer:
        card = _card_answer(_mark_of(body))
        return [card.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n", 1)]

    with KeepAliveServer(answer) as server:
        async with raw_client(server.base_url, transport, retry=NO_WAIT) as client:
            result = await client.extract_card(_marked(7))
    assert result.cards[0].info.id == "000007"
    assert result.service_request_id == expected


async def test_a_content_encoding_sent_twice_is_no_encoding_the_client_reads(
    transport: str,
) -> None:
    def answer(head: bytes, body: bytes) -> Answer:
        card = _card_answer(_mark_of(body))
        both = b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n"
        return [card.replace(b"\r\n\r\n", b"\r\n" + both + b"\r\n", 1)]

    with KeepAliveServer(answer) as server:
        async with raw_client(server.base_url, transport, retry=NO_WAIT) as client:
            with pytest.raises(MalformedResponseError) as info:
                await client.extract_card(_marked(8))
    assert "Content-Encoding" in str(info.value)
