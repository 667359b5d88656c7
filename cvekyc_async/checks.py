"""Trust checks the service does not make, and a verdict: accept, review or reject.

Pure functions of the fields read; no network. Run them all with ``assess(front, back)`` or
``ExtractionResult.assess()``::

    res = await client.extract_cards("front.jpg", "back.jpg")
    verdict = res.assess()
    verdict.verdict            # "accept" | "review" | "reject"
    verdict.findings           # what was found, each with a code, a severity and the fields

Severities: ``reject`` for what a genuine document cannot show (an ID number that contradicts the
birth date, a back that belongs to another card, an expired document, a card model issued
before it existed); ``review`` for what a person should look at (a low confidence, a missing
field, a service warning, an expiry that does not follow the usual rule, a code that may be a
country's). Findings that apply a legal rule name it in ``rule``.

The rules (each also cited where it is applied):

- 12-digit personal number: Circular 07/2016/TT-BCA, Art. 7 (as amended by Circular
  59/2021/TT-BCA): province of birth registration, gender and century, year of birth. A birth
  registered abroad may carry a country code (Decree 137/2015/ND-CP, Art. 13): review.
- Citizen identity cards (Law on Citizen Identification 2014, No. 59/2014/QH13): issued from
  1 January 2016 (Art. 39) to citizens from 14 (Art. 19), renewed at 25, 40 and 60 (Art. 21); the
  chip card from 2021 (Circular 06/2021/TT-BCA); none issued after 30 June 2024, when the Law on
  Identification 2023 came into force (No. 26/2023/QH15, Art. 45).
- Identity cards of 1 July 2024 (Law on Identification 2023, No. 26/2023/QH15): renewed at 14, 25,
  40 and 60 (Art. 21(1)); a card issued within 2 years before one of these ages is valid until
  the next (Art. 21(2)); from 58, no expiry.
- CMND: valid 15 years from issue (Decree 05/1999/ND-CP, Art. 2); every CMND void after
  31 December 2024 (Law 26/2023/QH15, Art. 46(2)); none issued from 1 July 2024 (Art. 45-46).
- A citizen identity card or CMND whose validity ended from 15 January to 30 June 2024 stays
  valid to 30 June 2024 (Law 26/2023/QH15, Art. 46(3)); passports and other documents do not.
- A front read alone (no issue date) bounds the issue date through its expiry: the expiry a
  card shows needs an issue date in the age band that gives it (Art. 21 of either law), on or
  before today and while its model was issued.
- Passports (Law on Exit and Entry of Vietnamese Citizens 2019, No. 49/2019/QH14, Art. 7):
  ordinary passports run 10 years from issue (5 under 14), diplomatic and official ones 1 to 5
  years plus one extension of at most 3; so none runs over 10 years from its issue, nor over 8
  when issued under 14. A passport may show the CMND number (9 digits) in place of the personal
  identification number (Art. 6(3)).
- Passport number: a letter and 7 digits; a lower-case letter is an OCR slip (review).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

import msgspec

from ._models import WARNING_MESSAGES, Card, Info, parse_date
from ._redact import safe_name

__all__ = [
    "CCCD_FIRST_ISSUE",
    "CHIP_CERTAIN_FROM",
    "CHIP_FIRST_ISSUE",
    "CITIZEN_ID_PROVINCES",
    "CMND_LAST_VALID_DAY",
    "LAW_2014_LAST_ISSUE",
    "LAW_2023_FIRST_ISSUE",
    "Assessment",
    "Finding",
    "assess",
    "assess_cards",
    "check_card",
    "check_pair",
    "expected_due_date",
]

Severity = Literal["review", "reject"]
Verdict = Literal["accept", "review", "reject"]

# Province codes that open a 12-digit citizen ID number: the place of birth registration.
# Circular 07/2016/TT-BCA, Appendix I (codes of the 63 provinces and centrally-run cities).
CITIZEN_ID_PROVINCES = frozenset(
    f"{code:03d}"
    for code in (
        1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33,
        34, 35, 36, 37, 38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64,
        66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
    )
)  # fmt: skip
# ASCII digits: \d would take other scripts' digits too.
_TWELVE = re.compile(r"[0-9]{12}")
_NINE = re.compile(r"[0-9]{9}")
_PASSPORT = re.compile(r"[A-Z][0-9]{7}")
_NO_EXPIRY = ("không thời hạn", "khong thoi han", "không có thời hạn")
_MALE, _FEMALE = ("nam", "male", "m"), ("nữ", "nu", "female", "f")
_CITIZEN_CARDS = {"12_id_card_front", "chip_id_card_front", "chip_id_card_2024_front"}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "9_id_card_front": ("id", "name", "dob"),
    "12_id_card_front": ("id", "name", "dob", "gender", "due_date"),
    "chip_id_card_front": ("id", "name", "dob", "gender", "due_date"),
    "9_id_card_back": ("issue_date",),
    "12_id_card_back": ("issue_date",),
    "chip_id_card_back": ("issue_date", "person_number", "dob", "gender", "due_date"),
    "chip_id_card_2024_front": ("id", "name", "dob", "gender"),
    "chip_id_card_2024_back": ("issue_date", "person_number", "dob", "gender", "due_date"),
    "passport": ("id", "sur_name", "given_name", "dob", "gender", "due_date"),
}
_OLDEST = 120

# The rules' sources, as findings and the README cite them.
RULE_ID_NUMBER = "Circular 07/2016/TT-BCA, Art. 7 (Circular 59/2021/TT-BCA)"
RULE_ABROAD = "Decree 137/2015/ND-CP, Art. 13"
RULE_2014_IN_FORCE = "Law 59/2014/QH13, Art. 39"
RULE_2014_AGE = "Law 59/2014/QH13, Art. 19"
RULE_2014_RENEWAL = "Law 59/2014/QH13, Art. 21"
RULE_CHIP_MODEL = "Circular 06/2021/TT-BCA"
RULE_2023_IN_FORCE = "Law 26/2023/QH15, Art. 45"
RULE_2023_RENEWAL = "Law 26/2023/QH15, Art. 21"
RULE_CMND_VALIDITY = "Decree 05/1999/ND-CP, Art. 2"
RULE_CMND_VOID = "Law 26/2023/QH15, Art. 46(2)"
RULE_CMND_LAST = "Law 26/2023/QH15, Art. 45-46"
RULE_GRACE = "Law 26/2023/QH15, Art. 46(3)"
RULE_PASSPORT_VALIDITY = "Law 49/2019/QH14, Art. 7"
RULE_PASSPORT_NUMBER = "Law 49/2019/QH14, Art. 6(3)"

#: First day a card model could be issued, and the last (``None``: still issued).
CCCD_FIRST_ISSUE = dt.date(2016, 1, 1)  # Law 59/2014/QH13 in force (Art. 39)
CHIP_FIRST_ISSUE = dt.date(2021, 1, 1)  # the chip card's form (Circular 06/2021/TT-BCA)
# The first day chip cards were issued in January 2021 is not in the circular: an issue date in
# January 2021 asks for review, from February it is certain.
CHIP_CERTAIN_FROM = dt.date(2021, 2, 1)
LAW_2014_LAST_ISSUE = dt.date(2024, 6, 30)  # the 2023 law in force on 1 July 2024 (Art. 45)
LAW_2023_FIRST_ISSUE = dt.date(2024, 7, 1)
CMND_LAST_VALID_DAY = dt.date(2024, 12, 31)  # Law 26/2023/QH15, Art. 46(2)
CMND_YEARS = 15  # Decree 05/1999/ND-CP, Art. 2
GRACE_FROM = dt.date(2024, 1, 15)  # Law 26/2023/QH15, Art. 46(3): valid to 30 June 2024
GRACE_TO = dt.date(2024, 6, 30)
CMND_MIN_AGE = 14  # Decree 05/1999/ND-CP, Art. 1
# Law 49/2019/QH14, Art. 7: an ordinary passport runs 10 years from issue to a holder of 14 or
# more (7(2)(a)), 5 years under 14 (7(2)(b)), never extended; diplomatic and official passports
# 1 to 5 years, extended once by at most 3 (7(1)).
PASSPORT_YEARS = 10
PASSPORT_CHILD_YEARS = 5
PASSPORT_OTHER_YEARS = 8
PASSPORT_ADULT_AGE = 14

_MILESTONES_2014 = (25, 40, 60)
_MILESTONES_2023 = (14, 25, 40, 60)
_CARDS_2014 = {"12_id_card_front", "12_id_card_back", "chip_id_card_front", "chip_id_card_back"}
_CARDS_2023 = {"chip_id_card_2024_front", "chip_id_card_2024_back"}
_CMND = {"9_id_card_front", "9_id_card_back"}
# Law 26/2023/QH15, Art. 46(3) covers citizen identity cards and CMNDs only.
_GRACE_CARDS = _CARDS_2014 | _CMND
# When each model's issue dates begin and end, and the rule that says so.
_MODEL_DATES: dict[str, tuple[dt.date, dt.date | None, str]] = {
    "12_id_card": (CCCD_FIRST_ISSUE, LAW_2014_LAST_ISSUE, RULE_2014_IN_FORCE),
    "chip_id_card": (CHIP_FIRST_ISSUE, LAW_2014_LAST_ISSUE, RULE_CHIP_MODEL),
    "chip_id_card_2024": (LAW_2023_FIRST_ISSUE, None, RULE_2023_IN_FORCE),
}


def _documented_fields() -> frozenset[str]:
    """The field names the answers' structs declare, for every document type."""
    names: set[str] = set()
    classes: list[type[Info]] = [Info]
    while classes:
        cls = classes.pop()
        names.update(cls.__struct_fields__)
        classes.extend(cls.__subclasses__())
    return frozenset(names)


_DOCUMENTED_FIELDS = _documented_fields()


class Finding(msgspec.Struct, frozen=True):
    """One thing a check found."""

    code: str
    """What was checked, e.g. ``id.birth_year``, ``pair.person_number``, ``date.expired``."""
    severity: Severity
    """``reject`` (a genuine document cannot show this) or ``review`` (a person should look)."""
    message: str
    """What is wrong, in words a reviewer can act on."""
    fields: tuple[str, ...] = ()
    """The fields concerned."""
    rule: str = ""
    """The legal text the check applies (``Law 26/2023/QH15, Art. 21``), when it applies one."""


class Assessment(msgspec.Struct, frozen=True):
    """The verdict on a document (or a front and back pair) and the findings behind it."""

    verdict: Verdict
    """``accept`` with no findings, ``review`` with only review findings, else ``reject``."""
    findings: tuple[Finding, ...] = ()
    """Everything found, rejects first."""

    @property
    def reasons(self) -> list[str]:
        """The findings' messages."""
        return [f.message for f in self.findings]


def _fold(text: str) -> str:
    """Upper case without diacritics, as the machine-readable zone writes names."""
    text = text.replace("Đ", "D").replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).upper().split())


def _gender(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    folded = text.strip().lower()
    if folded in _MALE:
        return "male"
    if folded in _FEMALE:
        return "female"
    return None


def _confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return 0.0  # a number no confidence can be: as good as none
    return number if math.isfinite(number) else 0.0


def _is_no_expiry(text: object) -> bool:
    """Whether an expiry field says "no expiry", in any case, Unicode form or spacing, with or
    without a closing full stop."""
    if not isinstance(text, str):
        return False
    folded = " ".join(unicodedata.normalize("NFC", text).lower().split()).rstrip(".")
    return folded in _NO_EXPIRY


def _birthday(dob: dt.date, age: int) -> tuple[dt.date, ...]:
    """The day someone born on ``dob`` turns ``age`` (both readings for a 29 February birth)."""
    year = dob.year + age
    if year > dt.MAXYEAR:
        return (dt.date.max,)  # a dob that far ahead is rejected on its own
    try:
        return (dob.replace(year=year),)
    except ValueError:
        return (dt.date(year, 2, 28), dt.date(year, 3, 1))


def expected_due_date(dob: dt.date, issued: dt.date, *, law: int = 2014) -> dt.date | None:
    """The expiry an identity card issued on ``issued`` should carry, or ``None`` for none.

    Args:
        dob: the holder's date of birth.
        issued: the card's date of issue.
        law: ``2014`` for a citizen identity card (Law 59/2014/QH13, Art. 21: renewed at 25, 40
            and 60), ``2023`` for a card issued from 1 July 2024 (Law 26/2023/QH15, Art. 21:
            renewed at 14, 25, 40 and 60). Under both, a card issued within two years before
            one of those ages is valid until the next one, and one issued from 58 does not
            expire.
    """
    for age in _MILESTONES_2023 if law == 2023 else _MILESTONES_2014:
        if issued < _birthday(dob, age - 2)[0]:
            return _birthday(dob, age)[-1]
    return None


def _expected_readings(dob: dt.date, issued: dt.date, law: int) -> list[dt.date | None]:
    """The expiries a card may carry: for a 29 February birth, the 2-year threshold falls on 28
    February or 1 March, and each reading gives its own answer."""
    out = [expected_due_date(dob, issued, law=law)]
    if dob.month == 2 and dob.day == 29 and issued.month in (2, 3):
        later = issued - dt.timedelta(days=1)  # as if the threshold were a day later
        out.append(expected_due_date(dob, later, law=law))
    return out


def _check_citizen_id(number: str, field: str, info: Info, out: list[Finding]) -> None:
    """The 12-digit citizen ID number: Circular 07/2016/TT-BCA, Article 7 (as amended by
    Circular 59/2021/TT-BCA): 3 digits province of birth registration, 1 digit gender and
    century of birth (20th century: male 0, female 1; 21st: 2, 3; 22nd: 4, 5; 23rd: 6, 7;
    24th: 8, 9), 2 digits the last two of the year of birth, 6 random digits."""
    if not _TWELVE.fullmatch(number):
        out.append(
            Finding("id.format", "reject", f"{field} is not 12 digits", (field,), RULE_ID_NUMBER)
        )
        return
    if number[:3] not in CITIZEN_ID_PROVINCES:
        # A birth registered abroad may carry a country's code: a person should look.
        out.append(
            Finding(
                "id.province",
                "review",
                f"{field} does not start with a province code (a birth registered abroad may "
                "carry a country code)",
                (field,),
                RULE_ABROAD,
            )
        )
    dob = info.date("dob")
    gender = _gender(info.get("gender"))
    digit = int(number[3])
    century, female = divmod(digit, 2)
    if dob is not None:
        if (dob.year - 1900) // 100 != century:
            out.append(
                Finding(
                    "id.century",
                    "reject",
                    f"{field}'s century digit (the 4th) does not match the year of birth",
                    (field, "dob"),
                    RULE_ID_NUMBER,
                )
            )
        if number[4:6] != f"{dob.year % 100:02d}":
            out.append(
                Finding(
                    "id.birth_year",
                    "reject",
                    f"{field}'s digits 5-6 do not match the year of birth",
                    (field, "dob"),
                    RULE_ID_NUMBER,
                )
            )
    if gender is not None and (gender == "female") != bool(female):
        out.append(
            Finding(
                "id.gender",
                "reject",
                f"{field}'s gender digit (the 4th) does not match gender",
                (field, "gender"),
                RULE_ID_NUMBER,
            )
        )


def _check_dates(card: Card, today: dt.date, out: list[Finding]) -> None:
    info = card.info
    dates: dict[str, dt.date] = {}
    for field in ("dob", "issue_date", "due_date"):
        raw = info.get(field)
        if raw is None or (field == "due_date" and _is_no_expiry(raw)):
            continue
        # A printed date has ASCII digits; another script's are an OCR slip to look at.
        parsed = parse_date(raw) if isinstance(raw, str) and raw.isascii() else None
        if parsed is None:
            out.append(Finding("date.unreadable", "review", f"{field} is not a date", (field,)))
        else:
            dates[field] = parsed
    dob, issued, due = dates.get("dob"), dates.get("issue_date"), dates.get("due_date")
    if dob is not None:
        if dob >= today:
            out.append(Finding("date.dob_future", "reject", "dob is not in the past", ("dob",)))
        elif today.year - dob.year > _OLDEST:
            out.append(
                Finding(
                    "date.dob_implausible",
                    "reject",
                    f"dob is over {_OLDEST} years ago",
                    ("dob",),
                )
            )
    if issued is not None:
        if issued > today:
            out.append(
                Finding(
                    "date.issue_future",
                    "reject",
                    "issue_date is in the future",
                    ("issue_date",),
                )
            )
        if dob is not None and issued <= dob:
            out.append(
                Finding(
                    "date.issue_before_birth",
                    "reject",
                    "issue_date is not after dob",
                    ("issue_date", "dob"),
                )
            )
    if due is not None:
        if issued is not None and due <= issued:
            out.append(
                Finding(
                    "date.due_before_issue",
                    "reject",
                    "due_date is not after issue_date",
                    ("due_date", "issue_date"),
                )
            )
        if due < today:
            # Art. 46(3)'s grace is for citizen identity cards and CMNDs, not passports.
            grace = _grace(due, today) if card.type in _GRACE_CARDS else "ended"
            if grace == "ended":
                out.append(
                    Finding(
                        "date.expired",
                        "reject",
                        "the document has expired (due_date is past)",
                        ("due_date",),
                    )
                )
            elif grace == "uncertain":
                out.append(_grace_uncertain(("due_date",)))
    if card.type in _CITIZEN_CARDS or card.type in ("chip_id_card_back", "chip_id_card_2024_back"):
        _check_expiry_rule(info, dob, issued, due, out, law=_law_of(card.type))
        _check_expiry_band(card.type, info, dob, due, today, out, issue_read=issued is not None)
    _check_model_dates(card.type, dob, issued, due, out)
    if card.type in _CMND:
        _check_cmnd(issued, today, out)
    if card.type == "passport":
        _check_passport(info, dob, issued, due, today, out)


def _grace(last_valid: dt.date, today: dt.date) -> Literal["valid", "uncertain", "ended"]:
    """Law 26/2023/QH15, Art. 46(3): a citizen identity card or CMND whose validity ended
    ("hết hạn sử dụng") from 15 January 2024 to before 30 June 2024 stays valid to the end of
    30 June 2024. ``last_valid`` is the last day the document was valid, and it has passed.

    A document valid to 14 January ended on 15 January under one reading of "ended from 15
    January", and before it under the other: a person decides ("uncertain")."""
    if today > GRACE_TO:
        return "ended"
    if GRACE_FROM <= last_valid <= GRACE_TO:
        return "valid"
    if last_valid == GRACE_FROM - dt.timedelta(days=1):
        return "uncertain"
    return "ended"


def _grace_uncertain(fields: tuple[str, ...]) -> Finding:
    return Finding(
        "date.grace_uncertain",
        "review",
        "the document's validity ended on the eve of 15/01/2024: read one way, Art. 46(3) keeps "
        "it valid to 30/06/2024; read the other, it has expired",
        fields,
        RULE_GRACE,
    )


def _check_expiry_band(
    card_type: str,
    info: Info,
    dob: dt.date | None,
    due: dt.date | None,
    today: dt.date,
    out: list[Finding],
    *,
    issue_read: bool,
) -> None:
    """An expiry bounds the issue date, so a card read without it (a front alone) is still
    checked, and an expiry the holder is too young for is rejected whatever the issue date read.

    Under Art. 21 of either law (Law 59/2014/QH13, Law 26/2023/QH15) each expiry comes from
    issue dates in one age band: under the 2014 law an expiry at 25 from issue at 14 to 23 (a
    card is issued from 14, Art. 19), at 40 from 23 to 38, at 60 from 38 to 58, none from 58;
    under the 2023 law also an expiry at 14 from birth to 12. The issue date is not in the
    future, and falls in the years the card's model was issued. A band's first day is taken on
    the earlier reading of a 29 February birthday and its last on the later one: either reading
    may be the law's.
    """
    if dob is None or dob >= today:
        return  # no birth date to count from (date.dob_future says so)
    law = _law_of(card_type)
    ages = _MILESTONES_2023 if law == 2023 else _MILESTONES_2014
    if _is_no_expiry(info.get("due_date")):
        band = len(ages)
    elif due is None:
        return
    else:
        found = [i for i, age in enumerate(ages) if due in _birthday(dob, age)]
        if not found:
            return  # not a milestone at all: date.expiry_rule asks for review
        band = found[0]
    rule = RULE_2023_RENEWAL if law == 2023 else RULE_2014_RENEWAL
    if band > 0:
        from_age = ages[band - 1] - 2
        first_day = _birthday(dob, from_age)[0]
    elif law == 2014:
        from_age, rule = 14, RULE_2014_AGE
        first_day = _birthday(dob, from_age)[0]
    else:
        from_age, first_day = 0, dob + dt.timedelta(days=1)
    shown = f"at {ages[band]}" if band < len(ages) else "'no expiry'"
    if first_day > today:
        out.append(
            Finding(
                "date.expiry_age",
                "reject",
                f"due_date {shown} needs the card issued from the holder's "
                f"{_ordinal(from_age)} birthday, which is still to come",
                ("due_date", "dob"),
                rule,
            )
        )
        return
    dates = _MODEL_DATES.get(card_type.rsplit("_", 1)[0])
    if dates is None or issue_read:
        return  # an issue date read is checked against the model's years as it is
    first, last, model_rule = dates
    if due is not None and due <= first:
        return  # model.due_too_early says so
    last_day = today if last is None else min(today, last)
    if band < len(ages):
        last_day = min(last_day, _birthday(dob, ages[band] - 2)[-1] - dt.timedelta(days=1))
    if max(first_day, first) > last_day:
        ended = last is not None and first_day > last
        until = "" if last is None else f" to {last:%d/%m/%Y}"
        out.append(
            Finding(
                "model.issue_window",
                "reject",
                f"due_date {shown} needs an issue date on which this card model was not issued "
                f"(from {first:%d/%m/%Y}{until}, and not after today)",
                ("due_date", "dob"),
                RULE_2023_IN_FORCE if ended else model_rule,
            )
        )
    elif first == CHIP_FIRST_ISSUE and last_day < CHIP_CERTAIN_FROM:
        out.append(_chip_first_days(("due_date", "dob")))


def _ordinal(number: int) -> str:
    """``23rd``, ``38th``: the ages the bands start at."""
    teen = 10 <= number % 100 <= 20
    suffix = "th" if teen else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _chip_first_days(fields: tuple[str, ...]) -> Finding:
    return Finding(
        "model.first_days_uncertain",
        "review",
        "the card was issued in January 2021, the chip card's first month: the first day it was "
        "issued is not in its circular",
        fields,
        RULE_CHIP_MODEL,
    )


def _check_passport(
    info: Info,
    dob: dt.date | None,
    issued: dt.date | None,
    due: dt.date | None,
    today: dt.date,
    out: list[Finding],
) -> None:
    """Law 49/2019/QH14, Art. 7: an ordinary passport runs 10 years from issue to a holder of 14
    or more, 5 years under 14, and is never extended (7(2)); a diplomatic or official passport
    runs 1 to 5 years and may be extended once by at most 3 (7(1)). So no passport runs over 10
    years from its issue, nor over 8 when issued under 14. The answer does not say which kind
    a passport is: one issued under 14 and valid 5 to 8 years asks for review.

    Without an issue date (the service does not read it), today is the latest it can be. A
    holder is 14 on either reading of a 29 February birthday."""
    field: tuple[str, ...] = ("due_date",)
    if _is_no_expiry(info.get("due_date")):
        out.append(
            Finding(
                "passport.validity",
                "reject",
                "due_date says no expiry: every passport has one",
                field,
                RULE_PASSPORT_VALIDITY,
            )
        )
        return
    if due is None:
        return
    start = today if issued is None else issued
    since = "today (the latest it can have been issued)" if issued is None else "issue_date"
    if issued is not None:
        field = ("due_date", "issue_date")
    if due > _birthday(start, PASSPORT_YEARS)[-1]:
        out.append(
            Finding(
                "passport.validity",
                "reject",
                f"due_date is more than {PASSPORT_YEARS} years after {since}: no passport is "
                "valid longer",
                field,
                RULE_PASSPORT_VALIDITY,
            )
        )
        return
    if dob is None or start >= _birthday(dob, PASSPORT_ADULT_AGE)[0]:
        return
    if due > _birthday(start, PASSPORT_OTHER_YEARS)[-1]:
        out.append(
            Finding(
                "passport.validity",
                "reject",
                f"due_date is more than {PASSPORT_OTHER_YEARS} years after {since}, when the "
                f"holder was under {PASSPORT_ADULT_AGE}: an ordinary passport issued under 14 "
                "runs 5 years, a diplomatic or official one at most 8",
                (*field, "dob"),
                RULE_PASSPORT_VALIDITY,
            )
        )
    elif due > _birthday(start, PASSPORT_CHILD_YEARS)[-1]:
        out.append(
            Finding(
                "passport.child_validity",
                "review",
                f"due_date is more than {PASSPORT_CHILD_YEARS} years after {since}, when the "
                f"holder was under {PASSPORT_ADULT_AGE}: only a diplomatic or official passport "
                "runs that long, and the answer does not say which kind this is",
                (*field, "dob"),
                RULE_PASSPORT_VALIDITY,
            )
        )


def _law_of(card_type: str) -> int:
    return 2023 if card_type in _CARDS_2023 else 2014


def _check_expiry_rule(
    info: Info,
    dob: dt.date | None,
    issued: dt.date | None,
    due: dt.date | None,
    out: list[Finding],
    *,
    law: int = 2014,
) -> None:
    """Law 59/2014/QH13, Art. 21 (renewal at 25, 40, 60) or Law 26/2023/QH15, Art. 21 (at 14,
    25, 40, 60): the expiry follows from the date of birth and the date of issue."""
    if dob is None:
        return
    rule = RULE_2023_RENEWAL if law == 2023 else RULE_2014_RENEWAL
    ages = _MILESTONES_2023 if law == 2023 else _MILESTONES_2014
    no_expiry = _is_no_expiry(info.get("due_date"))
    if issued is not None:
        expectations = _expected_readings(dob, issued, law)
        ok = any(
            no_expiry
            if expected is None
            else due is not None and due in _due_readings(dob, expected)
            for expected in expectations
        )
        if not ok:
            out.append(
                Finding(
                    "date.expiry_rule",
                    "review",
                    "due_date is not what the age milestones give for this dob and "
                    + ("issue_date (no expiry)" if expectations[0] is None else "issue_date"),
                    ("due_date", "issue_date", "dob"),
                    rule,
                )
            )
    elif due is not None and due not in {d for age in ages for d in _birthday(dob, age)}:
        shown = ", ".join(str(a) for a in ages[:-1]) + f" or {ages[-1]}"
        out.append(
            Finding(
                "date.expiry_rule",
                "review",
                f"due_date is not the birthday at {shown}",
                ("due_date", "dob"),
                rule,
            )
        )


def _check_model_dates(
    card_type: str,
    dob: dt.date | None,
    issued: dt.date | None,
    due: dt.date | None,
    out: list[Finding],
) -> None:
    """A card model is issued from a date (and, under the 2014 law, until 30 June 2024), and a
    2014-law citizen card from the age of 14."""
    family = card_type.rsplit("_", 1)[0]
    dates = _MODEL_DATES.get(family)
    if dates is None:
        return
    first, last, rule = dates
    if issued is not None:
        if issued < first:
            out.append(
                Finding(
                    "model.issued_too_early",
                    "reject",
                    f"issue_date is before this card model was first issued ({first:%d/%m/%Y})",
                    ("issue_date",),
                    rule,
                )
            )
        elif first == CHIP_FIRST_ISSUE and issued < CHIP_CERTAIN_FROM:
            out.append(_chip_first_days(("issue_date",)))
        if last is not None and issued > last:
            out.append(
                Finding(
                    "model.issued_too_late",
                    "reject",
                    f"issue_date is after {last:%d/%m/%Y}, when this card model was last issued "
                    "(the Law on Identification 2023 applies from 1 July 2024)",
                    ("issue_date",),
                    RULE_2023_IN_FORCE,
                )
            )
        if card_type in _CARDS_2014 and dob is not None and issued < _birthday(dob, 14)[0]:
            out.append(
                Finding(
                    "model.holder_under_14",
                    "reject",
                    "issue_date is before the holder was 14: citizen identity cards are issued "
                    "from 14",
                    ("issue_date", "dob"),
                    RULE_2014_AGE,
                )
            )
    elif due is not None and due <= first:
        out.append(
            Finding(
                "model.due_too_early",
                "reject",
                f"due_date is before this card model was first issued ({first:%d/%m/%Y})",
                ("due_date",),
                rule,
            )
        )


def _check_cmnd(issued: dt.date | None, today: dt.date, out: list[Finding]) -> None:
    """Decree 05/1999/ND-CP, Art. 2: a CMND is valid 15 years from its issue, so it is no longer
    valid from the 15th anniversary of its issue; Law 26/2023/QH15, Art. 46(2): every CMND is
    void after 31 December 2024; Art. 45-46: from 1 July 2024 only the new identity card is
    issued, so a CMND issued from that day cannot be genuine."""
    if issued is not None and issued >= LAW_2023_FIRST_ISSUE:
        out.append(
            Finding(
                "model.issued_too_late",
                "reject",
                f"issue_date is on or after {LAW_2023_FIRST_ISSUE:%d/%m/%Y}: from then only the "
                "new identity card is issued, not a CMND",
                ("issue_date",),
                RULE_CMND_LAST,
            )
        )
    if today > CMND_LAST_VALID_DAY:
        out.append(
            Finding(
                "cmnd.void",
                "reject",
                f"a CMND is no longer valid after {CMND_LAST_VALID_DAY:%d/%m/%Y}",
                (),
                RULE_CMND_VOID,
            )
        )
    elif issued is not None and today >= (ended := _birthday(issued, CMND_YEARS)[-1]):
        grace = _grace(ended - dt.timedelta(days=1), today)
        if grace == "ended":
            out.append(
                Finding(
                    "cmnd.expired",
                    "reject",
                    f"the CMND was issued over {CMND_YEARS} years ago (issue_date)",
                    ("issue_date",),
                    RULE_CMND_VALIDITY,
                )
            )
        elif grace == "uncertain":
            out.append(_grace_uncertain(("issue_date",)))


def _due_readings(dob: dt.date, expected: dt.date) -> set[dt.date]:
    return set(_birthday(dob, expected.year - dob.year)) | {expected}


def check_card(
    card: Card, *, today: dt.date | None = None, min_confidence: float = 0.8
) -> list[Finding]:
    """Every check that one card allows on its own.

    Args:
        card: a card from an answer.
        today: the date to judge expiry and birth dates against (default: today).
        min_confidence: fields the service read with less confidence are flagged for review.
    """
    if isinstance(today, dt.datetime):
        today = today.date()  # a datetime is a date too, but does not compare with one
    today = today or dt.date.today()
    info, out = card.info, []
    for field in _REQUIRED.get(card.type, ()):
        if info.get(field) is None:
            out.append(Finding("field.missing", "review", f"{field} was not read", (field,)))
    if card.valid is False:
        # The table's text, not the service's own: a message never quotes what an answer held.
        known = WARNING_MESSAGES.get(card.invalid_code) if card.invalid_code else None
        warning = known or "the service flagged the document"
        code = f" (warning {card.invalid_code})" if card.invalid_code is not None else ""
        out.append(Finding("service.warning", "review", f"{warning}{code}", ()))
    for name, value in info.to_dict().items():
        confidence = _confidence(value) if name.endswith("_confidence") else None
        if confidence is not None and confidence < min_confidence:
            field = name.removesuffix("_confidence")
            # A field name comes from the service, and a hostile or broken one could put a
            # value in it (``nguyen_van_mau_confidence``): shown only when documented.
            documented = field in _DOCUMENTED_FIELDS
            out.append(
                Finding(
                    "confidence.low",
                    "review",
                    f"{field if documented else 'a field'} read with confidence {confidence:.2f}",
                    (field if documented else "<field>",),
                )
            )
    number = info.get("id")
    if card.type in _CITIZEN_CARDS and isinstance(number, str):
        _check_citizen_id(number.strip(), "id", info, out)
    elif card.type in ("chip_id_card_back", "chip_id_card_2024_back") and isinstance(
        info.get("person_number"), str
    ):
        _check_citizen_id(info.get("person_number").strip(), "person_number", info, out)
    elif (
        card.type == "9_id_card_front"
        and isinstance(number, str)
        and not _NINE.fullmatch(number.strip())
    ):
        out.append(Finding("id.format", "reject", "CMND number (id) is not 9 digits", ("id",)))
    elif card.type == "passport":
        if isinstance(number, str) and not _PASSPORT.fullmatch(number.strip()):
            if _PASSPORT.fullmatch(number.strip().upper()):
                # "c1234567": the letter read in lower case, an OCR slip rather than a forgery.
                out.append(
                    Finding(
                        "passport.number_case",
                        "review",
                        "passport number (id) starts with a lower-case letter",
                        ("id",),
                    )
                )
            else:
                out.append(
                    Finding(
                        "passport.number",
                        "reject",
                        "passport number (id) is not a letter and 7 digits",
                        ("id",),
                    )
                )
        person = info.get("person_number")
        if isinstance(person, str) and person.strip():
            if _NINE.fullmatch(person.strip()):
                pass  # Law 49/2019/QH14, Art. 6(3): the CMND number in place of the personal one
            elif _TWELVE.fullmatch(person.strip()):
                _check_citizen_id(person.strip(), "person_number", info, out)
            else:
                out.append(
                    Finding(
                        "id.format",
                        "reject",
                        "person_number is neither 12 digits nor a 9-digit CMND number",
                        ("person_number",),
                        RULE_PASSPORT_NUMBER,
                    )
                )
    _check_dates(card, today, out)
    return out


def check_pair(front: Card, back: Card) -> list[Finding]:
    """Front and back of one chip card must agree: the back's MRZ repeats the front."""
    out: list[Finding] = []
    if front.type.endswith("_back") or back.type.endswith("_front"):
        out.append(
            Finding(
                "pair.order",
                "review",
                f"front is {safe_name(front.type, 'an unknown type')}, "
                f"back is {safe_name(back.type, 'an unknown type')}",
                (),
            )
        )
        return out
    family_front = front.type.rsplit("_", 1)[0]
    family_back = back.type.rsplit("_", 1)[0]
    if family_front != family_back:
        out.append(
            Finding(
                "pair.type",
                "reject",
                f"a {safe_name(front.type, 'card of an unknown type')} with a "
                f"{safe_name(back.type, 'card of an unknown type')}: not one card",
                (),
            )
        )
        return out
    if front.type not in ("chip_id_card_front", "chip_id_card_2024_front"):
        return out
    f, b = front.info, back.info
    pairs = (
        ("id", "person_number", "pair.person_number"),
        ("dob", "dob", "pair.dob"),
        ("due_date", "due_date", "pair.due_date"),  # the 2024 front has none: not compared
    )
    for front_field, back_field, code in pairs:
        a, z = f.get(front_field), b.get(back_field)
        if a is not None and z is not None and not _same_value(front_field, a, z):
            out.append(
                Finding(
                    code,
                    "reject",
                    f"front {front_field} differs from back {back_field}",
                    (front_field, back_field),
                )
            )
    g1, g2 = _gender(f.get("gender")), _gender(b.get("gender"))
    if g1 and g2 and g1 != g2:
        out.append(Finding("pair.gender", "reject", "front and back gender differ", ("gender",)))
    name, sur, given = f.get("name"), b.get("sur_name"), b.get("given_name")
    if isinstance(name, str) and isinstance(sur, str) and isinstance(given, str):
        mrz = _fold(f"{sur} {given}".replace("<", " "))
        if _fold(name) != mrz:
            out.append(
                Finding(
                    "pair.name",
                    "reject",
                    "front name differs from the back's sur_name and given_name",
                    ("name", "sur_name", "given_name"),
                )
            )
    return out


def _same_value(field: str, a: object, z: object) -> bool:
    """Whether two sides show the same value: dates as dates (``5/4/1999`` = ``05-04-1999``),
    no-expiry texts in any case, numbers as written."""
    if field in ("dob", "due_date"):
        if _is_no_expiry(str(a).lower()) or _is_no_expiry(str(z).lower()):
            return _is_no_expiry(str(a).lower()) and _is_no_expiry(str(z).lower())
        da = parse_date(a) if isinstance(a, str) else None
        dz = parse_date(z) if isinstance(z, str) else None
        if da is not None and dz is not None:
            return da == dz
    return str(a).strip() == str(z).strip()


def _verdict(findings: Iterable[Finding]) -> Assessment:
    ordered = sorted(findings, key=lambda f: f.severity != "reject")
    if any(f.severity == "reject" for f in ordered):
        return Assessment("reject", tuple(ordered))
    return Assessment("review" if ordered else "accept", tuple(ordered))


def assess(
    front: Card,
    back: Card | None = None,
    *,
    today: dt.date | None = None,
    min_confidence: float = 0.8,
) -> Assessment:
    """Run every check on a card, or on a front and back pair, and give the verdict.

    Args:
        front: a card (any document type).
        back: the back of the same card, if read.
        today: the date to judge expiry and birth dates against (default: today).
        min_confidence: below this, a field's confidence is flagged for review (default 0.8).
    """
    findings = check_card(front, today=today, min_confidence=min_confidence)
    if back is not None:
        back_findings = check_card(back, today=today, min_confidence=min_confidence)
        findings += [f for f in back_findings if f not in findings]
        findings += check_pair(front, back)
        if front.type == "9_id_card_front" and back.type == "9_id_card_back":
            findings += [f for f in _cmnd_pair(front, back) if f not in findings]
        if front.type in _CITIZEN_CARDS:
            # The front shows dob and expiry, the back the issue date: the rule needs all three.
            merged = _merged_dates(front, back)
            if merged is not None:
                rule: list[Finding] = []
                # The 2024 card prints its expiry on the back only.
                shown = front.info if front.info.get("due_date") is not None else back.info
                _check_expiry_rule(shown, *merged, rule, law=_law_of(front.type))
                _check_model_dates(back.type, *merged, rule)
                findings += [f for f in rule if f not in findings]
    return _verdict(findings)


def _cmnd_pair(front: Card, back: Card) -> list[Finding]:
    """A CMND's front shows the birth date, its back the issue date: issued from 14 (Decree
    05/1999/ND-CP, Art. 1)."""
    dob, issued = front.info.date("dob"), back.info.date("issue_date")
    if dob is None or issued is None or issued >= _birthday(dob, CMND_MIN_AGE)[0]:
        return []
    return [
        Finding(
            "model.holder_under_14",
            "reject",
            "issue_date is before the holder was 14: a CMND is issued from 14",
            ("issue_date", "dob"),
            "Decree 05/1999/ND-CP, Art. 1",
        )
    ]


def _merged_dates(
    front: Card, back: Card
) -> tuple[dt.date | None, dt.date | None, dt.date | None] | None:
    issued = back.info.date("issue_date")
    if issued is None:
        return None
    due = front.info.date("due_date") or back.info.date("due_date")
    return front.info.date("dob") or back.info.date("dob"), issued, due


def assess_cards(
    cards: list[Card], *, today: dt.date | None = None, min_confidence: float = 0.8
) -> Assessment:
    """The verdict on all the cards of one answer: a front and back pair when there are two
    sides of one card, otherwise each card on its own; the worst verdict wins."""
    if not cards:
        return Assessment("reject", (Finding("document.none", "reject", "no document was read"),))
    if len(cards) == 2 and cards[0].type.endswith("_front") and cards[1].type.endswith("_back"):
        return assess(cards[0], cards[1], today=today, min_confidence=min_confidence)
    findings: list[Finding] = []
    for card in cards:
        for finding in assess(card, today=today, min_confidence=min_confidence).findings:
            if finding not in findings:
                findings.append(finding)
    return _verdict(findings)
