"""The decoding boundary: whatever bytes, headers and status arrive, a call ends as a result or a
CVError, and no error message or repr quotes what the answer held."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from cvekyc_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AsyncCVClient,
    CVError,
    MalformedResponseError,
    RateLimitError,
)
from cvekyc_async._errors import ResponseTooLargeError
from cvekyc_async._read import FREE_BYTES, ReadBudget
from tests import samples

PATH = "/api/v2/ekyc/card"
DEEP = b"[" * 50_000 + b"]" * 50_000


def client(**kwargs: Any) -> AsyncCVClient:
    kwargs.setdefault("base_url", samples.BASE_URL)
    kwargs.setdefault("max_retries", 0)
    return AsyncCVClient(samples.API_KEY, samples.API_SECRET, **kwargs)


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        yield router


class Chunks(httpx.AsyncByteStream):
    """A body in chunks that stops when it is closed, as a connection does."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.taken = 0
        self.closed = False

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        await anyio.lowlevel.checkpoint()  # as a socket read does: other reads interleave
        if self.closed:
            raise httpx.ReadError("closed")
        if self.taken == len(self.chunks):
            raise StopAsyncIteration
        self.taken += 1
        return self.chunks[self.taken - 1]

    async def aclose(self) -> None:
        self.closed = True


def answer_raw(
    mock: respx.MockRouter, status: int, body: bytes, headers: dict[str, str] | None = None
) -> Chunks:
    # A stream, not content: respx would decode content (and fail on a lying Content-Encoding)
    # before the client ever saw it.
    stream = Chunks(*(body[i : i + 1000] for i in range(0, len(body), 1000)))
    mock.post(PATH).mock(return_value=httpx.Response(status, headers=headers, stream=stream))
    return stream


def envelope(data: bytes = b"[]", code: bytes = b'"0"', message: bytes = b'""') -> bytes:
    return b'{"data": ' + data + b', "errorCode": ' + code + b', "errorMessage": ' + message + b"}"


HOSTILE_2XX = [
    pytest.param(envelope(message=b'"\xff\xfe"'), {}, id="bad-utf8-in-a-string"),
    pytest.param(envelope(code=b'"\xff"'), {}, id="bad-utf8-in-error-code"),
    pytest.param(envelope(data=DEEP), {}, id="50000-deep-data"),
    pytest.param(envelope(code=DEEP), {}, id="50000-deep-error-code"),
    pytest.param(envelope(code=b'"' + b"1" * 5000 + b'"'), {}, id="5000-digit-error-code-string"),
    pytest.param(envelope(code=b"1" * 5000), {}, id="5000-digit-error-code-number"),
    pytest.param(envelope(code='"²"'.encode()), {}, id="superscript-two"),
    pytest.param(envelope(code='"١٢"'.encode()), {}, id="arabic-indic-digits"),
    pytest.param(envelope(code=b"1e400"), {}, id="infinite-error-code"),
    pytest.param(b"\x00" * 64, {}, id="zero-bytes"),
    pytest.param(b"[" * 200 + b'"', {}, id="unfinished-nesting"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "headers"), HOSTILE_2XX)
async def test_hostile_2xx_answers_end_as_malformed_response(
    mock: respx.MockRouter, jpeg_file: Path, body: bytes, headers: dict[str, str]
) -> None:
    answer_raw(mock, 200, body, headers)
    async with client() as c:
        with pytest.raises(MalformedResponseError) as info:
            await c.extract_card(jpeg_file)
        assert c.usage.errors == {"MalformedResponseError": 1}
    assert info.value.status_code == 200
    assert info.value.body == body
    assert info.value.attempts == 1  # never retried: the service may have billed it


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "headers"), HOSTILE_2XX)
async def test_hostile_error_answers_end_as_status_errors(
    mock: respx.MockRouter, jpeg_file: Path, body: bytes, headers: dict[str, str]
) -> None:
    answer_raw(mock, 502, body, headers)
    async with client() as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.status_code == 502


@pytest.mark.anyio
async def test_a_hostile_retry_after_is_read_or_ignored(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    for value in (
        "1e999",
        "nan",
        "-5",
        "Mon, 01 Jan 99999 00:00:00 GMT",
        b"\xb2",
        "x" * 5000,
    ):
        mock.post(PATH).respond(
            429, headers=[(b"Retry-After", value if isinstance(value, bytes) else value.encode())]
        )
        async with client() as c:
            with pytest.raises(RateLimitError):
                await c.extract_card(jpeg_file)


@pytest.mark.anyio
async def test_large_invalid_code_and_odd_valid_values_still_decode(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    card = {
        "type": "passport",
        "info": {"id": "C1234567"},
        "valid": [[["True"]]],
        "invalidCode": "9" * 5000,
        "invalidMessage": 12,
    }
    mock.post(PATH).respond(200, content=samples.answer(card))
    async with client() as c:
        res = await c.extract_card(jpeg_file)
    assert res.cards[0].invalid_code is None
    assert res.cards[0].valid is False  # a warning code was sent, even if unreadable
    assert res.cards[0].info.get("id") == "C1234567"


@pytest.mark.anyio
async def test_error_code_in_digits_other_than_ascii_is_not_read_as_a_number(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    # int() reads "١٢" as 12; the envelope's integers are ASCII digits only.
    mock.post(PATH).respond(200, content=envelope(code='"١٢"'.encode()))
    async with client() as c:
        with pytest.raises(MalformedResponseError, match="errorCode is missing or not a small"):
            await c.extract_card(jpeg_file)


@pytest.mark.anyio
async def test_gzip_answers_are_decoded(mock: respx.MockRouter, jpeg_file: Path) -> None:
    body = gzip.compress(samples.answer(samples.PASSPORT))
    answer_raw(mock, 200, body, {"Content-Encoding": "gzip"})
    async with client() as c:
        res = await c.extract_card(jpeg_file)
    assert res.cards[0].type == "passport"


@pytest.mark.anyio
async def test_an_unexpected_transport_exception_is_a_connection_error(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    class Odd(Exception):
        pass

    route = mock.post(PATH).mock(side_effect=Odd("Nguyen Van A 001099012345"))
    async with client() as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(jpeg_file)
    # No network failure the client knows: it may have been sent, and is not sent again.
    assert info.value.kind == "unknown"
    assert route.call_count == 1
    assert "001099012345" not in str(info.value)
    assert "Odd" in str(info.value)


@pytest.mark.anyio
async def test_protocol_error_text_is_not_quoted(mock: respx.MockRouter, jpeg_file: Path) -> None:
    # h11 quotes the offending bytes; a hostile server can put card data there.
    mock.post(PATH).mock(side_effect=httpx.RemoteProtocolError("illegal header b'001099012345'"))
    async with client() as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(jpeg_file)
    assert "001099012345" not in str(info.value)
    assert "RemoteProtocolError" in str(info.value)


@pytest.mark.anyio
async def test_error_message_of_the_service_is_one_bounded_line(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(PATH).respond(200, content=samples.answer([], code="3", message="a\nb" * 500))
    async with client() as c:
        with pytest.raises(APIError) as info:
            await c.extract_card(jpeg_file)
    text = str(info.value)
    assert "\n" not in text
    assert len(text) < 400
    assert info.value.error_message == "a\nb" * 500  # whole on the attribute


# -- max_response_size ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_announced_answer_over_the_cap_fails_before_it_is_read(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    body = samples.answer(samples.PASSPORT)
    mock.post(PATH).respond(200, content=body)
    async with client(max_response_size=len(body) - 1, max_retries=3) as c:
        with pytest.raises(ResponseTooLargeError) as info:
            await c.extract_card(jpeg_file)
        assert c.usage.requests == 1  # not retried
    err = info.value
    assert isinstance(err, MalformedResponseError)
    assert err.limit == len(body) - 1
    assert f"{len(body):,} bytes announced" in str(err)
    assert "max_response_size" in str(err)
    assert err.body == b""


@pytest.mark.anyio
async def test_an_unannounced_answer_over_the_cap_fails_at_the_cap(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    stream = answer_raw(mock, 200, b" " * 100_000)
    async with client(max_response_size=10_500) as c:
        with pytest.raises(ResponseTooLargeError) as info:
            await c.extract_card(jpeg_file)
    assert "more than that" in str(info.value)
    assert stream.taken == 11  # stopped at the cap, the rest never read


@pytest.mark.anyio
async def test_an_answer_at_the_cap_is_read(mock: respx.MockRouter, jpeg_file: Path) -> None:
    body = samples.answer(samples.PASSPORT)
    mock.post(PATH).respond(200, content=body)
    async with client(max_response_size=len(body)) as c:
        res = await c.extract_card(jpeg_file)
    assert res.cards[0].type == "passport"


@pytest.mark.anyio
async def test_a_decompressed_answer_over_the_cap_fails(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    # 1 MB of spaces compresses to about a kilobyte: the cap counts what is decoded.
    bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
    assert len(bomb) < 2000
    answer_raw(mock, 200, bomb, {"Content-Encoding": "gzip"})
    async with client(max_response_size=100_000) as c:
        with pytest.raises(ResponseTooLargeError):
            await c.extract_card(jpeg_file)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", b"\x1f\x8b\x08\x00garbage"),
        ("deflate", b"not deflate"),
        ("br", b"brotli was never asked for"),
    ],
)
async def test_a_body_that_does_not_decode_as_its_encoding_says_is_malformed(
    mock: respx.MockRouter, jpeg_file: Path, encoding: str, body: bytes
) -> None:
    answer_raw(mock, 200, body, {"Content-Encoding": encoding})
    async with client() as c:
        with pytest.raises(MalformedResponseError, match="Content-Encoding"):
            await c.extract_card(jpeg_file)
    answer_raw(mock, 503, body, {"Content-Encoding": encoding})
    async with client() as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.status_code == 503


@pytest.mark.anyio
async def test_deflate_with_and_without_zlib_header_is_decoded(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    body = samples.answer(samples.PASSPORT)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for encoded in (zlib.compress(body), raw.compress(body) + raw.flush()):
        answer_raw(mock, 200, encoded, {"Content-Encoding": "deflate"})
        async with client() as c:
            res = await c.extract_card(jpeg_file)
        assert res.cards[0].type == "passport"


@pytest.mark.anyio
async def test_the_client_asks_only_for_encodings_it_decodes(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    route = mock.post(PATH).respond(200, content=samples.answer(samples.PASSPORT))
    async with (
        httpx.AsyncClient(headers={"Accept-Encoding": "br, zstd"}) as http,
        client(http_client=http) as c,
    ):
        await c.extract_card(jpeg_file)
    assert route.calls.last.request.headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "32"])
def test_max_response_size_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_response_size must be an integer >= 1"):
        client(max_response_size=bad)


# -- nothing the answer held shows in messages or reprs -----------------------------------------


@pytest.mark.anyio
async def test_an_html_error_page_shows_only_its_title(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    page = (
        b"<html><head><title> 500   Internal\n Error </title></head>"
        b"<body>NGUYEN VAN A 001099012345</body></html>"
    )
    mock.post(PATH).respond(500, content=page, headers={"Content-Type": "text/html; charset=utf-8"})
    async with client() as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
    err = info.value
    assert str(err) == (
        f"HTTP 500 from the service (text/html, {len(page)} bytes, title '500 Internal Error') "
        "(POST /api/v2/ekyc/card)"
    )
    assert "001099012345" not in repr(err)
    assert err.body == page
    assert err.content_type == "text/html; charset=utf-8"


@pytest.mark.anyio
async def test_a_plain_text_error_body_is_not_quoted(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(PATH).respond(400, content=b"id 001099012345 name NGUYEN VAN A")
    async with client() as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
    assert "001099012345" not in str(info.value)
    assert "NGUYEN" not in str(info.value)


@pytest.mark.anyio
async def test_a_malformed_answer_is_kept_whole_but_not_shown(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    body = b'{"data": {"type": "passport", "info": {"id": "C1234567", "name": "TRAN THI B"'
    mock.post(PATH).respond(200, content=body, headers={"Content-Type": "application/json"})
    async with client() as c:
        with pytest.raises(MalformedResponseError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.body == body
    for shown in (str(info.value), repr(info.value)):
        assert "C1234567" not in shown
        assert "TRAN" not in shown
    assert f"application/json, {len(body)} bytes" in str(info.value)


def test_json_error_bodies_are_described_by_type_and_length() -> None:
    err = APIStatusError(404, body=json.dumps({"detail": "x" * 50}).encode())
    assert str(err) == "HTTP 404 from the service (no content type, 64 bytes)"


def test_every_error_class_is_in_the_tree() -> None:
    assert issubclass(ResponseTooLargeError, CVError)


# -- the shared read budget -----------------------------------------------------------------


@pytest.fixture
def budget_peak(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most bytes the reads held at once, in its one element, as the test runs."""
    peak = [0]
    take = ReadBudget.take

    async def watched(self: ReadBudget, token: int, size: int) -> None:
        await take(self, token, size)
        peak[0] = max(peak[0], self.used)

    monkeypatch.setattr(ReadBudget, "take", watched)
    return peak


@pytest.mark.anyio
async def test_large_answers_read_together_stay_within_the_budget(
    mock: respx.MockRouter, jpeg_file: Path, budget_peak: list[int]
) -> None:
    # Eight valid 2.5 MB answers at once, a 3 MB cap: each is read whole, and the bytes held at
    # once stay under the budget plus one cap plus 1 MiB per read.
    card = dict(samples.PASSPORT, info={"id": "C1234567", "note": "x" * 2_500_000})
    body = samples.answer(card)
    mock.post(PATH).mock(
        side_effect=lambda request: httpx.Response(
            200, stream=Chunks(*(body[i : i + 65536] for i in range(0, len(body), 65536)))
        )
    )
    cap = 3_000_000
    results: list[Any] = []
    async with client(max_response_size=cap, max_concurrency=8) as c:

        async def one() -> None:
            results.append(await c.extract_card(jpeg_file))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        assert c._engine.read_budget.used == 0  # all released
    assert len(results) == 8
    assert all(r.cards[0].info.get("note") == "x" * 2_500_000 for r in results)
    assert len(body) < budget_peak[0] <= cap + cap + 8 * FREE_BYTES  # several at once, bounded


@pytest.mark.anyio
async def test_the_largest_read_goes_on_and_the_others_wait_for_it() -> None:
    budget = ReadBudget(limit=100)
    big, small = budget.open(), budget.open()
    await budget.take(big, FREE_BYTES + 60)  # over the free allowance and the limit: it leads
    await budget.take(small, 10)  # within the free allowance: never waits
    await budget.take(big, 1000)  # the largest goes on past the limit
    async with anyio.create_task_group() as tg:
        tg.start_soon(budget.take, small, FREE_BYTES)  # over both, and not the largest
        await anyio.wait_all_tasks_blocked()
        assert budget._held[small] == 10  # waiting
        budget.close(big)  # the largest ends: the other goes on
    assert budget._held[small] == 10 + FREE_BYTES
    assert budget.used == 10 + FREE_BYTES


@pytest.mark.anyio
async def test_a_read_cancelled_while_it_waits_holds_nothing() -> None:
    budget = ReadBudget(limit=100)
    big = budget.open()
    await budget.take(big, FREE_BYTES + 200)
    small = budget.open()
    with anyio.CancelScope() as scope:

        async def cancel_once_blocked() -> None:
            await anyio.wait_all_tasks_blocked()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_blocked)
            try:
                await budget.take(small, FREE_BYTES + 1)
            finally:
                budget.close(small)
    assert scope.cancelled_caught
    assert small not in budget._held
    assert budget.used == FREE_BYTES + 200


# -- found by a hostile review ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [
        b"Mon, 01 Jan 2020 00:00:00 +99999999999999999999",
        b"Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "١٢".encode(),
    ],
)
async def test_a_retry_after_that_overflows_is_unreadable(
    mock: respx.MockRouter, jpeg_file: Path, value: bytes
) -> None:
    mock.post(PATH).respond(429, headers=[(b"Retry-After", value)])
    async with client() as c:
        with pytest.raises(RateLimitError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.retry_after is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "card",
    [
        {"type": "chip_id_card_front", "info": {"id": "001099012345", "dob": "01/01/9990"}},
        {"type": "chip_id_card_back", "info": {"dob": "01/01/9990", "issue_date": "01/01/9991"}},
        {"type": "driving_license", "info": {"id_confidence": -(10**400)}},
        {"type": "passport", "info": {"id": "C1234567", "odd_confidence": 10**400}},
        {"type": "12_id_card_front", "info": {"id": "٠٠١٠٩٩٠١٢٣٤٥", "dob": "31/12/9999"}},
    ],
)
async def test_answers_the_decoder_takes_can_be_assessed(
    mock: respx.MockRouter, jpeg_file: Path, card: dict[str, Any]
) -> None:
    mock.post(PATH).respond(200, content=samples.answer(card))
    async with client() as c:
        res = await c.extract_card(jpeg_file)
    assessment = res.assess()
    assert assessment.verdict in ("review", "reject")


def test_arabic_indic_digits_are_not_a_citizen_id() -> None:
    from cvekyc_async.checks import assess

    res = decode_one({"type": "12_id_card_front", "info": {"id": "٠٠١٠٩٩٠١٢٣٤٥"}})
    codes = {f.code for f in assess(res.cards[0]).findings}
    assert "id.format" in codes


def decode_one(card: dict[str, Any]) -> Any:
    from cvekyc_async import decode_answer

    return decode_answer(samples.answer(card))


@pytest.mark.anyio
async def test_concurrent_decompression_bombs_stay_within_the_budget(
    mock: respx.MockRouter, jpeg_file: Path, budget_peak: list[int]
) -> None:
    # Each answer inflates to 64 MiB from a few kilobytes; expanded piece by piece, what the
    # reads hold together stays within the budget, however many arrive at once.
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024), 9)
    chunks = [bomb[i : i + 1024] for i in range(0, len(bomb), 1024)]
    mock.post(PATH).mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=Chunks(*chunks)
        )
    )
    cap = 4 * 1024 * 1024
    outcomes: list[str] = []
    async with client(max_response_size=cap, max_concurrency=16) as c:

        async def one() -> None:
            try:
                await c.extract_card(jpeg_file)
            except ResponseTooLargeError:
                outcomes.append("too large")

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(one)
    assert outcomes == ["too large"] * 16
    assert budget_peak[0] <= cap + cap + 16 * FREE_BYTES


@pytest.mark.anyio
async def test_a_body_in_tiny_chunks_is_read_whole(mock: respx.MockRouter, jpeg_file: Path) -> None:
    body = samples.answer(dict(samples.PASSPORT, info={"id": "C1234567", "note": "x" * 50_000}))
    mock.post(PATH).mock(
        side_effect=lambda request: httpx.Response(
            200, stream=Chunks(*(body[i : i + 1] for i in range(len(body))))
        )
    )
    async with client() as c:
        res = await c.extract_card(jpeg_file)
    assert res.cards[0].info.get("note") == "x" * 50_000


@pytest.mark.anyio
@pytest.mark.parametrize("status", [302, 404, 500])
async def test_a_success_envelope_under_an_error_status_is_a_status_error(
    mock: respx.MockRouter, jpeg_file: Path, status: int
) -> None:
    body = samples.answer(samples.PASSPORT)
    mock.post(PATH).respond(status, content=body)
    async with client() as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
        assert c.usage.billed == 0
    assert info.value.status_code == status
    assert info.value.body == body
