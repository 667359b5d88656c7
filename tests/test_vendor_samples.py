"""The vendor's own Python samples, as printed on the API page, pointed at the emulator.

They build query strings by %-formatting without encoding, re-encode images as PNG with Pillow and
``base64.encodebytes`` (newlines every 76 characters), and upload with ``requests``' multipart.
The emulator must take all of it, as the service does.
"""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from cvekyc_async.emulator import RunningEmulator, specimen_path


def get_byte_img(img: Image.Image) -> str:
    img_byte_arr = io.BytesIO()
    img.save(img_byte_arr, format="PNG")
    return base64.encodebytes(img_byte_arr.getvalue()).decode("ascii")


@pytest.fixture
def vendor(cv_emulator: RunningEmulator) -> dict[str, str]:
    return {
        "base": cv_emulator.base_url,
        "api_key": cv_emulator.api_key,
        "api_secret": cv_emulator.api_secret,
        "front_url": cv_emulator.specimen_url("chip_front.jpg"),
        "back_url": cv_emulator.specimen_url("chip_back.jpg"),
        "front_path": str(specimen_path("chip_front.jpg")),
        "back_path": str(specimen_path("chip_back.jpg")),
    }


def check(response: requests.Response, types: list[str]) -> None:
    body = response.json()
    assert body["errorCode"] == "0", body
    data = body["data"] if isinstance(body["data"], list) else [body["data"]]
    assert [d["type"] for d in data] == types


def test_sample_1_cards_url(vendor: dict[str, str]) -> None:
    response = requests.get(
        vendor["base"]
        + "/api/v2/ekyc/cards?img1=%s&img2=%s&format_type=%s&get_thumb=%s"
        % (vendor["front_url"], vendor["back_url"], "url", "false"),
        auth=(vendor["api_key"], vendor["api_secret"]),
        timeout=30,
    )
    check(response, ["chip_id_card_front", "chip_id_card_back"])


def test_sample_2_cards_file(vendor: dict[str, str]) -> None:
    with open(vendor["front_path"], "rb") as f, open(vendor["back_path"], "rb") as b:
        response = requests.post(
            vendor["base"] + "/api/v2/ekyc/cards?format_type=file&get_thumb=false",
            auth=(vendor["api_key"], vendor["api_secret"]),
            files={"img1": f, "img2": b},
            timeout=30,
        )
    check(response, ["chip_id_card_front", "chip_id_card_back"])


def test_sample_3_cards_base64(vendor: dict[str, str]) -> None:
    encode_front = get_byte_img(Image.open(vendor["front_path"]))
    encode_back = get_byte_img(Image.open(vendor["back_path"]))
    assert "\n" in encode_front
    response = requests.post(
        vendor["base"] + "/api/v2/ekyc/cards?format_type=base64&get_thumb=false",
        auth=(vendor["api_key"], vendor["api_secret"]),
        json={"img1": encode_front, "img2": encode_back},
        timeout=30,
    )
    # The PNG re-encode drops the JPEG's embedded truth: the emulator answers a synthetic card.
    check(response, ["chip_id_card_front", "chip_id_card_back"])


def test_sample_4_ocr_url(vendor: dict[str, str]) -> None:
    response = requests.get(
        vendor["base"]
        + "/api/v2/ocr/card?img=%s&format_type=%s&get_thumb=%s"
        % (vendor["front_url"], "url", "false"),
        auth=(vendor["api_key"], vendor["api_secret"]),
        timeout=30,
    )
    check(response, ["chip_id_card_front"])


def test_sample_5_ocr_file(vendor: dict[str, str]) -> None:
    with open(str(specimen_path("scan.pdf")), "rb") as f:
        response = requests.post(
            vendor["base"] + "/api/v2/ocr/card?format_type=file&get_thumb=false",
            auth=(vendor["api_key"], vendor["api_secret"]),
            files={"img": f},
            timeout=30,
        )
    check(response, ["9_id_card_front", "9_id_card_back"])


def test_sample_6_ocr_base64(vendor: dict[str, str]) -> None:
    encode_img = get_byte_img(Image.open(vendor["front_path"]))
    response = requests.post(
        vendor["base"] + "/api/v2/ocr/card?format_type=base64&get_thumb=false",
        auth=(vendor["api_key"], vendor["api_secret"]),
        json={"img": encode_img},
        timeout=30,
    )
    check(response, ["chip_id_card_front"])


def test_sample_7_card_url(vendor: dict[str, str]) -> None:
    response = requests.get(
        vendor["base"]
        + "/api/v2/ekyc/card?img=%s&format_type=%s&get_thumb=%s"
        % (vendor["back_url"], "url", "false"),
        auth=(vendor["api_key"], vendor["api_secret"]),
        timeout=30,
    )
    check(response, ["chip_id_card_back"])


def test_sample_8_card_file(vendor: dict[str, str]) -> None:
    with open(str(specimen_path("passport.jpg")), "rb") as f:
        response = requests.post(
            vendor["base"] + "/api/v2/ekyc/card?format_type=file&get_thumb=false",
            auth=(vendor["api_key"], vendor["api_secret"]),
            files={"img": f},
            timeout=30,
        )
    check(response, ["passport"])


def test_sample_9_card_base64(vendor: dict[str, str]) -> None:
    encode_cmt = get_byte_img(Image.open(str(specimen_path("cmnd_front.jpg"))))
    response = requests.post(
        vendor["base"] + "/api/v2/ekyc/card?format_type=base64&get_thumb=false",
        auth=(vendor["api_key"], vendor["api_secret"]),
        json={"img": encode_cmt},
        timeout=30,
    )
    check(response, ["chip_id_card_front"])
