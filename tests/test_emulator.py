"""The client against the emulator over real sockets: request shapes, answers, error codes."""

from __future__ import annotations

import base64
import io
import json
import random
import zlib

import httpx
import pytest
from PIL import Image

from cvekyc_async import (
    AsyncCVClient,
    AuthenticationError,
    ChipCCCDBackInfo,
    ChipCCCDFrontInfo,
    ImageSource,
    InvalidImageError,
    NoDocumentError,
    QuotaExceededError,
    URLUnavailableError,
)
from cvekyc_async.emulator import (
    EmulatorApp,
    RunningEmulator,
    specimen_path,
    specimens,
    synthetic_jpeg,
)
from cvekyc_async.emulator._app import _Answer
from cvekyc_async.emulator._truth import read_documents
from tests import samples

pytestmark = pytest.mark.anyio


def truth(name: str) -> list[dict]:
    pages = read_documents(specimen_path(name).read_bytes())
    assert pages is not None
    return [doc for page in pages for doc in page]


def as_style(emu: RunningEmulator, name: str, style: str) -> object:
    path = specimen_path(name)
    if style == "file":
        return path
    if style == "url":
        return emu.specimen_url(name)
    return ImageSource.from_base64(base64.b64encode(path.read_bytes()).decode())


STYLES = ["file", "url", "base64"]


@pytest.mark.parametrize("style", STYLES)
async def test_extract_card_reads_each_specimen_in_each_style(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient, style: str
) -> None:
    for name in ("cmnd_front.jpg", "cccd_back.png", "chip_front.jpg", "passport.jpg"):
        res = await cv_client.extract_card(as_style(cv_emulator, name, style))  # type: ignore[arg-type]
        [expected] = truth(name)
        [card] = res.cards
        assert card.type == expected["type"]
        for key, value in expected["info"].items():
            if isinstance(value, str):
                assert card.info.get(key, "") == value, (name, key)
        assert card.valid is True
        assert card.info.image is None


@pytest.mark.parametrize("style", STYLES)
async def test_extract_cards_reads_front_then_back(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient, style: str
) -> None:
    front = as_style(cv_emulator, "chip_front.jpg", style)
    back = as_style(cv_emulator, "chip_back.jpg", style)
    res = await cv_client.extract_cards(front, back, get_thumb=True)  # type: ignore[arg-type]
    f, b = res.cards
    assert isinstance(f.info, ChipCCCDFrontInfo)
    assert isinstance(b.info, ChipCCCDBackInfo)
    assert f.info.id == b.info.person_number
    for card in res.cards:
        thumb = card.info.image_bytes()
        assert thumb is not None
        with Image.open(io.BytesIO(thumb)) as img:
            assert img.format == "JPEG"
            assert max(img.size) <= 480


@pytest.mark.parametrize("style", STYLES)
async def test_ocr_card_reads_every_document(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient, style: str
) -> None:
    res = await cv_client.ocr_card(as_style(cv_emulator, "two_sides.jpg", style))  # type: ignore[arg-type]
    assert [c.type for c in res.cards] == ["chip_id_card_front", "chip_id_card_back"]
    res = await cv_client.ocr_card(as_style(cv_emulator, "scan.pdf", style))  # type: ignore[arg-type]
    assert [c.type for c in res.cards] == ["9_id_card_front", "9_id_card_back"]
    assert [c.info.to_dict() for c in res.cards] == [d["info"] for d in truth("scan.pdf")]


async def test_answers_have_the_real_shapes(cv_emulator: RunningEmulator) -> None:
    auth = (cv_emulator.api_key, cv_emulator.api_secret)
    async with httpx.AsyncClient(base_url=cv_emulator.base_url, auth=auth) as http:
        one = (
            await http.post(
                "/api/v2/ekyc/card?format_type=file&get_thumb=false",
                files={"img": specimen_path("chip_front.jpg").read_bytes()},
            )
        ).json()
        pdf = (
            await http.post(
                "/api/v2/ocr/card?format_type=file&get_thumb=false",
                files={"img": specimen_path("scan.pdf").read_bytes()},
            )
        ).json()
        bad = (await http.get("/api/v2/ekyc/card?format_type=url&img=https://x.test/a")).json()
    assert one["errorCode"] == "0"
    assert isinstance(one["data"], dict)
    assert one["data"]["valid"] == "True"
    assert isinstance(pdf["data"], list)
    assert len(pdf["data"]) == 2
    assert "valid" not in json.dumps(pdf["data"][0]["info"])
    assert bad == {"data": [], "errorCode": "2", "errorMessage": "Url is unavailable"}


async def test_screen_photo_specimen_is_flagged(cv_client: AsyncCVClient) -> None:
    [card] = (await cv_client.extract_card(specimen_path("screen_photo.jpg"))).cards
    assert card.valid is False
    assert card.invalid_code == 1


# -- error codes ---------------------------------------------------------------------------------


async def test_bad_credentials_give_error_5(cv_emulator: RunningEmulator) -> None:
    async with AsyncCVClient(cv_emulator.api_key, "wrong", base_url=cv_emulator.base_url) as c:
        with pytest.raises(AuthenticationError) as info:
            await c.extract_card(specimen_path("chip_front.jpg"))
    assert info.value.error_code == 5
    assert cv_emulator.stats()["billed"] == 0


async def test_image_without_a_document_gives_error_1(cv_client: AsyncCVClient) -> None:
    with pytest.raises(NoDocumentError):
        await cv_client.extract_card(specimen_path("blank.jpg"))


async def test_unknown_image_gets_a_stable_synthetic_card(cv_client: AsyncCVClient) -> None:
    a = await cv_client.extract_card(samples.JPEG)
    again = await cv_client.extract_card(samples.JPEG)
    other = await cv_client.extract_card(samples.JPEG + b"\x01")
    assert a.cards == again.cards
    assert a.cards[0].info.get("id") != other.cards[0].info.get("id")
    assert len(a.cards[0].info.get("id")) == 12


async def test_strict_mode_answers_1_for_unknown_images(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient
) -> None:
    cv_emulator.state.settings.strict = True
    with pytest.raises(NoDocumentError):
        await cv_client.extract_card(samples.JPEG)
    await cv_client.extract_card(specimen_path("chip_front.jpg"))  # specimens still read


@pytest.mark.parametrize("url", ["https://example.invalid/a.jpg", "http://127.0.0.1:1/a.jpg"])
async def test_urls_it_cannot_download_give_error_2(cv_client: AsyncCVClient, url: str) -> None:
    with pytest.raises(URLUnavailableError):
        await cv_client.extract_card(url)


async def test_missing_specimen_url_gives_error_2(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient
) -> None:
    with pytest.raises(URLUnavailableError):
        await cv_client.extract_card(cv_emulator.specimen_url("nope.jpg"))


async def test_quota_gives_error_4_once_used_up(
    cv_emulator: RunningEmulator, cv_client: AsyncCVClient
) -> None:
    cv_emulator.state.settings.quota = 2
    for _ in range(2):
        await cv_client.extract_card(specimen_path("chip_front.jpg"))
    with pytest.raises(QuotaExceededError):
        await cv_client.extract_card(specimen_path("chip_front.jpg"))
    assert cv_emulator.stats()["billed"] == 2
    assert cv_emulator.stats()["error_codes"] == {"0": 2, "4": 1}


@pytest.mark.parametrize(
    ("query", "kwargs", "code"),
    [
        # format_type says one thing, the request carries another: 6
        ("format_type=base64", {"files": {"img": samples.JPEG}}, "6"),
        ("format_type=file", {"json": {"img": "abcd"}}, "6"),
        ("format_type=url", {"files": {"img": samples.JPEG}}, "6"),
        ("format_type=jpeg", {"files": {"img": samples.JPEG}}, "6"),
        ("", {"files": {"img": samples.JPEG}}, "6"),
        # an upload that is not an image: 3
        ("format_type=file", {"files": {"img": b"hello, not an image"}}, "3"),
        ("format_type=file", {"files": {"image": samples.JPEG}}, "3"),
        ("format_type=base64", {"json": {"img": "!!!not base64"}}, "3"),
        ("format_type=base64", {"json": {"img": base64.b64encode(b"text").decode()}}, "3"),
        ("format_type=base64", {"json": {"other": "x"}}, "3"),
    ],
)
async def test_mismatched_or_unreadable_uploads(
    cv_emulator: RunningEmulator, query: str, kwargs: dict, code: str
) -> None:
    auth = (cv_emulator.api_key, cv_emulator.api_secret)
    async with httpx.AsyncClient(base_url=cv_emulator.base_url, auth=auth) as http:
        r = await http.post(f"/api/v2/ekyc/card?{query}", **kwargs)
    assert r.json()["errorCode"] == code
    assert cv_emulator.stats()["billed"] == 0


async def test_pdf_on_the_two_sides_endpoint_gives_3(cv_emulator: RunningEmulator) -> None:
    auth = (cv_emulator.api_key, cv_emulator.api_secret)
    pdf = specimen_path("scan.pdf").read_bytes()
    async with httpx.AsyncClient(base_url=cv_emulator.base_url, auth=auth) as http:
        r = await http.post("/api/v2/ekyc/cards?format_type=file", files={"img1": pdf, "img2": pdf})
    assert r.json()["errorCode"] == "3"


def test_bundled_specimens_are_small_and_all_carry_truth() -> None:
    found = specimens()
    assert {
        "cmnd_front.jpg",
        "cmnd_back.jpg",
        "cccd_front.jpg",
        "cccd_back.png",
        "chip_front.jpg",
        "chip_back.jpg",
        "passport.jpg",
        "blank.jpg",
        "scan.pdf",
    } <= set(found)
    assert sum(p.stat().st_size for p in found.values()) < 400_000
    for name, path in found.items():
        assert read_documents(path.read_bytes()) is not None, name


def test_specimen_path_names_the_choices() -> None:
    with pytest.raises(KeyError, match=r"chip_front\.jpg"):
        specimen_path("missing.jpg")


def test_a_client_gone_mid_upload_is_not_answered_or_billed(cv_emulator: RunningEmulator) -> None:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(cv_emulator.base_url)
    token = base64.b64encode(f"{cv_emulator.api_key}:{cv_emulator.api_secret}".encode()).decode()
    head = (
        "POST /api/v2/ekyc/card?format_type=file HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nAuthorization: Basic {token}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head.encode() + b"--x\r\n" + samples.JPEG[:100])
    assert cv_emulator.state.wait_for_count("abandoned", 1, 10)
    assert cv_emulator.wait_idle(10)
    stats = cv_emulator.stats()
    assert (stats["requests"], stats["abandoned"], stats["error_codes"], stats["billed"]) == (
        1,
        1,
        {},
        0,
    )


# -- hostile uploads and URLs -----------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` pixels and holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png_header_only(20_000, 20_000), id="400-megapixel-png"),
        pytest.param(png_header_only(16_000, 10_000), id="160-megapixel-png"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 2_000_000, id="jpeg-magic-then-zeros"),
        pytest.param(b"%PDF-1.4\n" + b"x" * 5000, id="pdf-without-end"),
        pytest.param(b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32, id="webp-header-only"),
    ],
)
@pytest.mark.parametrize("get_thumb", [False, True])
async def test_what_does_not_open_as_an_image_is_error_3(
    cv_emulator: RunningEmulator, data: bytes, get_thumb: bool
) -> None:
    async with httpx.AsyncClient(base_url=cv_emulator.base_url, timeout=30) as http:
        r = await http.post(
            "/api/v2/ekyc/card",
            params={"format_type": "file", "get_thumb": str(get_thumb).lower()},
            files={"img": ("x.png", data)},
            auth=(cv_emulator.api_key, cv_emulator.api_secret),
        )
    assert r.status_code == 200
    assert r.json()["errorCode"] == "3"
    assert cv_emulator.stats()["billed"] == 0


@pytest.mark.parametrize("get_thumb", [False, True])
async def test_an_image_that_opens_but_does_not_decode_is_error_3(
    cv_emulator: RunningEmulator, get_thumb: bool
) -> None:
    picture = io.BytesIO()
    Image.frombytes("L", (400, 300), random.Random(3).randbytes(120_000)).save(picture, "PNG")
    whole = picture.getvalue()
    cut = whole[: len(whole) // 2]  # headers intact, pixel data cut short
    async with cv_emulator.client(max_retries=0) as client:
        assert (await client.extract_card(whole, get_thumb=get_thumb)).cards
        with pytest.raises(InvalidImageError):
            await client.extract_card(cut, get_thumb=get_thumb)


async def test_large_uploads_are_opened_off_the_event_loop(cv_client: AsyncCVClient) -> None:
    picture = io.BytesIO()
    noise = random.Random(7).randbytes(1500 * 1500)
    Image.frombytes("L", (1500, 1500), noise).save(picture, "PNG")
    data = picture.getvalue()
    assert len(data) > 1024 * 1024
    res = await cv_client.extract_card(data, get_thumb=True)
    thumb = Image.open(io.BytesIO(res.cards[0].info.image_bytes() or b""))
    assert max(thumb.size) <= 480


async def test_synthetic_jpegs_are_distinct_real_images(cv_client: AsyncCVClient) -> None:
    a, b = synthetic_jpeg(1, 20_000), synthetic_jpeg(2, 20_000)
    assert len(a) == len(b) == 20_000
    assert Image.open(io.BytesIO(a)).format == "JPEG"
    first, second = await cv_client.extract_card(a), await cv_client.extract_card(b)
    assert first.cards[0].info.get("id") != second.cards[0].info.get("id")


class _Recorder:
    def __init__(self, redirects: dict[str, str]) -> None:
        self.redirects = redirects
        self.hosts: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        target = self.redirects.get(str(request.url))
        if target is not None:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, content=samples.JPEG)


@pytest.mark.parametrize(
    ("redirects", "fetched", "ok"),
    [
        # one hop to another host: refused before it is fetched
        ({"http://127.0.0.1/a.jpg": "http://203.0.113.7/card.jpg"}, ["127.0.0.1"], False),
        # a relative redirect and a loopback hop are followed
        ({"http://127.0.0.1/a.jpg": "/b.jpg"}, ["127.0.0.1", "127.0.0.1"], True),
        ({"http://127.0.0.1/a.jpg": "http://localhost/c.jpg"}, ["127.0.0.1", "localhost"], True),
        # a loop ends after a few hops
        ({"http://127.0.0.1/a.jpg": "/a.jpg"}, ["127.0.0.1"] * 6, False),
    ],
)
async def test_url_downloads_check_every_redirect_hop(
    redirects: dict[str, str], fetched: list[str], ok: bool
) -> None:
    app = EmulatorApp()
    recorder = _Recorder(redirects)
    app._http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    try:
        if ok:
            assert await app._download("http://127.0.0.1/a.jpg") == samples.JPEG
        else:
            with pytest.raises(_Answer) as info:
                await app._download("http://127.0.0.1/a.jpg")
            assert info.value.code == 2
    finally:
        await app.aclose()
    assert recorder.hosts == fetched


async def test_a_multipart_body_of_many_tiny_parts_is_error_3(cv_emulator: RunningEmulator) -> None:
    # Only the first few parts are looked at: a body of a million parts costs no more.
    body = (
        b"--x\r\nX" * 1_000_000 + b"--x\r\n" + b'Content-Disposition: form-data; name="img"\r\n\r\n'
    )
    body += samples.JPEG + b"\r\n--x--\r\n"
    async with httpx.AsyncClient(base_url=cv_emulator.base_url, timeout=30) as http:
        r = await http.post(
            "/api/v2/ekyc/card?format_type=file",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            auth=(cv_emulator.api_key, cv_emulator.api_secret),
        )
    assert r.json()["errorCode"] == "3"
