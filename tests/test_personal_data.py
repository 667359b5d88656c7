"""Answers keep what the service sends, and no repr or message shows personal values."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cvekyc_async import (
    ChipCCCDFrontInfo,
    ImageSource,
    InvalidInputError,
    decode_answer,
)
from cvekyc_async._inputs import as_source
from cvekyc_async._redact import describe_head, mask_value
from tests import samples

NAME = "NGUYỄN VĂN AN"
NUMBER = "001099012345"


def decode(data: Any) -> Any:
    return decode_answer(samples.answer(data))


def chip_front(**extra: Any) -> dict[str, Any]:
    info = {
        "id": NUMBER,
        "name": NAME,
        "dob": "01/02/1999",
        "address": "12 Hàng Bạc, Hoàn Kiếm, Hà Nội",
        "id_confidence": 0.99,
    }
    info.update(extra)
    return {"type": "chip_id_card_front", "info": info, "valid": "True"}


# -- unknown fields are kept ----------------------------------------------------------------------


def test_fields_a_typed_info_does_not_declare_are_kept() -> None:
    res = decode(chip_front(ethnicity="Kinh", place_of_birth="Hà Nội", new_score=0.5))
    info = res.cards[0].info
    assert isinstance(info, ChipCCCDFrontInfo)
    assert info.extra == {"ethnicity": "Kinh", "place_of_birth": "Hà Nội", "new_score": 0.5}
    assert info.get("ethnicity") == "Kinh"
    assert info.get("place_of_birth") == "Hà Nội"
    assert info.to_dict()["new_score"] == 0.5
    assert info.to_dict()["id"] == NUMBER
    assert info.get("missing", "default") == "default"


def test_get_does_not_return_methods_or_private_attributes() -> None:
    info = decode(chip_front()).cards[0].info
    assert info.get("to_dict") is None
    assert info.get("__class__") is None


def test_a_typed_info_without_extra_fields_has_an_empty_extra() -> None:
    assert decode(chip_front()).cards[0].info.extra == {}


def test_extra_fields_nested_too_deeply_are_refused() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than 32"):
        decode(chip_front(odd=deep))
    with pytest.raises(ValueError, match="nested more than 32"):
        decode({"type": "driving_license", "info": {"odd": deep}})


def test_extra_fields_nested_within_the_bound_are_kept() -> None:
    nested: Any = "x"
    for _ in range(20):
        nested = {"a": nested}
    assert decode(chip_front(odd=nested)).cards[0].info.extra["odd"] == nested


# -- boxes ---------------------------------------------------------------------------------------


def test_boxes_are_kept_in_both_forms_and_read_as_rectangles() -> None:
    points = [[10, 20], [110, 22], [108, 60], [12, 58]]
    res = decode(chip_front(id_box=[10, 20, 110, 60], name_box=points))
    info = res.cards[0].info
    assert info.id_box == [10, 20, 110, 60]
    assert info.name_box == points
    assert info.box("id") == (10.0, 20.0, 110.0, 60.0)
    assert info.box("name") == (10.0, 20.0, 110.0, 60.0)
    assert info.box("dob") is None
    assert info.to_dict()["name_box"] == points


def test_a_box_of_the_wrong_shape_reads_as_none() -> None:
    info = decode(chip_front(id_box=[1, 2, 3])).cards[0].info
    assert info.box("id") is None


# -- validity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("card", "valid", "code"),
    [
        ({"valid": "True", "invalidMessage": "Successful"}, True, 0),
        ({"valid": "False", "invalidCode": "2"}, False, 2),
        ({"invalidCode": "1"}, False, 1),
        ({"invalidMessage": "The picture is a photocopy version of the id card"}, False, 2),
        ({"invalidMessage": "A warning this library has never seen"}, False, None),
        ({"invalidCode": 0}, True, 0),
        ({"invalidMessage": "Successful"}, True, 0),
        ({}, None, None),
        ({"valid": "True", "invalidCode": "5"}, False, 5),  # a warning is not overruled
    ],
)
def test_a_warning_without_valid_counts_as_not_valid(
    card: dict[str, Any], valid: bool | None, code: int | None
) -> None:
    data = {"type": "passport", "info": {"id": "C1234567"}, **card}
    res = decode(data)
    assert (res.cards[0].valid, res.cards[0].invalid_code) == (valid, code)


# -- reprs are masked ------------------------------------------------------------------------------


def test_reprs_of_results_cards_and_infos_mask_personal_values() -> None:
    res = decode([chip_front(extra_name=NAME), {"type": "driving_license", "info": {"name": NAME}}])
    for shown in (repr(res), str(res), repr(res.cards[0]), repr(res.cards[1].info)):
        assert NAME not in shown
        assert NUMBER not in shown
        assert "01/02/1999" not in shown
        assert "Hàng Bạc" not in shown
    info = res.cards[0].info
    assert "id='0010******45'" in repr(info)
    assert "name='N***** V** A*'" in repr(info)
    assert "dob='**/**/****'" in repr(info)
    assert "id_confidence=0.99" in repr(info)
    assert "extra_name='N***** V** A*'" in repr(info)
    # attribute access and to_dict give the values whole
    assert info.id == NUMBER
    assert info.to_dict()["name"] == NAME


def test_a_generic_info_whose_image_is_not_text_has_a_repr() -> None:
    res = decode({"type": "driving_license", "info": {"image": 5, "id": 7, "nested": {"a": 1}}})
    shown = repr(res.cards[0].info)
    assert shown == "GenericInfo(image=<image>, id=<int>, nested=<dict>)"


def test_rich_sees_the_same_masked_values() -> None:
    info = decode(chip_front()).cards[0].info
    pairs = dict(info.__rich_repr__())
    assert repr(pairs["id"]) == "'0010******45'"
    assert repr(pairs["id_confidence"]) == "0.99"


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("id", "001099012345", "'0010******45'"),
        ("id", "123456789", "'123*****9'"),
        ("id", "C1234567", "'C1*****7'"),
        ("id", "123", "'***'"),
        ("person_number", "001099012345", "'0010******45'"),
        ("name", "TRẦN THỊ B", "'T*** T** B'"),
        ("issue_date", "01/02/2020", "'**/**/****'"),
        ("due_date", "Không thời hạn", "'K**** t*** h**'"),
        ("id_confidence", 0.5, "0.5"),
        ("id_box", [1, 2, 3, 4], "[1, 2, 3, 4]"),
        ("image", "abcd", "<4 base64 chars>"),
        ("anything", 12345, "<int>"),
        ("anything", None, "None"),
    ],
)
def test_mask_value(field: str, value: Any, shown: str) -> None:
    assert mask_value(field, value) == shown


def test_to_builtins_and_json_keep_values_whole() -> None:
    res = decode(chip_front())
    data = msgspec.to_builtins(res)
    assert data["cards"][0]["info"]["id"] == NUMBER
    assert json.loads(msgspec.json.encode(res))["cards"][0]["info"]["name"] == NAME


# -- refused inputs are described, not quoted ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (b"root:*:0:0:root:/root:/bin/bash\n", "32 bytes, starting with text"),
        (b"GIF89a" + b"\x00" * 20, "26 bytes, a GIF image"),
        (b"PK\x03\x04" + b"\x00" * 20, "24 bytes, a ZIP archive"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 8, "is a HEIC photo, which the service"),
        (b"<html><body>secret</body></html>", "32 bytes, starting like HTML"),
        (b'{"id": "001099012345"}', "22 bytes, starting like JSON"),
        (b"\x01\x02\x03\x04\xfe\xff" * 4, "24 bytes, binary data of no image format"),
    ],
)
def test_refused_bytes_are_described_not_quoted(data: bytes, described: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        ImageSource.from_bytes(data).load()  # a HEIC photo is refused when it would be sent
    text = str(info.value)
    assert described in text
    assert "root" not in text
    assert "001099012345" not in text
    assert "secret" not in text


def test_a_refused_file_is_described_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "passwd.jpg"
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 10)
    source = ImageSource.from_path(path)
    with pytest.raises(InvalidInputError) as info:
        source.load()
    assert "320 bytes, starting with text" in str(info.value)
    assert "root:" not in str(info.value)


def test_describe_head_of_a_cut_utf8_character_is_still_text() -> None:
    text = "Nguyễn Văn A".encode()
    assert describe_head(text[:9]) == "starting with text"


def test_to_dict_of_a_result_keeps_every_field_the_service_sent() -> None:
    res = decode(
        [chip_front(ethnicity="Kinh"), {"type": "driving_license", "info": {"class": "B2"}}]
    )
    data = res.to_dict()
    assert data["cards"][0]["info"]["ethnicity"] == "Kinh"
    assert data["cards"][0]["info"]["id"] == NUMBER
    assert data["cards"][0]["valid"] is True
    assert data["cards"][1]["info"] == {"class": "B2"}  # flat, as sent
    assert json.loads(json.dumps(data)) == data


def test_save_image_creates_a_file_for_its_owner_only(tmp_path: Path) -> None:
    info = decode(chip_front(image=base64.b64encode(samples.JPEG).decode())).cards[0].info
    out = info.save_image(tmp_path / "thumb.jpg")
    assert out.read_bytes() == samples.JPEG
    assert out.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / "link.jpg").symlink_to(target)
    with pytest.raises(OSError, match="a symlink is there"):
        info.save_image(tmp_path / "link.jpg")
    assert target.read_bytes() == b"keep"


def test_a_thumbnail_that_is_not_base64_says_so() -> None:
    info = decode(chip_front(image="not base64 at all!")).cards[0].info
    with pytest.raises(ValueError, match="not valid base64"):
        info.image_bytes()


# -- what a hostile service controls never shows --------------------------------------------------

PLANTED = "NGUYEN VAN SECRET 079099123456"


def test_service_texts_and_names_show_only_when_documented_or_plain() -> None:
    cards = [
        {
            "type": f"{PLANTED}_front",
            "info": {PLANTED: 1, "holder_box": PLANTED, "x_confidence": PLANTED},
            "invalidMessage": PLANTED,
        },
        {"type": "chip_id_card_back", "info": {}, "invalidMessage": "Successful"},
        {"type": "12_id_card_front", "info": {}},
    ]
    res = decode_answer(samples.answer(cards, code="0", message=PLANTED))
    shown = [repr(res), str(res), repr(res.cards[0]), repr(res.cards[0].info)]
    shown += [f.message for f in res.assess().findings]
    for text in shown:
        assert "SECRET" not in text
        assert "079099123456" not in text
    assert "type='<unknown type>'" in repr(res.cards[0])
    assert "invalid_message='Successful'" in repr(res.cards[1])
    assert "type='12_id_card_front'" in repr(res.cards[2])  # documented names start with digits
    assert "<field>=<int>" in repr(res.cards[0].info)
    assert "error_message=<30 chars>" in repr(res)
    # the values themselves are kept
    assert res.cards[0].invalid_message == PLANTED
    assert res.error_message == PLANTED


def test_error_messages_show_documented_texts_and_plain_tokens_only() -> None:
    from cvekyc_async import APIError, APIStatusError, MalformedResponseError

    api = APIError(3, PLANTED)
    assert "SECRET" not in str(api)
    assert "(a message of 30 characters, on .error_message)" in str(api)
    assert "Incorrect image format" in str(APIError(3, "Incorrect image format"))
    status = APIStatusError(502, body=b"x", content_type=f"text/{PLANTED}")
    assert "SECRET" not in str(status)
    assert "an unreadable content type" in str(status)
    malformed = MalformedResponseError("x", status_code=200, content_type=PLANTED)
    assert "SECRET" not in str(malformed)


def test_batch_result_reprs_show_inputs_without_their_data() -> None:
    from cvekyc_async import BatchResult

    signed = "https://bucket.test/card.jpg?X-Signature=abcdef"
    for value, shown in [
        (samples.JPEG, f"<{len(samples.JPEG):,} bytes>"),
        (signed, "'https://bucket.test/card.jpg?...'"),
        ("scans/a.jpg", "'scans/a.jpg'"),
        ("x" * 1000, "<a path of 1,000 characters>"),
        ((samples.JPEG, "b.jpg"), f"(<{len(samples.JPEG):,} bytes>, 'b.jpg')"),
    ]:
        text = repr(BatchResult(0, value))
        assert f"input={shown}" in text
        assert "abcdef" not in text


def test_a_data_uri_string_is_base64_not_a_path() -> None:
    uri = "data:image/jpeg;base64," + base64.b64encode(samples.JPEG).decode()
    source = as_source(uri)
    assert source.kind == "base64"
    assert base64.b64encode(samples.JPEG).decode() not in repr(source)


def test_a_long_string_that_is_no_path_is_not_quoted() -> None:
    text = base64.b64encode(samples.JPEG).decode() * 3
    with pytest.raises(InvalidInputError) as info:
        as_source(text)
    assert text[:40] not in str(info.value)
    assert "image file not found: <a path of 2," in str(info.value)


# -- what the service sends is kept ----------------------------------------------------------


@pytest.mark.parametrize("code", [1.0, True, "x", [1]])
def test_a_warning_code_in_an_odd_form_still_flags_the_card(code: Any) -> None:
    res = decode({"type": "passport", "info": {}, "invalidCode": code})
    assert res.cards[0].valid is False


def test_declared_fields_of_the_wrong_type_are_kept_as_sent() -> None:
    res = decode(chip_front(dob={"d": 1}, id_box="1,2,3,4", dob_confidence="high"))
    info = res.cards[0].info
    assert info.dob is None
    assert info.get("dob") == {"d": 1}
    assert info.extra["id_box"] == "1,2,3,4"
    assert info.to_dict()["dob_confidence"] == "high"
    assert info.id == NUMBER


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("502 Bad Gateway", True),
        ("503 Service Temporarily Unavailable", True),
        ("Attention Required! | Cloudflare", True),
        ("NGUYỄN VĂN AN 001092384515", False),
        ("NGUYEN VAN AN", False),
        ("Welcome, Tran Thi B", False),
    ],
)
def test_only_error_page_titles_are_shown(title: str, shown: bool) -> None:
    from cvekyc_async._redact import describe_body

    text = describe_body(f"<html><title>{title}</title></html>".encode(), "text/html")
    assert (title in text) is shown
    if not shown:
        assert "an HTML page" in text


def test_save_image_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    info = decode(chip_front(image=base64.b64encode(samples.JPEG).decode())).cards[0].info
    fifo = tmp_path / "thumb.jpg"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        info.save_image(fifo)
