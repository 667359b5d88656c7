from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from cvekyc_async import (
    CCCDBackInfo,
    CCCDFrontInfo,
    ChipCCCD2024FrontInfo,
    ChipCCCDBackInfo,
    ChipCCCDFrontInfo,
    CMNDBackInfo,
    CMNDFrontInfo,
    GenericInfo,
    PassportInfo,
    decode_answer,
    parse_date,
)
from cvekyc_async._models import AnswerFormatError
from tests import samples


@pytest.mark.parametrize(
    ("doc", "cls"),
    [
        (samples.CHIP_FRONT, ChipCCCDFrontInfo),
        (samples.CHIP_BACK, ChipCCCDBackInfo),
        (samples.CMND_FRONT, CMNDFrontInfo),
        (samples.CMND_BACK, CMNDBackInfo),
        (samples.CCCD_FRONT, CCCDFrontInfo),
        (samples.CCCD_BACK, CCCDBackInfo),
        (samples.PASSPORT, PassportInfo),
        (samples.DRIVING_LICENSE, GenericInfo),
        (samples.CHIP_2024_FRONT, ChipCCCD2024FrontInfo),
    ],
)
def test_each_document_type_decodes_into_its_struct(doc: dict, cls: type) -> None:
    res = decode_answer(samples.answer(doc))
    assert res.error_code == 0
    assert res.billed
    [card] = res.cards
    assert card.type == doc["type"]
    assert type(card.info) is cls
    # Every text field the service sent is readable by name, whatever the struct.
    for key, value in doc["info"].items():
        if key.endswith("confidence"):
            assert card.info.get(key) == pytest.approx(float(value)), key
        elif isinstance(value, str) and value:
            assert card.info.get(key) == value, key


def test_data_as_object_and_as_list_give_the_same_cards() -> None:
    one = decode_answer(samples.answer(samples.CHIP_FRONT))
    listed = decode_answer(samples.answer([samples.CHIP_FRONT]))
    assert one.cards == listed.cards


def test_two_sides_keep_the_service_order() -> None:
    res = decode_answer(samples.answer([samples.CHIP_FRONT, samples.CHIP_BACK]))
    assert [c.type for c in res.cards] == ["chip_id_card_front", "chip_id_card_back"]
    back = res.cards[1].info
    assert isinstance(back, ChipCCCDBackInfo)
    assert back.person_number == "001099012345"
    assert back.mrz_confidence == pytest.approx(0.95)


def test_valid_strings_become_booleans() -> None:
    res = decode_answer(samples.answer([samples.CHIP_FRONT, samples.CMND_FRONT]))
    assert res.cards[0].valid is True
    assert res.cards[1].valid is False


@pytest.mark.parametrize(
    ("valid", "expected"),
    [("True", True), ("False", False), (True, True), (False, False), ("true", True), ("", None)],
)
def test_valid_accepts_each_spelling(valid: object, expected: bool | None) -> None:
    doc = {"type": "12_id_card_back", "valid": valid, "info": {}}
    assert decode_answer(samples.answer(doc)).cards[0].valid is expected


def test_documents_without_valid_have_none() -> None:
    [card] = decode_answer(samples.answer(samples.DRIVING_LICENSE)).cards
    assert card.valid is None
    assert card.invalid_message is None


def test_confidences_sent_as_strings_become_floats() -> None:
    info = decode_answer(samples.answer(samples.CHIP_FRONT)).cards[0].info
    assert isinstance(info, ChipCCCDFrontInfo)
    assert info.name_confidence == pytest.approx(0.97)
    assert info.id_confidence == pytest.approx(0.9987)


def test_boxes_are_kept() -> None:
    info = decode_answer(samples.answer(samples.CHIP_FRONT)).cards[0].info
    assert isinstance(info, ChipCCCDFrontInfo)
    assert info.id_box == [120, 80, 410, 118]


def test_error_code_as_number_or_string() -> None:
    assert decode_answer(samples.answer([], code=0)).error_code == 0
    assert decode_answer(samples.answer(None, code="3", message="x")).error_code == 3
    assert decode_answer(samples.answer(None, code=3)).cards == []


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (samples.CMND_FRONT, 2),  # matched from the message
        (samples.CCCD_FRONT, 1),  # sent as a number
        (samples.CMND_BACK, 0),  # sent as a string
        (samples.PASSPORT, 4),
        (samples.CHIP_FRONT, 0),
        (samples.DRIVING_LICENSE, None),
    ],
)
def test_warning_code_given_or_matched_from_message(doc: dict, code: int | None) -> None:
    assert decode_answer(samples.answer(doc)).cards[0].invalid_code == code


def test_misspelt_success_message_matches_code_zero() -> None:
    doc = {"type": "passport", "valid": "True", "invalidMessage": "uccessful", "info": {}}
    assert decode_answer(samples.answer(doc)).cards[0].invalid_code == 0


def test_unknown_fields_are_ignored_and_generic_keeps_them_all() -> None:
    res = decode_answer(samples.answer([samples.CHIP_FRONT, samples.DRIVING_LICENSE]))
    generic = res.cards[1].info
    assert isinstance(generic, GenericInfo)
    assert generic.fields["class"] == "B2"
    assert generic.get("class_confidence") == 0.9


def test_number_where_text_expected_is_kept_as_text() -> None:
    info = decode_answer(samples.answer(samples.CMND_FRONT)).cards[0].info
    assert isinstance(info, CMNDFrontInfo)
    assert info.hometown_town_code == "36"
    assert info.id == "012345678"


def test_unreadable_value_empties_that_field_only() -> None:
    doc = {
        "type": "12_id_card_front",
        "info": {"id": "079200001234", "id_confidence": "", "gender_box": "oops", "name": "A"},
    }
    info = decode_answer(samples.answer(doc)).cards[0].info
    assert isinstance(info, CCCDFrontInfo)
    assert (info.id, info.name, info.id_confidence, info.gender_box) == (
        "079200001234",
        "A",
        None,
        None,
    )


def test_missing_info_gives_an_empty_struct() -> None:
    info = decode_answer(samples.answer({"type": "passport"})).cards[0].info
    assert isinstance(info, PassportInfo)
    assert info.to_dict() == {}


def test_dates_parse_and_no_expiry_text_stays_raw() -> None:
    doc = {"type": "12_id_card_front", "info": {"dob": "29/02/2000", "due_date": "Không thời hạn"}}
    info = decode_answer(samples.answer(doc)).cards[0].info
    assert info.date("dob") == dt.date(2000, 2, 29)
    assert info.date("due_date") is None
    assert info.get("due_date") == "Không thời hạn"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01/02/1990", dt.date(1990, 2, 1)),
        ("1/2/1990", dt.date(1990, 2, 1)),
        ("01-02-1990", dt.date(1990, 2, 1)),
        (" 31.12.2030 ", dt.date(2030, 12, 31)),
        ("29/02/2001", None),
        ("Không thời hạn", None),
        ("", None),
        (None, None),
        ("1990", None),
    ],
)
def test_parse_date(text: str | None, expected: dt.date | None) -> None:
    assert parse_date(text) == expected


def test_thumbnail_bytes_and_save(tmp_path: Path) -> None:
    thumb = base64.b64encode(samples.JPEG).decode()
    doc = {"type": "12_id_card_back", "info": {"image": thumb}}
    info = decode_answer(samples.answer(doc)).cards[0].info
    assert info.image_bytes() == samples.JPEG
    out = info.save_image(tmp_path / "thumb.jpg")
    assert out.read_bytes() == samples.JPEG
    assert "base64 chars" in repr(info)
    assert thumb not in repr(info)


def test_save_image_without_thumbnail_says_how_to_get_one(tmp_path: Path) -> None:
    info = decode_answer(samples.answer(samples.CCCD_BACK)).cards[0].info
    assert info.image_bytes() is None
    with pytest.raises(ValueError, match="get_thumb=True"):
        info.save_image(tmp_path / "x.jpg")


def test_result_structs_encode_back_to_json() -> None:
    res = decode_answer(samples.answer([samples.CHIP_FRONT, samples.CHIP_BACK]))
    again = json.loads(msgspec.json.encode(res))
    assert again["cards"][0]["info"]["id"] == "001099012345"
    assert again["cards"][1]["type"] == "chip_id_card_back"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"[]",
        b"null",
        b"{}",
        b'{"data": {"type": "passport"}}',
        b'{"errorCode": "zero"}',
        b'{"errorCode": "0", "data": 5}'[:-1],
        b'{"errorCode": "0", "data": {"type": "passport", "info": [1, 2]}}',
        b'{"errorCode": "0", "data": [1, 2]}',
    ],
)
def test_bodies_that_are_not_the_envelope_raise_answer_format_error(body: bytes) -> None:
    with pytest.raises(AnswerFormatError):
        decode_answer(body)
