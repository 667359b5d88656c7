"""Trust checks: tables of real-shaped cases per rule, and properties over synthetic people."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvekyc_async import Card, decode_answer
from cvekyc_async.checks import assess, assess_cards, check_card, expected_due_date
from cvekyc_async.emulator import specimens
from cvekyc_async.emulator._fake import _birthday as years_after
from cvekyc_async.emulator._fake import card_truth, fake_person, gender_century_digit
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
        (
            # A 27-year-old's card cannot be without expiry: that needs issue from 58.
            {"due_date": "Không thời hạn"},
            {"due_date": "Không thời hạn"},
            {"date.expiry_rule", "date.expiry_age"},
        ),
        (
            {"dob": "15/04/2030"},
            {"dob": "15/04/2030"},
            {
                "date.dob_future",
                "date.issue_before_birth",
                "date.expiry_rule",
                "model.holder_under_14",
            },
        ),
        ({}, {"issue_date": "10/07/2027"}, {"date.issue_future", "model.issued_too_late"}),
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
    answer = specimen_answer(name)
    result = answer.assess(today=TODAY)
    cmnd = any(c.type.startswith("9_id_card") for c in answer.cards)
    if name == "screen_photo.jpg":  # its one finding is the service's own warning
        assert codes(result.findings) == {"service.warning"}
    elif cmnd:
        # Every CMND is void since 1 January 2025 (Law 26/2023/QH15, Art. 46); on the last
        # day it was valid, the specimen passes.
        assert codes(result.findings) == {"cmnd.void"}
        assert answer.assess(today=dt.date(2024, 12, 31)).verdict == "accept"
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


# -- the 2023 Law on Identification, card models by date, CMND validity ---------------------------


def card_2024(side: str, **changes: Any) -> Card:
    front = {
        "id": "001099012345",
        "name": "NGUYỄN VĂN MẪU",
        "dob": "15/04/1999",
        "gender": "Nam",
        "nationality": "Việt Nam",
    }
    back = {
        "issue_date": "10/07/2024",
        "person_number": "001099012345",
        "dob": "15/04/1999",
        "gender": "Nam",
        "due_date": "15/04/2039",
        "sur_name": "NGUYEN",
        "given_name": "VAN MAU",
    }
    info = {**(front if side == "front" else back), **changes}
    kind = f"chip_id_card_2024_{side}"
    return card(kind, **{k: v for k, v in info.items() if v is not None})


D = dt.date


@pytest.mark.parametrize(
    ("dob", "issued", "due"),
    [
        # Law 26/2023/QH15, Art. 21: renewal at 14, 25, 40 and 60; issued within 2 years before
        # one of those ages, valid until the next.
        (D(2015, 3, 10), D(2024, 8, 1), D(2029, 3, 10)),  # a child of 9: due at 14
        (D(2012, 3, 10), D(2024, 3, 9), None),  # before 1 July 2024: not this law (see below)
        (D(2012, 8, 10), D(2024, 8, 9), D(2026, 8, 10)),  # the day before 12: due at 14
        (D(2012, 8, 10), D(2024, 8, 10), D(2037, 8, 10)),  # 12 to the day: due at 25
        (D(2001, 9, 1), D(2024, 8, 31), D(2026, 9, 1)),  # the day before 23: due at 25
        (D(2001, 9, 1), D(2024, 9, 1), D(2041, 9, 1)),  # 23 to the day: due at 40
        (D(1966, 7, 20), D(2024, 7, 19), D(2026, 7, 20)),  # 57 years and 364 days: due at 60
        (D(1966, 7, 20), D(2024, 7, 20), "none"),  # 58 to the day: no expiry
    ],
)
def test_the_2023_law_milestones(dob: dt.date, issued: dt.date, due: Any) -> None:
    if due is None:
        return
    expected = None if due == "none" else due
    assert expected_due_date(dob, issued, law=2023) == expected
    back = card_2024(
        "back",
        dob=dob.strftime("%d/%m/%Y"),
        issue_date=issued.strftime("%d/%m/%Y"),
        due_date="Không thời hạn" if expected is None else expected.strftime("%d/%m/%Y"),
        person_number=f"001{0 if dob.year < 2000 else 2}{dob.year % 100:02d}012345",
        gender="Nam",
    )
    assert "date.expiry_rule" not in codes(check_card(back, today=D(2024, 12, 1)))
    if expected is not None:
        wrong = card_2024(
            "back",
            dob=dob.strftime("%d/%m/%Y"),
            issue_date=issued.strftime("%d/%m/%Y"),
            due_date=D(expected.year + 1, 1, 1).strftime("%d/%m/%Y"),
        )
        found = [f for f in check_card(wrong, today=D(2024, 12, 1)) if f.code == "date.expiry_rule"]
        assert found
        assert found[0].rule == "Law 26/2023/QH15, Art. 21"


@pytest.mark.parametrize(
    ("dob", "reading"),
    [("29/02/2012", "28/02/2037"), ("29/02/2012", "01/03/2037")],
)
def test_a_29_february_birthday_is_read_both_ways(dob: str, reading: str) -> None:
    # Issued at 12: due at 25, in 2037, which has no 29 February.
    back = card_2024(
        "back", dob=dob, issue_date="01/08/2024", due_date=reading, person_number="001212012345"
    )
    assert "date.expiry_rule" not in codes(check_card(back, today=D(2024, 12, 1)))


@pytest.mark.parametrize(
    ("kind", "issued", "found"),
    [
        # Law 59/2014/QH13 in force on 1 January 2016 (Art. 39).
        ("12_id_card_back", "31/12/2015", {"model.issued_too_early"}),
        ("12_id_card_back", "01/01/2016", set()),
        # The chip card from 2021 (Circular 06/2021/TT-BCA).
        ("chip_id_card_back", "31/12/2020", {"model.issued_too_early"}),
        ("chip_id_card_back", "01/01/2021", set()),
        # No 2014-law card after 30 June 2024 (Law 26/2023/QH15, Art. 45).
        ("chip_id_card_back", "30/06/2024", set()),
        ("chip_id_card_back", "01/07/2024", {"model.issued_too_late"}),
        ("12_id_card_back", "01/07/2024", {"model.issued_too_late"}),
        # The 2024 card from 1 July 2024.
        ("chip_id_card_2024_back", "30/06/2024", {"model.issued_too_early"}),
        ("chip_id_card_2024_back", "01/07/2024", set()),
    ],
)
def test_card_models_by_date(kind: str, issued: str, found: set[str]) -> None:
    info: dict[str, Any] = {"issue_date": issued}
    if kind != "12_id_card_back":
        info |= {"person_number": "001099012345", "dob": "15/04/1999", "gender": "Nam"}
        info["due_date"] = "15/04/2039"
    got = codes(check_card(card(kind, **info), today=TODAY))
    assert got & {"model.issued_too_early", "model.issued_too_late"} == found


@pytest.mark.parametrize(
    ("issued", "found"),
    [("14/04/2013", {"model.holder_under_14"}), ("15/04/2013", set())],
)
def test_a_2014_law_card_is_issued_from_14(issued: str, found: set[str]) -> None:
    # Law 59/2014/QH13, Art. 19: citizens from 14. Born 15/04/1999: 14 on 15/04/2013.
    back = chip_back(issue_date=issued)
    got = codes(check_card(back, today=TODAY))
    assert got & {"model.holder_under_14"} == found


def test_a_chip_front_due_before_chip_cards_existed_is_rejected() -> None:
    front = chip_front(id="001092012345", dob="15/04/1992", due_date="15/04/2017")
    found = [f for f in check_card(front, today=D(2016, 1, 1)) if f.code == "model.due_too_early"]
    assert found
    assert found[0].severity == "reject"
    assert found[0].rule == "Circular 06/2021/TT-BCA"


@pytest.mark.parametrize(
    ("today", "found"),
    [
        # Decree 05/1999/ND-CP, Art. 2: 15 years from issue (issued 10/03/2010).
        (D(2024, 12, 31), {"cmnd.expired"}),
        (D(2025, 1, 1), {"cmnd.void"}),
    ],
)
def test_cmnd_validity(today: dt.date, found: set[str]) -> None:
    back = card("9_id_card_back", issue_date="10/03/2009", ethnicity="Kinh")
    assert codes(check_card(back, today=today)) & {"cmnd.expired", "cmnd.void"} == found


@pytest.mark.parametrize(
    ("today", "expired"),
    [(D(2023, 3, 9), False), (D(2023, 3, 10), True)],
)
def test_a_cmnd_is_valid_15_years_to_the_day(today: dt.date, expired: bool) -> None:
    back = card("9_id_card_back", issue_date="10/03/2008")
    assert ("cmnd.expired" in codes(check_card(back, today=today))) is expired


@pytest.mark.parametrize(
    ("today", "void"),
    [(D(2024, 12, 31), False), (D(2025, 1, 1), True)],
)
def test_every_cmnd_is_void_after_2024(today: dt.date, void: bool) -> None:
    front = card("9_id_card_front", id="012345678", name="NGUYỄN VĂN MẪU", dob="15/04/1980")
    found = [f for f in check_card(front, today=today) if f.code == "cmnd.void"]
    assert bool(found) is void
    if found:
        assert found[0].rule == "Law 26/2023/QH15, Art. 46(2)"


def test_an_unknown_province_code_asks_for_review() -> None:
    # Decree 137/2015/ND-CP, Art. 13: a birth registered abroad may carry a country code.
    found = [
        f for f in check_card(chip_front(id="703099012345"), today=TODAY) if f.code == "id.province"
    ]
    assert [f.severity for f in found] == ["review"]


@pytest.mark.parametrize(
    ("number", "code", "severity"),
    [("c1234567", "passport.number_case", "review"), ("C123456", "passport.number", "reject")],
)
def test_a_lower_case_passport_letter_is_an_ocr_slip(number: str, code: str, severity: str) -> None:
    passport = card(
        "passport", id=number, sur_name="NGUYEN", given_name="VAN MAU", dob="15/04/1999",
        gender="Nam", due_date="01/01/2030",
    )  # fmt: skip
    found = [f for f in check_card(passport, today=TODAY) if f.code.startswith("passport.")]
    assert [(f.code, f.severity) for f in found] == [(code, severity)]


def test_a_2024_pair_is_checked_front_against_back() -> None:
    front, back = card_2024("front"), card_2024("back")
    assert assess(front, back, today=TODAY).verdict == "accept"
    for side, changes, code in [
        ("back", {"person_number": "001099012346"}, "pair.person_number"),
        ("back", {"dob": "16/04/1999"}, "pair.dob"),
        ("back", {"gender": "Nữ"}, "pair.gender"),
        ("back", {"sur_name": "TRAN"}, "pair.name"),
        ("front", {"id": "001199012345"}, "id.gender"),
    ]:
        f = card_2024("front", **changes) if side == "front" else front
        b = card_2024("back", **changes) if side == "back" else back
        assert code in codes(assess(f, b, today=TODAY).findings), code


consistent_people = st.builds(
    lambda seed, gender, dob: (seed, gender, dob),
    st.integers(0, 2**32),
    st.sampled_from(["Nam", "Nữ"]),
    st.dates(D(1930, 1, 1), D(2020, 12, 31)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(consistent_people, st.sampled_from(["chip_id_card", "12_id_card", "chip_id_card_2024"]))
def test_consistent_people_of_every_birth_year_are_accepted(
    person: tuple[int, str, dt.date], family: str
) -> None:
    from cvekyc_async.emulator._fake import issue_window

    seed, gender, dob = person
    if issue_window(f"{family}_front", dob) is None:
        return  # too young for a 2014-law card
    p = fake_person(seed, gender=gender, dob=dob)
    front = card(f"{family}_front", **card_truth(f"{family}_front", p))
    back = card(f"{family}_back", **card_truth(f"{family}_back", p))
    due = (front.info.date("due_date") or back.info.date("due_date")) if family else None
    today = D(2026, 1, 1)
    result = assess(front, back, today=today)
    if due is not None and due < today:
        assert codes(result.findings) == {"date.expired"}, result.reasons
    else:
        assert result.verdict == "accept", (person, family, result.reasons)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    consistent_people,
    st.sampled_from(
        [
            ("front", "id", lambda v: v[:3] + str((int(v[3]) + 2) % 10) + v[4:]),
            ("front", "dob", lambda v: v[:6] + str(int(v[6:]) + 1)),
            ("back", "issue_date", lambda v: "30/06/2024"),
            (
                "back",
                "due_date",
                lambda v: v[:6] + str(int(v[6:]) + 3) if v[:1].isdigit() else "01/01/2099",
            ),
            ("back", "person_number", lambda v: v[:-1] + str((int(v[-1]) + 1) % 10)),
        ]
    ),
)
def test_single_field_mutations_of_a_2024_pair_are_never_accepted(
    person: tuple[int, str, dt.date], mutation: tuple[str, str, Any]
) -> None:
    seed, gender, dob = person
    p = fake_person(seed, gender=gender, dob=dob)
    front = card_truth("chip_id_card_2024_front", p)
    back = card_truth("chip_id_card_2024_back", p)
    side, field, change = mutation
    target = front if side == "front" else back
    target[field] = change(target[field])
    result = assess(
        card("chip_id_card_2024_front", **front),
        card("chip_id_card_2024_back", **back),
        today=D(2026, 1, 1),
    )
    assert result.verdict != "accept", (person, field)


@pytest.mark.parametrize(
    "kinds",
    [
        ("chip_id_card_front", "chip_id_card_back"),
        ("12_id_card_front", "12_id_card_back"),
        ("chip_id_card_2024_front", "chip_id_card_2024_back"),
        ("9_id_card_front", "9_id_card_back"),
        ("passport",),
    ],
)
def test_every_synthetic_card_the_emulator_draws_passes(kinds: tuple[str, ...]) -> None:
    from cvekyc_async.emulator._fake import TODAY as GENERATOR_TODAY
    from cvekyc_async.emulator._truth import synthetic_documents

    # The emulator's people are born 1950-2005: old enough for every card model.
    for seed in range(300):
        docs = synthetic_documents(seed.to_bytes(4, "big"), kinds)
        answer = decode_answer(json.dumps({"data": docs, "errorCode": "0"}).encode())
        result = answer.assess(today=GENERATOR_TODAY)
        if kinds[0].startswith("9_id_card"):
            # Every CMND is void since 1 January 2025: meant to be rejected for that alone.
            assert codes(result.findings) == {"cmnd.void"}, (seed, result.reasons)
        else:
            assert result.verdict == "accept", (seed, kinds, result.reasons)


@pytest.mark.parametrize(
    ("dob", "issued", "due"),
    [
        # Law 59/2014/QH13, Art. 21: renewal at 25, 40, 60; issued within 2 years before one of
        # those ages, valid until the next. The day before and the day of each boundary.
        (D(1999, 4, 15), D(2022, 4, 14), D(2024, 4, 15)),  # the day before 23: due at 25
        (D(1999, 4, 15), D(2022, 4, 15), D(2039, 4, 15)),  # 23 to the day: due at 40
        (D(1983, 4, 15), D(2021, 4, 14), D(2023, 4, 15)),  # the day before 38: due at 40
        (D(1983, 4, 15), D(2021, 4, 15), D(2043, 4, 15)),  # 38 to the day: due at 60
        (D(1963, 4, 15), D(2021, 4, 14), D(2023, 4, 15)),  # the day before 58: due at 60
        (D(1963, 4, 15), D(2021, 4, 15), None),  # 58 to the day: no expiry
    ],
)
def test_the_2014_law_milestones_to_the_day(
    dob: dt.date, issued: dt.date, due: dt.date | None
) -> None:
    assert expected_due_date(dob, issued) == due


@pytest.mark.parametrize(
    ("today", "expired"),
    [(D(2024, 6, 30), False), (D(2024, 7, 1), True)],
)
def test_cards_that_ended_early_in_2024_stay_valid_to_30_june(
    today: dt.date, expired: bool
) -> None:
    # Law 26/2023/QH15, Art. 46(3): validity ending 15/01-30/06/2024 runs to 30/06/2024.
    front = chip_front(id="001099012345", dob="01/03/1999", due_date="01/03/2024")
    assert ("date.expired" in codes(check_card(front, today=today))) is expired
    cmnd = card("9_id_card_back", issue_date="01/03/2009")
    assert ("cmnd.expired" in codes(check_card(cmnd, today=today))) is expired


def test_sides_agree_on_dates_whatever_their_spelling() -> None:
    front = chip_front(dob="5/4/1999", id="001099012345")
    back = chip_back(dob="05-04-1999")
    found = codes(assess(front, back, today=TODAY).findings)
    assert "pair.dob" not in found
    older = chip_front(due_date="Không thời hạn")
    assert "pair.due_date" not in codes(
        assess(older, chip_back(due_date="KHÔNG THỜI HẠN"), today=TODAY).findings
    )


def test_a_cmnd_pair_issued_before_14_is_rejected() -> None:
    front = card("9_id_card_front", id="123456789", name="NGUYỄN VĂN MẪU", dob="01/01/2000")
    back = card("9_id_card_back", issue_date="01/01/1995")
    assert "model.holder_under_14" in codes(assess(front, back, today=D(2005, 1, 1)).findings)


@pytest.mark.parametrize("due", ["01/03/2025", "28/02/2025", "29/02/2040"])
def test_a_29_february_birth_on_the_threshold_day_takes_either_reading(due: str) -> None:
    # Born 29/02/2000, issued 28/02/2023: 23 on 28 February or on 1 March, by reading.
    back = chip_back(
        person_number="001300012345", dob="29/02/2000", gender="Nữ",
        issue_date="28/02/2023", due_date=due,
    )  # fmt: skip
    assert "date.expiry_rule" not in codes(check_card(back, today=D(2023, 6, 1)))


@pytest.mark.parametrize("name", ["NGUYEN_VAN_MAU", "nguyen_van_mau", "tran_thi_b"])
def test_field_names_that_look_like_names_are_not_shown(name: str) -> None:
    # Only the names the answers' structs declare are shown; a service's own could be a value.
    front = chip_front(**{f"{name}_confidence": 0.1, "dob_confidence": 0.2})
    found = [f for f in check_card(front, today=TODAY) if f.code == "confidence.low"]
    assert sorted((f.message, f.fields) for f in found) == [
        ("a field read with confidence 0.10", ("<field>",)),
        ("dob read with confidence 0.20", ("dob",)),
    ]


# -- passports: Law 49/2019/QH14 -----------------------------------------------------------------


def passport(**changes: Any) -> Card:
    info = {
        "id": "C1234567",
        "sur_name": "NGUYEN",
        "given_name": "VAN MAU",
        "dob": "15/04/1990",
        "gender": "Nam",
        "country": "VNM",
        "nationality": "VIỆT NAM",
        "due_date": "10/03/2030",
        "person_number": "001090012345",
    }
    info.update(changes)
    return card("passport", **{k: v for k, v in info.items() if v is not None})


def verdict_of(document: Card, today: dt.date, back: Card | None = None) -> str:
    return assess(document, back, today=today).verdict


@pytest.mark.parametrize(
    ("dob", "issued", "due", "verdict"),
    [
        # Art. 7(2)(a): 14 or more at issue, 10 years. The day before, of and after 10 years.
        ("15/04/1990", "10/03/2020", "09/03/2030", "accept"),
        ("15/04/1990", "10/03/2020", "10/03/2030", "accept"),
        ("15/04/1990", "10/03/2020", "11/03/2030", "reject"),
        # Issued on 29 February: 10 years end on 28 February or 1 March.
        ("15/04/1990", "29/02/2024", "28/02/2034", "accept"),
        ("15/04/1990", "29/02/2024", "01/03/2034", "accept"),
        ("15/04/1990", "29/02/2024", "02/03/2034", "reject"),
        # Art. 7(2)(b), 7(1): under 14 at issue (born 15/06/2012, issued the day before 14),
        # 5 years for an ordinary passport, 8 at most for a diplomatic or official one.
        ("15/06/2012", "14/06/2026", "14/06/2031", "accept"),
        ("15/06/2012", "14/06/2026", "15/06/2031", "review"),
        ("15/06/2012", "14/06/2026", "14/06/2034", "review"),
        ("15/06/2012", "14/06/2026", "15/06/2034", "reject"),
        ("15/06/2012", "14/06/2026", "14/06/2036", "reject"),
        # Issued on the 14th birthday, and the day after: 10 years.
        ("15/06/2012", "15/06/2026", "15/06/2036", "accept"),
        ("15/06/2012", "15/06/2026", "16/06/2036", "reject"),
        ("15/06/2012", "16/06/2026", "16/06/2036", "accept"),
        # Born 29 February 2012: 14 on 28 February or 1 March 2026, by reading.
        ("29/02/2012", "27/02/2026", "27/02/2036", "reject"),
        ("29/02/2012", "28/02/2026", "28/02/2036", "accept"),
        ("29/02/2012", "01/03/2026", "01/03/2036", "accept"),
    ],
)
def test_a_passport_runs_10_years_from_issue_and_5_under_14(
    dob: str, issued: str, due: str, verdict: str
) -> None:
    # The service does not read a passport's issue date; when an answer carries one, it counts.
    pp = passport(dob=dob, issue_date=issued, due_date=due, person_number=None)
    result = assess(pp, today=D(2026, 11, 25))
    assert result.verdict == verdict, result.reasons
    if verdict != "accept":
        assert {f.rule for f in result.findings} == {"Law 49/2019/QH14, Art. 7"}


@pytest.mark.parametrize(
    ("dob", "today", "due", "verdict"),
    [
        # No issue date read: it is today at the latest, so 10 years from today at the most.
        ("15/04/1990", D(2026, 11, 25), "24/11/2036", "accept"),
        ("15/04/1990", D(2026, 11, 25), "25/11/2036", "accept"),
        ("15/04/1990", D(2026, 11, 25), "26/11/2036", "reject"),
        ("15/04/1990", D(2026, 11, 25), "25/11/2038", "reject"),  # due in 12 years
        # A 7-year-old: 5 years from today (ordinary), 8 at most (diplomatic or official).
        ("01/01/2019", D(2026, 11, 25), "25/11/2031", "accept"),
        ("01/01/2019", D(2026, 11, 25), "26/11/2031", "review"),
        ("01/01/2019", D(2026, 11, 25), "25/11/2034", "review"),
        ("01/01/2019", D(2026, 11, 25), "26/11/2034", "reject"),
        ("01/01/2019", D(2026, 11, 25), "25/11/2035", "reject"),  # due in 9 years
        # 14 tomorrow, today, since yesterday: 10 years only once 14 can have been reached.
        ("26/11/2012", D(2026, 11, 25), "25/11/2036", "reject"),
        ("25/11/2012", D(2026, 11, 25), "25/11/2036", "accept"),
        ("24/11/2012", D(2026, 11, 25), "25/11/2036", "accept"),
        # Born 29 February 2012, on each side of both readings of the 14th birthday.
        ("29/02/2012", D(2026, 2, 27), "27/02/2036", "reject"),
        ("29/02/2012", D(2026, 2, 28), "28/02/2036", "accept"),
        ("29/02/2012", D(2026, 3, 1), "01/03/2036", "accept"),
    ],
)
def test_a_passport_without_its_issue_date_is_bounded_from_today(
    dob: str, today: dt.date, due: str, verdict: str
) -> None:
    result = assess(passport(dob=dob, due_date=due, person_number=None), today=today)
    assert result.verdict == verdict, result.reasons


def test_a_passport_always_has_an_expiry() -> None:
    found = check_card(passport(due_date="Không thời hạn"), today=TODAY)
    assert [(f.code, f.severity) for f in found] == [("passport.validity", "reject")]


@pytest.mark.parametrize(
    ("number", "verdict"),
    [
        ("001090012345", "accept"),  # the personal identification number
        ("012345678", "accept"),  # Art. 6(3): the CMND number in its place
        (" 012345678 ", "accept"),
        ("0123456789", "reject"),  # 10 digits: neither
        ("01234567", "reject"),
        ("01234567X", "reject"),
        ("٠١٢٣٤٥٦٧٨", "reject"),  # digits of another script
        ("001190012345", "reject"),  # 12 digits that contradict the birth year
    ],
)
def test_a_passport_may_show_the_cmnd_number(number: str, verdict: str) -> None:
    result = assess(passport(person_number=number), today=TODAY)
    assert result.verdict == verdict, result.reasons


# -- the transition: Law 26/2023/QH15, Art. 45-46 ------------------------------------------------


def grace_outcome(findings: Any) -> str:
    found = codes(findings)
    if found & {"date.expired", "cmnd.expired"}:
        return "reject"
    return "review" if "date.grace_uncertain" in found else "accept"


@pytest.mark.parametrize(
    ("due", "today", "outcome"),
    [
        # Art. 46(3): validity that ended from 15 January to 30 June 2024 runs to 30 June 2024.
        ("13/01/2024", D(2024, 6, 15), "reject"),
        ("14/01/2024", D(2024, 6, 15), "review"),  # it ended on 15 January, or before it
        ("15/01/2024", D(2024, 6, 15), "accept"),
        ("16/01/2024", D(2024, 6, 15), "accept"),
        ("29/02/2024", D(2024, 6, 15), "accept"),
        ("14/01/2024", D(2024, 1, 14), "accept"),  # not ended yet
        ("14/01/2024", D(2024, 1, 15), "review"),
        ("15/01/2024", D(2024, 6, 29), "accept"),
        ("15/01/2024", D(2024, 6, 30), "accept"),
        ("15/01/2024", D(2024, 7, 1), "reject"),
        ("14/01/2024", D(2024, 7, 1), "reject"),
        ("29/06/2024", D(2024, 6, 30), "accept"),
        ("30/06/2024", D(2024, 7, 1), "reject"),
    ],
)
@pytest.mark.parametrize("kind", ["12_id_card_front", "chip_id_card_front", "chip_id_card_back"])
def test_citizen_cards_ended_early_in_2024_run_to_30_june(
    kind: str, due: str, today: dt.date, outcome: str
) -> None:
    assert grace_outcome(check_card(card(kind, due_date=due), today=today)) == outcome


@pytest.mark.parametrize(
    ("issued", "today", "outcome"),
    [
        # Decree 05/1999/ND-CP, Art. 2: no longer valid from the 15th anniversary of issue.
        ("14/01/2009", D(2024, 6, 15), "reject"),  # last valid 13 January 2024
        ("15/01/2009", D(2024, 6, 15), "review"),  # last valid 14 January: either reading
        ("16/01/2009", D(2024, 6, 15), "accept"),  # last valid 15 January: in the grace
        ("16/01/2009", D(2024, 6, 30), "accept"),
        ("16/01/2009", D(2024, 7, 1), "reject"),
        ("01/07/2009", D(2024, 6, 30), "accept"),  # last valid 30 June 2024: not ended
        ("01/07/2009", D(2024, 7, 1), "reject"),
    ],
)
def test_cmnds_ended_early_in_2024_run_to_30_june(
    issued: str, today: dt.date, outcome: str
) -> None:
    back = card("9_id_card_back", issue_date=issued, ethnicity="Kinh")
    assert grace_outcome(check_card(back, today=today)) == outcome


@pytest.mark.parametrize(
    ("due", "today"),
    [
        ("01/03/2024", D(2024, 6, 15)),
        ("15/01/2024", D(2024, 1, 16)),
        ("15/01/2024", D(2024, 6, 30)),
        ("29/06/2024", D(2024, 6, 30)),
    ],
)
def test_passports_have_no_grace(due: str, today: dt.date) -> None:
    # Art. 46(3) speaks of citizen identity cards and CMNDs: a passport expires on its day.
    pp = passport(dob="15/04/1990", due_date=due)
    found = [f for f in check_card(pp, today=today) if f.code == "date.expired"]
    assert found
    assert found[0].severity == "reject"
    assert assess(pp, today=today).verdict == "reject"


@pytest.mark.parametrize(
    ("issued", "today", "rejected"),
    [
        # Art. 45-46: from 1 July 2024 only the new identity card is issued.
        ("30/06/2024", D(2024, 9, 1), False),
        ("01/07/2024", D(2024, 9, 1), True),
        ("02/07/2024", D(2024, 9, 1), True),
        ("01/07/2024", D(2024, 7, 1), True),
    ],
)
def test_no_cmnd_is_issued_from_1_july_2024(issued: str, today: dt.date, rejected: bool) -> None:
    back = card("9_id_card_back", issue_date=issued, ethnicity="Kinh")
    found = [f for f in check_card(back, today=today) if f.code == "model.issued_too_late"]
    assert bool(found) is rejected
    if found:
        assert found[0].severity == "reject"
        assert found[0].rule == "Law 26/2023/QH15, Art. 45-46"
    front = card("9_id_card_front", id="012345678", name="NGUYỄN VĂN MẪU", dob="15/04/1980")
    pair = assess(front, back, today=today)
    assert (pair.verdict == "reject") is rejected, pair.reasons


# -- a front read alone: its expiry bounds its issue date ----------------------------------------


def front_alone(kind: str, dob: str, due: str, gender: str = "Nam") -> Card:
    year = int(dob[6:])
    return card(
        kind,
        id=f"001{gender_century_digit(gender, year)}{year % 100:02d}012345",
        name="NGUYỄN VĂN MẪU",
        dob=dob,
        gender=gender,
        nationality="Việt Nam",
        due_date=due,
    )


@pytest.mark.parametrize(
    ("kind", "dob", "due", "today", "verdict"),
    [
        # Law 59/2014/QH13, Art. 21: an expiry at 60 needs issue from the 38th birthday.
        ("chip_id_card_front", "15/04/1984", "15/04/2044", D(2022, 4, 14), "reject"),
        ("chip_id_card_front", "15/04/1984", "15/04/2044", D(2022, 4, 15), "accept"),
        ("chip_id_card_front", "15/04/1984", "15/04/2044", D(2022, 4, 16), "accept"),
        # No expiry needs issue from the 58th.
        ("chip_id_card_front", "15/04/1964", "Không thời hạn", D(2022, 4, 14), "reject"),
        ("chip_id_card_front", "15/04/1964", "Không thời hạn", D(2022, 4, 15), "accept"),
        ("chip_id_card_front", "15/04/1964", "KHÔNG THỜI HẠN", D(2022, 4, 16), "accept"),
        # An expiry at 40 needs issue from the 23rd; at 25 from the 14th (Art. 19).
        ("12_id_card_front", "15/04/1999", "15/04/2039", D(2022, 4, 14), "reject"),
        ("12_id_card_front", "15/04/1999", "15/04/2039", D(2022, 4, 15), "accept"),
        ("chip_id_card_front", "15/04/2008", "15/04/2033", D(2022, 4, 14), "reject"),
        ("chip_id_card_front", "15/04/2008", "15/04/2033", D(2022, 4, 15), "accept"),
        # A 31-year-old: no expiry, or an expiry at 60, cannot be; at 40 can.
        ("chip_id_card_front", "15/04/1995", "Không thời hạn", TODAY, "reject"),
        ("chip_id_card_front", "15/04/1995", "15/04/2055", TODAY, "reject"),
        ("chip_id_card_front", "15/04/1995", "15/04/2035", TODAY, "accept"),
        # Born 29 February 1984: 38 on 28 February or 1 March 2022, by reading (60 on 29
        # February 2044, a leap year).
        ("chip_id_card_front", "29/02/1984", "29/02/2044", D(2022, 2, 27), "reject"),
        ("chip_id_card_front", "29/02/1984", "29/02/2044", D(2022, 2, 28), "accept"),
        ("chip_id_card_front", "29/02/1984", "29/02/2044", D(2022, 3, 1), "accept"),
        # Born 29 February 1964: 58 on 28 February or 1 March 2022.
        ("chip_id_card_front", "29/02/1964", "Không thời hạn", D(2022, 2, 27), "reject"),
        ("chip_id_card_front", "29/02/1964", "Không thời hạn", D(2022, 2, 28), "accept"),
        ("chip_id_card_front", "29/02/1964", "Không thời hạn", D(2022, 3, 1), "accept"),
        # Within the model's years: no 2014-law card after 30 June 2024 (Art. 45), so no such
        # card without expiry for one who turned 58 after it.
        ("chip_id_card_front", "30/06/1966", "Không thời hạn", TODAY, "accept"),
        ("chip_id_card_front", "01/07/1966", "Không thời hạn", TODAY, "reject"),
        ("chip_id_card_front", "02/07/1966", "Không thời hạn", TODAY, "reject"),
        # Chip cards from 2021 (Circular 06/2021/TT-BCA), January uncertain: an expiry at 25
        # needs issue before 23.
        ("chip_id_card_front", "01/01/1998", "01/01/2023", D(2022, 6, 1), "reject"),
        ("chip_id_card_front", "02/01/1998", "02/01/2023", D(2022, 6, 1), "review"),
        ("chip_id_card_front", "01/02/1998", "01/02/2023", D(2022, 6, 1), "review"),
        ("chip_id_card_front", "02/02/1998", "02/02/2023", D(2022, 6, 1), "accept"),
        # Law 26/2023/QH15, Art. 21 for the 2024 card: the same bands, and 14 from birth to 12.
        ("chip_id_card_2024_front", "15/04/1995", "Không thời hạn", TODAY, "reject"),
        ("chip_id_card_2024_front", "15/04/1995", "15/04/2055", TODAY, "reject"),
        ("chip_id_card_2024_front", "15/04/1995", "15/04/2035", TODAY, "accept"),
        ("chip_id_card_2024_front", "25/11/2014", "25/11/2039", D(2026, 11, 24), "reject"),
        ("chip_id_card_2024_front", "25/11/2014", "25/11/2039", D(2026, 11, 25), "accept"),
        ("chip_id_card_2024_front", "15/04/2015", "15/04/2029", TODAY, "accept"),
        ("chip_id_card_2024_front", "15/04/1967", "Không thời hạn", TODAY, "accept"),
    ],
)
def test_a_front_read_alone_bounds_its_issue_date(
    kind: str, dob: str, due: str, today: dt.date, verdict: str
) -> None:
    result = assess(front_alone(kind, dob, due), today=today)
    assert result.verdict == verdict, result.reasons
    assert all(f.severity == "review" or f.rule for f in result.findings)


@pytest.mark.parametrize(
    ("issued", "today", "outcome"),
    [
        ("31/12/2020", D(2022, 1, 1), "reject"),
        ("01/01/2021", D(2022, 1, 1), "review"),
        ("31/01/2021", D(2022, 1, 1), "review"),
        ("01/02/2021", D(2022, 1, 1), "accept"),
    ],
)
def test_chip_cards_issued_in_january_2021_ask_for_review(
    issued: str, today: dt.date, outcome: str
) -> None:
    back = chip_back(
        issue_date=issued, person_number="001080012345", dob="15/04/1980", due_date="15/04/2040"
    )
    result = assess(back, today=today)
    assert result.verdict == outcome, result.reasons
    if outcome == "review":
        assert codes(result.findings) == {"model.first_days_uncertain"}


passport_holders = st.builds(
    lambda dob, at_issue, into, gender, number, with_issue: (
        dob,
        dob + dt.timedelta(days=at_issue),
        into,
        gender,
        number,
        with_issue,
    ),
    st.dates(D(1930, 1, 1), D(2020, 12, 31)),
    st.integers(1, 100 * 366),  # issued at every age, from the day after birth to 100
    st.floats(0, 1, exclude_max=True),  # how far into its validity today is
    st.sampled_from(["Nam", "Nữ"]),
    st.sampled_from(["personal", "cmnd", None]),
    st.booleans(),  # whether the answer carries the issue date
)


def consistent_passport(holder: tuple[Any, ...]) -> tuple[dict[str, Any], dt.date]:
    """A passport the law allows, and a day within its validity."""
    dob, issued, into, gender, number, with_issue = holder
    adult = issued >= years_after(dob, 14)
    due = years_after(issued, 10 if adult else 5)
    today = issued + dt.timedelta(days=int((due - issued).days * into))
    century = gender_century_digit(gender, dob.year)
    info: dict[str, Any] = {
        "id": f"C{dob.toordinal() % 10**7:07d}",
        "sur_name": "NGUYEN",
        "given_name": "VAN MAU",
        "dob": dob.strftime("%d/%m/%Y"),
        "gender": gender,
        "country": "VNM",
        "nationality": "VIỆT NAM",
        "due_date": due.strftime("%d/%m/%Y"),
    }
    if number == "personal":
        info["person_number"] = f"001{century}{dob.year % 100:02d}012345"
    elif number == "cmnd":
        info["person_number"] = "012345678"
    if with_issue:
        info["issue_date"] = issued.strftime("%d/%m/%Y")
    return info, today


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(passport_holders)
def test_consistent_passports_of_every_birth_year_and_age_are_accepted(
    holder: tuple[Any, ...],
) -> None:
    info, today = consistent_passport(holder)
    result = assess(card("passport", **info), today=today)
    assert result.verdict == "accept", (holder, result.reasons)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    passport_holders,
    st.sampled_from(["due_past_10_years", "no_expiry", "person_number", "dob_under_14"]),
    st.integers(1, 3650),
)
def test_single_field_mutations_of_a_passport_are_never_accepted(
    holder: tuple[Any, ...], mutation: str, amount: int
) -> None:
    info, today = consistent_passport(holder)
    issued = holder[1]
    start = issued if "issue_date" in info else today
    if mutation == "due_past_10_years":
        # Art. 7: no passport runs over 10 years from its issue (today at the latest).
        info["due_date"] = (years_after(start, 10) + dt.timedelta(days=amount)).strftime("%d/%m/%Y")
    elif mutation == "no_expiry":
        info["due_date"] = "Không thời hạn"
    elif mutation == "person_number":
        # Neither 12 digits nor a 9-digit CMND number (Art. 6(3)).
        wrong = ("01234567", "0123456789", "01234567890", "01234567X", "00109001234X")
        info["person_number"] = wrong[amount % len(wrong)]
    else:
        # Under 14 at issue, with 10 years: over the 8 any passport issued under 14 can run.
        if "issue_date" not in info or issued < years_after(holder[0], 14):
            return  # without the issue date, the holder may have been 14 by then
        info["dob"] = (issued - dt.timedelta(days=amount)).strftime("%d/%m/%Y")
    result = assess(card("passport", **info), today=today)
    assert result.verdict != "accept", (holder, mutation, info)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dates(D(1930, 1, 1), D(2020, 12, 31)),
    st.dates(D(2016, 1, 1), D(2030, 12, 31)),
    st.sampled_from(["chip_id_card_front", "12_id_card_front", "chip_id_card_2024_front"]),
    st.sampled_from([(60, 38), (None, 58), (40, 23)]),
)
def test_a_front_alone_with_an_expiry_its_holder_is_too_young_for_is_never_accepted(
    dob: dt.date, today: dt.date, kind: str, band: tuple[int | None, int]
) -> None:
    at, needs = band
    if today >= dt.date(dob.year + needs, 2, 28) or dob >= today:
        return  # old enough on some reading: the front alone cannot tell
    due = "Không thời hạn" if at is None else years_after(dob, at).strftime("%d/%m/%Y")
    result = assess(front_alone(kind, dob.strftime("%d/%m/%Y"), due), today=today)
    assert result.verdict != "accept", (dob, today, kind, due, result.reasons)


def test_odd_inputs_end_in_a_verdict_not_an_exception() -> None:
    # A birth date at the end of the calendar, on a card whose bands count from birth.
    for kind in ("chip_id_card_2024_front", "chip_id_card_2024_back", "chip_id_card_front"):
        odd = card(kind, id="001899012345", gender="Nam", dob="31/12/9999", due_date="31/12/9999")
        assert assess(odd, today=TODAY).verdict == "reject"
    # A datetime for today is taken as its date.
    moment = dt.datetime(2026, 11, 25, 10, 0)
    assert assess(passport(), today=moment).verdict == "accept"
    assert assess(chip_front(), chip_back(), today=moment).verdict == "accept"


@pytest.mark.parametrize(
    "text",
    [
        "Không thời hạn",
        "KHÔNG THỜI HẠN",
        "Không  thời hạn.",
        " không thời hạn ",
        unicodedata.normalize("NFD", "Không thời hạn"),
    ],
)
def test_no_expiry_is_read_in_any_spelling(text: str) -> None:
    front = chip_front(id="001060012345", dob="01/01/1960", due_date="Không thời hạn")
    back = chip_back(
        person_number="001060012345", dob="01/01/1960", issue_date="01/01/2022", due_date=text
    )
    assert assess(front, back, today=TODAY).verdict == "accept"
    assert codes(check_card(passport(due_date=text), today=TODAY)) == {"passport.validity"}


def test_a_date_in_another_scripts_digits_asks_for_review() -> None:
    front = chip_front(dob="١٥/٠٤/١٩٩٩")
    found = [f for f in check_card(front, today=TODAY) if f.code == "date.unreadable"]
    assert [f.fields for f in found] == [("dob",)]


@pytest.mark.parametrize(
    ("kind", "due"),
    [
        ("chip_id_card_back", "Không thời hạn"),
        ("chip_id_card_back", "15/04/2055"),
        ("chip_id_card_2024_back", "Không thời hạn"),
        ("chip_id_card_2024_back", "15/04/2055"),
    ],
)
def test_an_expiry_the_holder_is_too_young_for_is_rejected_whatever_the_issue_date(
    kind: str, due: str
) -> None:
    # A 31-year-old: no issue date makes an expiry at 60, or none, possible (Art. 21).
    back = card(
        kind, issue_date="10/07/2024" if "2024" in kind else "10/07/2022",
        person_number="001095012345", dob="15/04/1995", gender="Nam", due_date=due,
    )  # fmt: skip
    found = [f for f in check_card(back, today=TODAY) if f.code == "date.expiry_age"]
    assert [f.severity for f in found] == ["reject"]
    assert found[0].rule.endswith("Art. 21")


@pytest.mark.parametrize(
    ("dob", "due", "said"),
    [
        ("15/04/2005", "15/04/2045", "due_date at 40 needs the card issued from the holder's 23rd"),
        ("15/04/1995", "15/04/2055", "due_date at 60 needs the card issued from the holder's 38th"),
        ("15/04/1995", "Không thời hạn", "due_date 'no expiry' needs the card issued from the "
         "holder's 58th"),
        ("15/04/2014", "15/04/2039", "due_date at 25 needs the card issued from the holder's 14th"),
    ],
)  # fmt: skip
def test_an_expiry_too_early_in_life_says_which_birthday_it_needs(
    dob: str, due: str, said: str
) -> None:
    found = [
        f
        for f in check_card(front_alone("chip_id_card_front", dob, due), today=TODAY)
        if f.code == "date.expiry_age"
    ]
    assert [f.message for f in found] == [f"{said} birthday, which is still to come"]
