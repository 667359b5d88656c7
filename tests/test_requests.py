"""The nine request shapes, exactly as the API page describes them, checked on the wire (respx)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import respx

from cvekyc_async import AsyncCVClient, ImageSource
from tests import samples
from tests._multipart import parse_multipart

pytestmark = pytest.mark.anyio

ENDPOINTS = {
    "card": "/api/v2/ekyc/card",
    "cards": "/api/v2/ekyc/cards",
    "ocr": "/api/v2/ocr/card",
}
AUTH = "Basic " + base64.b64encode(f"{samples.API_KEY}:{samples.API_SECRET}".encode()).decode()


def client() -> AsyncCVClient:
    return AsyncCVClient(samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL)


async def call(c: AsyncCVClient, endpoint: str, images: list[object], thumb: bool):
    if endpoint == "card":
        return await c.extract_card(images[0], get_thumb=thumb)  # type: ignore[arg-type]
    if endpoint == "cards":
        return await c.extract_cards(images[0], images[1], get_thumb=thumb)  # type: ignore[arg-type]
    return await c.ocr_card(images[0], get_thumb=thumb)  # type: ignore[arg-type]


def fields_for(endpoint: str) -> list[str]:
    return ["img1", "img2"] if endpoint == "cards" else ["img"]


def query(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True)


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        for path in ENDPOINTS.values():
            router.route(path=path).respond(
                200, content=samples.answer([samples.CHIP_FRONT, samples.CHIP_BACK])
            )
        yield router


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("thumb", [False, True])
async def test_file_style_sends_multipart_parts_byte_for_byte(
    mock: respx.MockRouter, endpoint: str, thumb: bool, jpeg_file: Path, png_file: Path
) -> None:
    async with client() as c:
        res = await call(c, endpoint, [jpeg_file, png_file], thumb)
    assert len(res.cards) == 2
    [sent] = mock.calls
    req = sent.request
    assert req.method == "POST"
    assert req.url.path == ENDPOINTS[endpoint]
    assert query(req) == [("format_type", "file"), ("get_thumb", "true" if thumb else "false")]
    assert req.headers["Authorization"] == AUTH
    assert req.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    parts = parse_multipart(req.headers["Content-Type"], req.content)
    expected = {"img": ("front.jpg", "image/jpeg", samples.JPEG)}
    if endpoint == "cards":
        expected = {
            "img1": ("front.jpg", "image/jpeg", samples.JPEG),
            "img2": ("back.png", "image/png", samples.PNG),
        }
    assert parts == expected


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_bytes_are_sent_as_file_parts(mock: respx.MockRouter, endpoint: str) -> None:
    async with client() as c:
        await call(c, endpoint, [samples.JPEG, samples.PNG], False)
    req = mock.calls.last.request
    parts = parse_multipart(req.headers["Content-Type"], req.content)
    assert [p[2] for p in parts.values()] == [samples.JPEG, samples.PNG][: len(parts)]
    assert next(iter(parts.values()))[:2] == ("image.jpg", "image/jpeg")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("thumb", [False, True])
async def test_url_style_is_a_get_with_encoded_query(
    mock: respx.MockRouter, endpoint: str, thumb: bool
) -> None:
    urls = [
        "https://files.example/a b/front.jpg?sig=x&y=1+2",
        "http://files.example/back.png#frag",
    ]
    async with client() as c:
        await call(c, endpoint, urls, thumb)
    req = mock.calls.last.request
    assert req.method == "GET"
    assert req.url.path == ENDPOINTS[endpoint]
    assert req.content == b""
    names = fields_for(endpoint)
    expected = list(zip(names, urls[: len(names)], strict=True))
    expected += [("format_type", "url"), ("get_thumb", "true" if thumb else "false")]
    # Decoding the query gives back each URL exactly: '&', '+', spaces and '#' were encoded.
    assert query(req) == expected
    assert "&y=1" not in urlsplit(str(req.url)).query
    assert req.headers["Authorization"] == AUTH


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("thumb", [False, True])
async def test_base64_style_posts_json(mock: respx.MockRouter, endpoint: str, thumb: bool) -> None:
    b64_front = base64.b64encode(samples.JPEG).decode()
    wrapped_back = base64.encodebytes(samples.PNG).decode()  # newlines, as the vendor's samples
    images = [ImageSource.from_base64(b64_front), ImageSource.from_base64(wrapped_back)]
    async with client() as c:
        await call(c, endpoint, images, thumb)
    req = mock.calls.last.request
    assert req.method == "POST"
    assert req.url.path == ENDPOINTS[endpoint]
    assert query(req) == [("format_type", "base64"), ("get_thumb", "true" if thumb else "false")]
    assert req.headers["Content-Type"] == "application/json"
    body = json.loads(req.content)
    values = [b64_front, base64.b64encode(samples.PNG).decode()]
    names = fields_for(endpoint)
    assert body == dict(zip(names, values[: len(names)], strict=True))


async def test_from_path_can_send_as_base64(mock: respx.MockRouter, jpeg_file: Path) -> None:
    async with client() as c:
        await c.extract_card(ImageSource.from_path(jpeg_file, send_as="base64"))
    body = json.loads(mock.calls.last.request.content)
    assert base64.b64decode(body["img"]) == samples.JPEG


async def test_from_bytes_with_filename(mock: respx.MockRouter) -> None:
    async with client() as c:
        await c.ocr_card(ImageSource.from_bytes(samples.PDF, filename="scan-01.pdf"))
    req = mock.calls.last.request
    parts = parse_multipart(req.headers["Content-Type"], req.content)
    assert parts == {"img": ("scan-01.pdf", "application/pdf", samples.PDF)}


async def test_pathlike_and_str_paths_are_the_same(mock: respx.MockRouter, jpeg_file: Path) -> None:
    async with client() as c:
        await c.extract_card(jpeg_file)
        await c.extract_card(str(jpeg_file))
    a, b = (call.request for call in mock.calls)
    assert parse_multipart(a.headers["Content-Type"], a.content) == parse_multipart(
        b.headers["Content-Type"], b.content
    )


async def test_user_agent_names_the_library(mock: respx.MockRouter, jpeg_file: Path) -> None:
    async with client() as c:
        await c.extract_card(jpeg_file)
    assert mock.calls.last.request.headers["User-Agent"].startswith("cvekyc-async/")


async def test_multipart_overhead_is_small(mock: respx.MockRouter, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(samples.JPEG[:20] + b"\x00" * 100_000)
    async with client() as c:
        await c.extract_card(big)
    sent = len(mock.calls.last.request.content)
    assert sent <= 1.01 * big.stat().st_size
