"""Trust checks: tables of real-shaped cases per rule, and properties over synthetic people."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvekyc_async import Card, decode_answer
from cvekyc_async.checks import assess, assess_cards, check_card, expected_due_date
from cvekyc_async.emulator import specimens
from cvekyc_async.emulator._fake import card_truth, fake_person
from cvekyc_async.emulator._truth import read_documents

TODAY = dt.date(2026, 11, 25)


def card(kind: str, valid: str | None = "True", message: str = "", **info: Any) -> Card:
    doc: dict[str, Any] = {"type": kind, "info": info}
    if valid is not None:
        doc["valid"] = valid
        doc["invalidMessage"] = message
    return decode_answer(json.dumps({"data": doc, "errorCode": "0"}).encode()).cards[0]


def chip_front(**changes: Any) -> Card:
    info = {
        "id": "001099012345",
        "name": "NGUYỄN VĂN MẪU",
        "dob": "15/04/1999",
        "gender": "Nam",
        "nationality": "Việt Nam",
        "due_date": "15/04/2039",
    }
    info.update(changes)
    return card("chip_id_card_front", **{k: v for k, v in info.items() if v is not None})


def chip_back(**changes: Any) -> Card:
    info = {
        "issue_date": "10/07/2022",
        "person_number": "001099012345",
        "document_number": "099012345",
        "dob": "15/04/1999",
        "gender": "Nam",
        "due_date": "15/04/2039",
        "sur_name": "NGUYEN",
        "given_name": "VAN MAU",
    }
    info.update(changes)
    return card("chip_id_card_back", **{k: v for k, v in info.items() if v is not None})


def codes(findings: Any) -> set[str]:
    return {f.code for f in findings}


# -- citizen ID numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "dob", "gender", "expected"),
    [
        ("001099012345", "15/04/1999", "Nam", set()),  # 20th century, male: 0
        ("001199012345", "15/04/1999", "Nữ", set()),  # 20th century, female: 1
        ("079201012345", "01/01/2001", "Nam", set()),  # 21st century, male: 2
        ("079300012345", "29/02/2000", "Nữ", set()),  # 21st century (2000 counts), female: 3
        ("096299012345", "31/12/1999", "Nam", {"id.century"}),  # 2 means born 2000-2099
        ("001099012345", "15/04/1999", "Nữ", {"id.gender"}),
        ("001098012345", "15/04/1999", "Nam", {"id.birth_year"}),
        ("003099012345", "15/04/1999", "Nam", {"id.province"}),  # 003 is no province
        ("0010990123", "15/04/1999", "Nam", {"id.format"}),
        ("00109901234O", "15/04/1999", "Nam", {"id.format"}),
        ("001099012345", "15/04/1999", "Không rõ", set()),  # unreadable gender: not judged
    ],
)
def test_citizen_id_number_rules(number: str, dob: str, gender: str, expected: set[str]) -> None:
    due = "15/04/2039" if dob.endswith("1999") else None
    c = chip_front(id=number, dob=dob, gender=gender, due_date=due)
    found = codes(check_card(c, today=TODAY)) - {"field.missing", "date.expiry_rule"}
    assert found == expected


def test_the_back_person_number_follows_the_same_rules() -> None:
    assert "id.gender" in codes(check_card(chip_back(gender="Nữ"), today=TODAY))


@pytest.mark.parametrize(
    ("number", "ok"),
    [("012345678", True), ("12345678", False), ("0123456789", False), ("01234567a", False)],
)
def test_cmnd_numbers_are_nine_digits(number: str, ok: bool) -> None:
    c = card("9_id_card_front", id=number, name="A", dob="01/01/1980")
    assert ("id.format" not in codes(check_card(c, today=TODAY))) is ok


@pytest.mark.parametrize(
    ("number", "ok"),
    [("C1234567", True), ("N7654321", True), ("C123456", False), ("12345678", False)],
)
def test_passport_number_form(number: str, ok: bool) -> None:
    c = card(
        "passport",
        id=number,
        sur_name="PHAM",
        given_name="THI",
        dob="03/09/1992",
        gender="Nữ",
        due_date="03/09/2032",
    )
    assert ("passport.number" not in codes(check_card(c, today=TODAY))) is ok


# -- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dob", "issued"),
    [
        (dt.date(1999, 4, 15), dt.date(2022, 7, 10)),  # issued at 23: next milestone 40
        (dt.date(2004, 2, 29), dt.date(2022, 8, 1)),  # leap-day birth, expires at 25
        (dt.date(1962, 12, 31), dt.date(2021, 3, 15)),  # issued at 58: no expiry
        (dt.date(1980, 6, 1), dt.date(2020, 1, 1)),  # issued at 39: within 2 years of 40 -> 60
    ],
)
def test_expiry_rule(dob: dt.date, issued: dt.date) -> None:
    due = expected_due_date(dob, issued)
    age_at_issue = (issued - dob).days / 365.25
    if due is None:
        assert age_at_issue >= 58
    else:
        assert due > issued
        assert due.year - dob.year in (25, 40, 60)


@pytest.mark.parametrize(
    ("front", "back", "expected"),
    [
        ({}, {}, set()),
        (
            {"due_date": "15/04/2024"},
            {"due_date": "15/04/2024"},
            {"date.expired", "date.expiry_rule"},
        ),
        ({"due_date": "15/04/2040"}, {"due_date": "15/04/2040"}, {"date.expiry_rule"}),
        ({"due_date": "Không thời hạn"}, {"due_date": "Không thời hạn"}, {"date.expiry_rule"}),
        (
            {"dob": "15/04/2030"},
            {"dob": "15/04/2030"},
            {"date.dob_future", "date.issue_before_birth", "date.expiry_rule"},
        ),
        ({}, {"issue_date": "10/07/2027"}, {"date.issue_future"}),
        ({}, {"issue_date": "31/02/2022"}, {"date.unreadable"}),
        (
            {"dob": "15/04/1899"},
            {"dob": "15/04/1899"},
            {"date.dob_implausible", "date.expiry_rule"},
        ),
    ],
)
def test_date_rules_on_a_chip_pair(front: dict, back: dict, expected: set[str]) -> None:
    found = assess(chip_front(**front), chip_back(**back), today=TODAY).findings
    # Shifted birth dates also contradict the ID number; that is tested above.
    assert codes(found) - {"id.birth_year", "id.century"} == expected


def test_no_expiry_text_for_an_older_holder_passes() -> None:
    front = chip_front(id="001062012345", dob="31/12/1962", gender="Nam", due_date="Không thời hạn")
    back = chip_back(
        person_number="001062012345",
        dob="31/12/1962",
        due_date="Không thời hạn",
        issue_date="15/03/2021",
    )
    assert assess(front, back, today=TODAY).verdict == "accept"


def test_leap_day_birth_accepts_either_reading_of_the_birthday() -> None:
    for due in ("28/02/2029", "01/03/2029"):
        front = chip_front(id="040204683524", dob="29/02/2004", due_date=due)
        back = chip_back(
            person_number="040204683524", dob="29/02/2004", due_date=due, issue_date="01/08/2022"
        )
        assert assess(front, back, today=TODAY).verdict == "accept", due


# -- front and back --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("back", "code"),
    [
        ({"person_number": "001099054321"}, "pair.person_number"),
        ({"dob": "16/04/1999"}, "pair.dob"),
        ({"gender": "Nữ"}, "pair.gender"),
        ({"due_date": "15/04/2040"}, "pair.due_date"),
        ({"given_name": "VAN MAI"}, "pair.name"),
        ({"sur_name": "TRAN"}, "pair.name"),
    ],
)
def test_front_and_back_must_agree(back: dict, code: str) -> None:
    result = assess(chip_front(), chip_back(**back), today=TODAY)
    assert code in codes(result.findings)
    assert result.verdict == "reject"


def test_names_compare_without_diacritics() -> None:
    front = chip_front(name="ĐỖ THỊ   ẢNH")
    back = chip_back(sur_name="DO", given_name="THI ANH")
    assert "pair.name" not in codes(assess(front, back, today=TODAY).findings)


def test_sides_of_different_cards_are_rejected() -> None:
    cccd_back = card("12_id_card_back", issue_date="01/06/2019", issued_at="X")
    assert assess(chip_front(), cccd_back, today=TODAY).verdict == "reject"


# -- review flags and the verdict ------------------------------------------------------------------


def test_low_confidence_missing_field_and_service_warning_ask_for_review() -> None:
    low = chip_front(id_confidence=0.55)
    assert codes(check_card(low, today=TODAY)) == {"confidence.low"}
    assert check_card(low, today=TODAY, min_confidence=0.5) == []
    missing = chip_front(gender=None)
    assert codes(check_card(missing, today=TODAY)) == {"field.missing"}
    flagged = card(
        "chip_id_card_front",
        valid="False",
        message="The picture is a photocopy version of the id card",
        **chip_front().info.to_dict(),
    )
    result = assess(flagged, today=TODAY)
    assert result.verdict == "review"
    assert "photocopy" in result.reasons[0]


def test_verdicts() -> None:
    assert assess(chip_front(), chip_back(), today=TODAY).verdict == "accept"
    assert assess(chip_front(id_confidence=0.1), today=TODAY).verdict == "review"
    assert assess(chip_front(id="001199012345"), today=TODAY).verdict == "reject"
    worst_first = assess(chip_front(id="001199012345", id_confidence=0.1), today=TODAY)
    assert [f.severity for f in worst_first.findings] == ["reject", "review"]


def test_documents_without_checks_are_accepted() -> None:
    licence = card("driving_license", valid=None, id="790123456789", name="X")
    assert assess(licence, today=TODAY).verdict == "accept"


def test_result_assess_pairs_two_sides_and_rejects_nothing_read() -> None:
    res = decode_answer(
        json.dumps(
            {
                "data": [
                    {
                        "type": "chip_id_card_front",
                        "valid": "True",
                        "info": chip_front().info.to_dict(),
                    },
                    {
                        "type": "chip_id_card_back",
                        "valid": "True",
                        "info": chip_back(dob="16/04/1999").info.to_dict(),
                    },
                ],
                "errorCode": "0",
            }
        ).encode()
    )
    assert "pair.dob" in codes(res.assess(today=TODAY).findings)
    assert assess_cards([], today=TODAY).verdict == "reject"


# -- the specimens and synthetic people ------------------------------------------------------------


def specimen_answer(name: str) -> Any:
    pages = read_documents(specimens()[name].read_bytes())
    assert pages is not None
    docs = [{k: v for k, v in d.items() if k != "box"} for page in pages for d in page]
    return decode_answer(json.dumps({"data": docs, "errorCode": "0"}).encode())


@pytest.mark.parametrize("name", sorted(set(specimens()) - {"blank.jpg"}))
def test_every_specimen_passes(name: str) -> None:
    result = specimen_answer(name).assess(today=TODAY)
    if name == "screen_photo.jpg":  # its one finding is the service's own warning
        assert codes(result.findings) == {"service.warning"}
    else:
        assert result.verdict == "accept", result.reasons


def synthetic_pair(seed: int, gender: str, dob: dt.date, issued: dt.date) -> tuple[Card, Card]:
    person = fake_person(seed, gender=gender, dob=dob, issue_date=issued)
    front = card("chip_id_card_front", **card_truth("chip_id_card_front", person))
    back = card("chip_id_card_back", **card_truth("chip_id_card_back", person))
    return front, back


people = st.builds(
    lambda seed, gender, dob, years: (
        seed,
        gender,
        dob,
        min(TODAY, dob + dt.timedelta(days=int(365.25 * years))),
    ),
    st.integers(0, 2**32),
    st.sampled_from(["Nam", "Nữ"]),
    st.dates(dt.date(1930, 1, 1), dt.date(2010, 1, 1)),
    st.floats(14, 90),
)


def _not_expired(front: Card) -> bool:
    due = front.info.date("due_date")
    return due is None or due >= TODAY


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people)
def test_any_consistent_synthetic_card_passes(person: tuple[int, str, dt.date, dt.date]) -> None:
    front, back = synthetic_pair(*person)
    result = assess(front, back, today=TODAY)
    expected = "accept" if _not_expired(front) else "reject"
    assert result.verdict == expected, (person, result.reasons)


def _bump_digit(text: str, at: int) -> str:
    return text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :]


# Each changes one checked field of a consistent pair: (side, field, how).
MUTATIONS: dict[str, tuple[str, str, Any]] = {
    "id digit 4": ("front", "id", lambda v: _bump_digit(v, 3)),
    "id year": ("front", "id", lambda v: _bump_digit(v, 5)),
    "front dob": ("front", "dob", lambda v: _shift(v)),
    "back dob": ("back", "dob", lambda v: _shift(v)),
    "gender": ("front", "gender", lambda v: "Nữ" if v == "Nam" else "Nam"),
    "front due_date": ("front", "due_date", lambda v: _shift(v) if "/" in v else "01/01/2099"),
    "back person_number": ("back", "person_number", lambda v: _bump_digit(v, 11)),
    "front name": ("front", "name", lambda v: v + " A"),
    "back given_name": ("back", "given_name", lambda v: v + " A"),
}


def _shift(text: str) -> str:
    d = dt.datetime.strptime(text, "%d/%m/%Y").date() + dt.timedelta(days=1)
    return f"{d:%d/%m/%Y}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people, st.sampled_from(sorted(MUTATIONS)))
def test_changing_any_one_checked_field_is_caught(
    person: tuple[int, str, dt.date, dt.date], mutation: str
) -> None:
    front, back = synthetic_pair(*person)
    f, b = front.info.to_dict(), back.info.to_dict()
    side, field, change = MUTATIONS[mutation]
    target = f if side == "front" else b
    target[field] = change(target[field])
    mutated_front = card("chip_id_card_front", **f)
    mutated_back = card("chip_id_card_back", **b)
    result = assess(mutated_front, mutated_back, today=TODAY)
    assert result.verdict != "accept", (person, mutation)
