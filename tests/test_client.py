from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

import cvekyc_async
from cvekyc_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    AuthenticationError,
    ConfigurationError,
    CVError,
    FormatTypeError,
    ImageSource,
    InternalServerError,
    InvalidImageError,
    InvalidInputError,
    MalformedResponseError,
    NoDocumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    URLUnavailableError,
)
from tests import samples
from tests._flavours import flavoured

PATH = "/api/v2/ekyc/card"
TOKEN = base64.b64encode(f"{samples.API_KEY}:{samples.API_SECRET}".encode()).decode()


def client(flavour: str = "async", **kwargs: Any) -> Any:
    # One attempt per call: these tests check how a single answer maps to a result or an error.
    # Retries are tested in test_retry.py. ``flavour`` runs the same test through CVClient.
    kwargs.setdefault("base_url", samples.BASE_URL)
    if "retry" not in kwargs:
        kwargs.setdefault("max_retries", 0)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        yield router


# -- configuration ---------------------------------------------------------------------------


def test_missing_credentials_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"missing api_key and api_secret.*CVEKYC_API_KEY"):
        AsyncCVClient()
    with pytest.raises(ConfigurationError, match="missing api_secret"):
        AsyncCVClient("key")
    with pytest.raises(ValueError, match="missing api_key"):
        AsyncCVClient("", "secret")


def test_credentials_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVEKYC_API_KEY", "k")
    monkeypatch.setenv("CVEKYC_API_SECRET", "s")
    monkeypatch.setenv("CVEKYC_BASE_URL", "http://127.0.0.1:8123/")
    c = AsyncCVClient()
    assert c.base_url == "http://127.0.0.1:8123"


def test_default_base_url_is_the_vendor() -> None:
    assert AsyncCVClient("k", "s").base_url == "https://cloud.computervision.com.vn"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:80", "https://x.test"]
)
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    assert AsyncCVClient("k", "s", base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cloud.computervision.com.vn", "plain http"),
        ("http://10.0.0.2:8000", "plain http"),
        ("ftp://x.test", "http\\(s\\) URL"),
        ("cloud.computervision.com.vn", "http\\(s\\) URL"),
        ("https://x.test/?a=1", "query"),
        ("https://user:pw@x.test", "user info"),
        ("ftp://user:pw@x.test", "user info"),
        ("https://x.test/\r\nX-Injected: 1", "line breaks"),
        ("https://x.test/\tv2", "tabs"),
        ("https://x .test", "spaces"),
        ("https://x.test:99999", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        AsyncCVClient("k", "s", base_url=url)
    assert "pw" not in str(info.value)


@pytest.mark.anyio
async def test_an_image_urls_token_stays_out_of_httpx_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A caller's own http_client logs each request at INFO; the signed URL's token must not
    # reach those lines.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=samples.answer([])))
    async with httpx.AsyncClient(transport=transport) as http:
        client = AsyncCVClient("k", "s", base_url=samples.BASE_URL, http_client=http)
        with caplog.at_level(logging.INFO, logger="httpx"):
            await client.extract_card("https://images.example/card.jpg?X-Amz-Signature=t0ken")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines
    assert all("t0ken" not in line and "images.example" not in line for line in lines)
    assert any("/api/v2/ekyc/card" in line for line in lines)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_file_size": 0}, "max_file_size"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "5"}, "timeout"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        client(**kwargs)


def test_api_key_with_colon_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="':'"):
        AsyncCVClient("a:b", "s")


# -- bad input, refused before any request ---------------------------------------------------


def _bad_inputs(tmp: Path) -> list[tuple[str, Any, dict[str, Any], str]]:
    (tmp / "empty.jpg").write_bytes(b"")
    (tmp / "notes.txt").write_bytes(b"hello, not an image")
    (tmp / "big.jpg").write_bytes(samples.JPEG + b"\x00" * 2000)
    (tmp / "a_dir").mkdir()
    big_b64 = base64.b64encode(samples.JPEG + b"\x00" * 2000).decode()
    return [
        ("missing path", str(tmp / "nope.jpg"), {}, "not found: .*nope.jpg"),
        ("directory", tmp / "a_dir", {}, "is a directory"),
        ("empty file", tmp / "empty.jpg", {}, "empty.jpg' is empty"),
        ("empty bytes", b"", {}, "bytes are empty"),
        ("text bytes", b"hello", {}, "not a JPEG, PNG or PDF"),
        ("text file", tmp / "notes.txt", {}, "notes.txt' is not a JPEG, PNG or PDF"),
        ("file over cap", tmp / "big.jpg", {"max_file_size": 1000}, "over the 1,000-byte limit"),
        ("bytes over cap", samples.JPEG * 3, {"max_file_size": 1000}, "over the 1,000-byte limit"),
        (
            "base64 over cap",
            ImageSource.from_base64(big_b64) if big_b64 else None,
            {"max_file_size": 1000},
            "base64 data is .* over the 1,000-byte limit",
        ),
        ("ftp url", "ftp://files.test/a.jpg", {}, "scheme 'ftp' is not supported"),
        ("url without host", "https:///a.jpg", {}, "has no host"),
        ("empty path", "", {}, "path is empty"),
        ("wrong type", 12345, {}, "must be a path, a URL, bytes or an ImageSource, not int"),
    ]


@pytest.mark.anyio
async def test_bad_input_table_raises_before_sending(
    mock: respx.MockRouter, tmp_path: Path, flavour: str
) -> None:
    route = mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT))
    for name, value, kwargs, message in _bad_inputs(tmp_path):
        async with client(flavour, **kwargs) as c:
            with pytest.raises(InvalidInputError, match=message) as info:
                await c.extract_card(value)
        assert isinstance(info.value, ValueError), name
        assert info.value.attempts == 0, name
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "base64 data is empty"),
        ("!!!!", "not valid base64"),
        ("abc", "not valid base64"),
        (base64.b64encode(b"plain text, no image").decode(), "base64 data is not a JPEG"),
        ("data:image/png;base64,", "base64 data is empty"),
    ],
)
def test_invalid_base64_is_refused_when_built(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ImageSource.from_base64(text)


def test_base64_data_uri_prefix_and_newlines_are_accepted() -> None:
    wrapped = base64.encodebytes(samples.PNG * 10).decode()
    assert "\n" in wrapped
    src = ImageSource.from_base64("data:image/png;base64," + wrapped)
    assert src.format_type == "base64"


@pytest.mark.anyio
async def test_two_sides_in_different_styles_are_refused(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    route = mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT))
    async with client(flavour) as c:
        with pytest.raises(InvalidInputError, match="img1 as 'file', img2 as 'url'"):
            await c.extract_cards(jpeg_file, "https://x.test/back.jpg")
    assert route.call_count == 0


@pytest.mark.anyio
async def test_pdf_is_refused_for_the_two_sides_endpoint_only(
    mock: respx.MockRouter, pdf_file: Path, flavour: str
) -> None:
    route = mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT))
    async with client(flavour) as c:
        with pytest.raises(InvalidInputError, match="is a PDF"):
            await c.extract_cards(pdf_file, pdf_file)
        assert route.call_count == 0
        await c.ocr_card(pdf_file)
        await c.extract_card(pdf_file)
    assert route.call_count == 2


@pytest.mark.anyio
async def test_get_thumb_must_be_a_bool(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    route = mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT))
    async with client(flavour) as c:
        with pytest.raises(InvalidInputError, match="get_thumb"):
            await c.extract_card(jpeg_file, get_thumb="yes")  # type: ignore[arg-type]
    assert route.call_count == 0


@pytest.mark.parametrize("kind", ["webp", "bmp", "tiff"])
def test_other_image_formats_the_service_decodes_are_accepted(kind: str) -> None:
    data = {
        "webp": samples.WEBP,
        "bmp": b"BM" + b"\x00" * 60,
        "tiff": b"II*\x00" + b"\x00" * 60,
    }[kind]
    assert ImageSource.from_bytes(data).format_type == "file"


def test_files_are_read_when_sent_not_when_built(tmp_path: Path) -> None:
    path = tmp_path / "late.jpg"
    path.write_bytes(samples.JPEG)
    src = ImageSource.from_path(path)
    path.write_bytes(samples.PNG)  # changed after the source was built
    payload = src.load()
    assert payload.data == samples.PNG
    assert payload.content_type == "image/png"


def test_file_removed_after_building_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    path.write_bytes(samples.JPEG)
    src = ImageSource.from_path(path)
    os.remove(path)
    with pytest.raises(InvalidInputError, match="not found"):
        src.load()


def test_image_source_reprs_hide_data_and_url_queries(jpeg_file: Path) -> None:
    assert repr(ImageSource.from_path(jpeg_file)) == f"ImageSource.from_path({str(jpeg_file)!r})"
    assert (
        repr(ImageSource.from_bytes(samples.JPEG))
        == f"ImageSource.from_bytes(<{len(samples.JPEG)} bytes>)"
    )
    signed = ImageSource.from_url("https://bucket.test/a.jpg?X-Signature=abcdef")
    assert "abcdef" not in repr(signed)
    assert "bucket.test/a.jpg" in repr(signed)


# -- answers and errors ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1, NoDocumentError),
        (2, URLUnavailableError),
        (3, InvalidImageError),
        (4, QuotaExceededError),
        (5, AuthenticationError),
        (6, FormatTypeError),
        (42, APIError),
    ],
)
@pytest.mark.parametrize("status", [200, 400, 401])
async def test_each_error_code_raises_its_class(
    mock: respx.MockRouter,
    jpeg_file: Path,
    code: int,
    cls: type[APIError],
    status: int,
    flavour: str,
) -> None:
    message = samples.ERROR_MESSAGES.get(code, "Something new")
    mock.post(PATH).respond(status, content=samples.answer(None, code=str(code), message=message))
    async with client(flavour) as c:
        with pytest.raises(APIError) as info:
            await c.extract_card(jpeg_file)
    err = info.value
    assert type(err) is cls
    assert (err.error_code, err.error_message, err.status_code) == (code, message, status)
    assert (err.method, err.path, err.attempts) == ("POST", PATH, 1)
    assert f"errorCode {code}" in str(err)
    if code in samples.ERROR_MESSAGES:
        assert message in str(err)  # a documented text is shown
    else:
        # Any other text could carry anything: its length is shown, the text kept on the error.
        assert str(err).startswith(f"errorCode 42: (a message of {len(message)} characters")


@pytest.mark.anyio
async def test_success_answer_is_typed_and_billed(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(PATH).respond(200, content=samples.answer(samples.CHIP_FRONT))
    async with client(flavour) as c:
        res = await c.extract_card(jpeg_file)
    assert res.billed
    assert res.attempts == 1
    assert res.elapsed >= 0
    card = res.cards[0]
    assert (card.type, card.valid) == ("chip_id_card_front", True)
    assert isinstance(card.info, cvekyc_async.ChipCCCDFrontInfo)
    assert card.info.id == "001099012345"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "shown"),
    [
        (
            502,
            b"<html><head><title>502 Bad Gateway</title></head><h1>502 Bad Gateway</h1></html>",
            {"Content-Type": "text/html"},
            InternalServerError,
            "HTTP 502 from the service (text/html, 80 bytes, title '502 Bad Gateway')",
        ),
        (503, b"", {}, InternalServerError, "HTTP 503 from the service (no content type, 0 bytes)"),
        (404, b'{"detail": "Not Found"}', {}, NotFoundError, "HTTP 404"),
        (401, b'{"detail": "Unauthorized"}', {}, PermissionDeniedError, "HTTP 401"),
        (403, b"<html><title>Forbidden</title></html>", {}, PermissionDeniedError, "HTTP 403"),
        (400, b'{"detail": "Bad Request"}', {}, APIStatusError, "HTTP 400"),
        (418, b"", {}, APIStatusError, "HTTP 418"),
        (429, b"slow down", {"Retry-After": "7"}, RateLimitError, "Retry-After: 7 s"),
    ],
)
async def test_http_errors_without_error_code(
    mock: respx.MockRouter,
    jpeg_file: Path,
    status: int,
    body: bytes,
    headers: dict[str, str],
    cls: type[APIStatusError],
    shown: str,
    flavour: str,
) -> None:
    mock.post(PATH).respond(status, content=body, headers={**headers, "X-Trace-Id": "t-1"})
    async with client(flavour, max_retries=0) as c:
        with pytest.raises(APIStatusError) as info:
            await c.extract_card(jpeg_file)
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert shown in str(info.value)
    assert info.value.body == body  # whole, for diagnosis, but never in the message
    assert info.value.headers is not None
    assert info.value.headers["x-trace-id"] == "t-1"  # for a support ticket
    if cls is RateLimitError:
        assert info.value.retry_after == 7  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_retry_after_as_http_date(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(PATH).respond(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    async with client(flavour) as c:
        with pytest.raises(RateLimitError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.retry_after == 0  # a date in the past means "now"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>ok</html>", b"{}", b'{"data": {"type": "passport"}}', b'{"errorCode": "0", "da'],
)
async def test_malformed_2xx_bodies_raise_malformed_response(
    mock: respx.MockRouter, jpeg_file: Path, body: bytes, flavour: str
) -> None:
    mock.post(PATH).respond(200, content=body)
    async with client(flavour) as c:
        with pytest.raises(MalformedResponseError) as info:
            await c.extract_card(jpeg_file)
    assert info.value.status_code == 200
    assert "not the expected JSON" in str(info.value)


@pytest.mark.anyio
async def test_malformed_json_body_is_not_quoted(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    # A broken JSON body may still hold data read off a card: the error must not repeat it.
    mock.post(PATH).respond(200, content=b'{"data": {"info": {"id": "001099012345"')
    async with client(flavour) as c:
        with pytest.raises(MalformedResponseError) as info:
            await c.extract_card(jpeg_file)
    assert "001099012345" not in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "cls", "kind"),
    [
        (httpx.ConnectError("refused"), APIConnectionError, None),
        (httpx.RemoteProtocolError("peer closed"), APIConnectionError, None),
        (httpx.ReadError("reset"), APIConnectionError, None),
        (httpx.ConnectTimeout("t"), APITimeoutError, "connect"),
        (httpx.ReadTimeout("t"), APITimeoutError, "read"),
        (httpx.WriteTimeout("t"), APITimeoutError, "write"),
        (httpx.PoolTimeout("t"), APITimeoutError, "pool"),
    ],
)
async def test_transport_failures_map_to_connection_errors(
    mock: respx.MockRouter,
    jpeg_file: Path,
    exc: Exception,
    cls: type,
    kind: str | None,
    flavour: str,
) -> None:
    mock.post(PATH).mock(side_effect=exc)
    async with client(flavour, max_retries=0) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.extract_card(jpeg_file)
    assert type(info.value) is cls
    assert (info.value.method, info.value.path) == ("POST", PATH)
    if kind:
        assert info.value.kind == kind  # type: ignore[attr-defined]


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_secret_never_in_repr_errors_or_logs(
    mock: respx.MockRouter, jpeg_file: Path, caplog: pytest.LogCaptureFixture, flavour: str
) -> None:
    caplog.set_level(logging.DEBUG)
    mock.post(PATH).mock(
        side_effect=[
            httpx.Response(200, content=samples.answer(None, code="5", message="bad")),
            httpx.Response(502, content=b"<html>bad gateway</html>"),
            httpx.Response(200, content=b"not json"),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
        ]
    )
    seen: list[str] = []
    async with client(flavour, max_retries=0) as c:
        seen += [repr(c), str(c), repr(vars(c))]
        for _ in range(5):
            with pytest.raises(CVError) as info:
                await c.extract_card(jpeg_file)
            seen += [str(info.value), repr(info.value), repr(vars(info.value))]
    seen += [r.getMessage() for r in caplog.records]
    for text in seen:
        assert samples.API_SECRET not in text
        assert TOKEN not in text


def test_configuration_errors_do_not_show_the_secret() -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncCVClient("bad:key", samples.API_SECRET)
    assert samples.API_SECRET not in str(info.value)


# -- lifecycle and concurrency ---------------------------------------------------------------


@pytest.mark.anyio
async def test_closed_client_refuses_requests(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    c = client(flavour)
    await c.aclose()
    await c.aclose()  # closing twice is harmless
    with pytest.raises(CVError, match="closed"):
        await c.extract_card(jpeg_file)


@pytest.mark.anyio
async def test_caller_supplied_http_client_is_used_and_left_open(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    # AsyncCVClient sends through an httpx.AsyncClient, CVClient through an httpx.Client.
    mock.post(PATH).respond(200, content=samples.answer(samples.CHIP_FRONT))
    http: httpx.AsyncClient | httpx.Client = (
        httpx.Client() if flavour == "sync" else httpx.AsyncClient()
    )
    async with client(flavour, http_client=http) as c:
        result = await c.extract_card(jpeg_file)
    assert result.cards[0].type == "chip_id_card_front"
    assert not http.is_closed
    assert mock.calls.call_count == 1
    if isinstance(http, httpx.Client):
        http.close()
    else:
        await http.aclose()


@pytest.mark.anyio
async def test_in_flight_requests_never_exceed_max_concurrency(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    in_flight = peak = started = 0

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak, started
        in_flight += 1
        started += 1
        peak = max(peak, in_flight)
        # Hold each answer until the limit is full or every call has started: the sync client's
        # calls come from threads, which a busy machine may start late.
        with anyio.fail_after(10):
            while in_flight < 3 and started < 25:
                await anyio.sleep(0.001)
        # Yield many times so every task that could start does start before this one ends.
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))

    mock.post(PATH).mock(side_effect=slow_answer)
    async with client(flavour, max_concurrency=3) as c, anyio.create_task_group() as tg:
        for _ in range(25):
            tg.start_soon(c.extract_card, jpeg_file)
    assert mock.calls.call_count == 25
    assert peak == 3


# -- the service's request id ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-Id": "req-7f3a9c"}, "req-7f3a9c"),
        ({"Request-Id": "0b1c:22/ab+="}, "0b1c:22/ab+="),
        ({}, None),
        # Anything but an opaque token is not taken: a header could carry any text.
        ({"X-Request-Id": "Nguyen Van A 079090001234"}, None),
        ({"X-Request-Id": "a" * 129}, None),
    ],
)
async def test_an_answers_request_id_is_kept_on_the_result_and_on_errors(
    mock: respx.MockRouter,
    jpeg_file: Path,
    flavour: str,
    headers: dict[str, str],
    expected: str | None,
) -> None:
    mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT), headers=headers)
    async with client(flavour) as c:
        result = await c.extract_card(jpeg_file)
    assert result.service_request_id == expected
    assert result.to_dict()["service_request_id"] == expected
    # The call's own id is the one it sent, whatever the service answers.
    sent = mock.calls.last.request.headers["X-Request-ID"]
    assert result.request_id == sent != expected
    mock.routes.clear()
    mock.route().respond(503, text="busy", headers=headers)
    async with client(flavour) as c:
        with pytest.raises(APIStatusError) as caught:
            await c.extract_card(jpeg_file)
    assert caught.value.service_request_id == expected
    assert caught.value.request_id == mock.calls.last.request.headers["X-Request-ID"]
