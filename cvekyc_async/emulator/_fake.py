"""Fake people and the cards they would hold: the ground truth of specimens and synthetic answers.

Every name and address here is invented, and every number is random, but each card is internally
consistent as a real one is: a 12-digit citizen ID number starts with the province code of birth
registration, then the gender-and-century digit and the two last digits of the birth year; a chip
card's back repeats the front in its machine-readable zone; expiry follows the age milestones.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Person",
    "card_truth",
    "chip_due_date",
    "fake_person",
    "issue_window",
    "issued_for",
    "mrz_name",
]

# (code of birth registration, province, administrative code of the province)
PROVINCES: tuple[tuple[str, str, str], ...] = (
    ("001", "Hà Nội", "01"),
    ("031", "Hải Phòng", "31"),
    ("036", "Nam Định", "36"),
    ("038", "Thanh Hóa", "38"),
    ("040", "Nghệ An", "40"),
    ("048", "Đà Nẵng", "48"),
    ("079", "Hồ Chí Minh", "79"),
    ("092", "Cần Thơ", "92"),
)
_SURNAMES = ("NGUYỄN", "TRẦN", "LÊ", "PHẠM", "HOÀNG", "PHAN", "VŨ", "ĐẶNG", "BÙI", "ĐỖ")
_MIDDLE = {"Nam": ("VĂN", "HỮU", "ĐỨC", "QUANG", "MINH"), "Nữ": ("THỊ", "NGỌC", "THU", "KIM")}
_GIVEN = {
    "Nam": ("AN", "BÌNH", "CƯỜNG", "DŨNG", "HẢI", "HÙNG", "KHOA", "LONG", "NAM", "TUẤN"),
    "Nữ": ("ANH", "CHI", "HÀ", "HOA", "HƯƠNG", "LAN", "LINH", "MAI", "NGA", "THẢO"),
}
_STREETS = ("Phố Mẫu", "Đường Thử Nghiệm", "Ngõ Giả Định", "Đường Số Mẫu")
_DISTRICTS = ("Quận Mẫu Một", "Huyện Thử Hai", "Quận Giả Định")
_WARDS = ("Phường Mẫu", "Xã Thử Nghiệm", "Phường Số Một", "Xã Giả Định")
CHIP_ISSUER = "CỤC TRƯỞNG CỤC CẢNH SÁT QUẢN LÝ HÀNH CHÍNH VỀ TRẬT TỰ XÃ HỘI"
CCCD_ISSUER = "CỤC TRƯỞNG CỤC CẢNH SÁT ĐKQL CƯ TRÚ VÀ DLQG VỀ DÂN CƯ"
NO_EXPIRY = "Không thời hạn"
TODAY = dt.date(2026, 1, 1)  # a fixed "now", so that the same seed always gives the same card


@dataclass(frozen=True)
class Person:
    """A fake person and the numbers on their documents."""

    surname: str
    middle: str
    given: str
    gender: str  # "Nam" or "Nữ", as printed
    dob: dt.date
    birth_province: tuple[str, str, str]
    home_province: tuple[str, str, str]
    street: str
    district: tuple[str, str]
    ward: tuple[str, str]
    citizen_id: str
    cmnd_id: str
    passport_id: str
    issue_date: dt.date

    @property
    def name(self) -> str:
        return f"{self.surname} {self.middle} {self.given}"


def mrz_name(text: str) -> str:
    """Upper-case ``text`` without diacritics, as the machine-readable zone prints it."""
    text = text.replace("Đ", "D").replace("đ", "d")
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    )
    return stripped.upper()


def gender_century_digit(gender: str, year: int) -> int:
    """The fourth digit of a citizen ID number: century of birth and gender.

    Circular 07/2016/TT-BCA (and 59/2021/TT-BCA), Article 7: 20th century male 0 / female 1,
    21st 2 / 3, 22nd 4 / 5, 23rd 6 / 7, 24th 8 / 9.
    """
    century_index = (year - 1900) // 100
    return century_index * 2 + (0 if gender == "Nam" else 1)


def chip_due_date(dob: dt.date, issued: dt.date, *, law: int = 2014) -> dt.date | None:
    """Expiry of an identity card: the birthday at the first renewal age more than two years
    after issue; none when issued at 58 or later. Renewal ages: 25, 40, 60 (Law on Citizen
    Identification 2014, Art. 21); 14, 25, 40, 60 for cards from 1 July 2024 (Law on
    Identification 2023, Art. 21)."""
    for age in (14, 25, 40, 60) if law == 2023 else (25, 40, 60):
        milestone = _birthday(dob, age)
        if issued < _birthday(dob, age - 2):
            return milestone
    return None


# When each card model is issued (first, last), by the laws: citizen identity cards from
# 1 January 2016 (Law 59/2014/QH13, Art. 39), the chip card from 2021 (Circular
# 06/2021/TT-BCA), neither after 30 June 2024 (Law 26/2023/QH15, Art. 45); CMNDs until 2021; the
# 2024 card from 1 July 2024. Cards under the 2014 law and CMNDs are issued from 14.
_WINDOWS: dict[str, tuple[dt.date, dt.date, int]] = {
    "9_id_card": (dt.date(1999, 1, 1), dt.date(2020, 12, 31), 14),
    "12_id_card": (dt.date(2016, 1, 1), dt.date(2024, 6, 30), 14),
    "chip_id_card": (dt.date(2021, 2, 1), dt.date(2024, 6, 30), 14),
    "chip_id_card_2024": (dt.date(2024, 7, 1), TODAY, 0),
    "passport": (dt.date(2016, 1, 1), TODAY, 0),
}


def issue_window(kind: str, dob: dt.date) -> tuple[dt.date, dt.date] | None:
    """The days a card of ``kind`` could have been issued to someone born on ``dob`` (``None``:
    never, such as a 2014-law card for a child born in 2015)."""
    family = kind if kind == "passport" else kind.rsplit("_", 1)[0]
    first, last, age = _WINDOWS.get(family, (dt.date(2016, 1, 1), TODAY, 0))
    first = max(first, _birthday(dob, age) if age else dob + dt.timedelta(days=1))
    return (first, last) if first <= last else None


def issued_for(kind: str, p: Person) -> dt.date:
    """The person's issue date moved into the window of ``kind`` (the same for the same person
    and kind), so that every card drawn is one the law allows."""
    window = issue_window(kind, p.dob)
    if window is None:
        return p.issue_date
    first, last = window
    if first <= p.issue_date <= last:
        issued = p.issue_date
    else:
        span = (last - first).days + 1
        issued = first + dt.timedelta(days=(p.issue_date - first).days % span)
    # A citizen card drawn is one still valid on TODAY: one that would have expired by then
    # is taken as issued on the window's last day (its holder renewed it as late as allowed).
    law = 2023 if kind.startswith("chip_id_card_2024") else 2014
    if kind.split("_")[0] in ("12", "chip"):
        due = chip_due_date(p.dob, issued, law=law)
        if due is not None and due <= TODAY:
            issued = last
    return issued


def _birthday(dob: dt.date, age: int) -> dt.date:
    try:
        return dob.replace(year=dob.year + age)
    except ValueError:  # born on 29 February
        return dt.date(dob.year + age, 3, 1)


def fmt(d: dt.date | None) -> str:
    return NO_EXPIRY if d is None else d.strftime("%d/%m/%Y")


def fake_person(
    seed: int,
    *,
    gender: str | None = None,
    dob: dt.date | None = None,
    issue_date: dt.date | None = None,
) -> Person:
    """A deterministic fake person for ``seed``; ``gender``, ``dob`` and ``issue_date`` may be
    fixed, and the numbers on their cards follow from them."""
    rng = random.Random(seed)
    drawn_gender = rng.choice(("Nam", "Nữ"))
    drawn_dob = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 56))
    gender = gender or drawn_gender
    dob = dob or drawn_dob
    birth = rng.choice(PROVINCES)
    home = rng.choice(PROVINCES)
    citizen_id = (
        f"{birth[0]}{gender_century_digit(gender, dob.year)}{dob.year % 100:02d}"
        f"{rng.randrange(10**6):06d}"
    )
    earliest = _birthday(dob, 14)
    span = max(1, (TODAY - earliest).days)
    issue = issue_date or earliest + dt.timedelta(days=rng.randrange(span))
    return Person(
        surname=rng.choice(_SURNAMES),
        middle=rng.choice(_MIDDLE[gender]),
        given=rng.choice(_GIVEN[gender]),
        gender=gender,
        dob=dob,
        birth_province=birth,
        home_province=home,
        street=f"Số {rng.randint(1, 199)} {rng.choice(_STREETS)}",
        district=(rng.choice(_DISTRICTS), f"{rng.randrange(1, 999):03d}"),
        ward=(rng.choice(_WARDS), f"{rng.randrange(1, 99999):05d}"),
        citizen_id=citizen_id,
        cmnd_id=f"{rng.randrange(10**8, 10**9)}",
        passport_id=f"{rng.choice('BCNP')}{rng.randrange(10**7):07d}",
        issue_date=issue,
    )


def _address(p: Person) -> dict[str, str]:
    province = p.home_province
    return {
        "address": f"{p.street}, {p.ward[0]}, {p.district[0]}, {province[1]}",
        "address_town": province[1],
        "address_town_code": province[2],
        "address_district": p.district[0],
        "address_district_code": p.district[1],
        "address_ward": p.ward[0],
        "address_ward_code": p.ward[1],
        "hometown": f"{p.ward[0]}, {p.district[0]}, {p.birth_province[1]}",
        "hometown_town": p.birth_province[1],
        "hometown_town_code": p.birth_province[2],
        "hometown_district": p.district[0],
        "hometown_district_code": p.district[1],
        "hometown_ward": p.ward[0],
        "hometown_ward_code": p.ward[1],
    }


def card_truth(kind: str, p: Person) -> dict[str, Any]:
    """The ``info`` fields a card of ``kind`` held by ``p`` shows, as the service reports them.

    ``kind`` is a service type name: ``chip_id_card_front``, ``12_id_card_back``, ``passport``...
    """
    dob = fmt(p.dob)
    issued = issued_for(kind, p)
    if kind == "9_id_card_front":
        return {"id": p.cmnd_id, "name": p.name, "dob": dob, **_address(p)}
    if kind == "9_id_card_back":
        return {
            "ethnicity": "Kinh",
            "religious": "Không",
            "issue_date": fmt(issued),
            "issued_at": f"CA {p.home_province[1]}",
        }
    mrz = {
        "country": "VNM",
        "document_number": p.citizen_id[3:],
        "person_number": p.citizen_id,
        "dob": dob,
        "gender": p.gender,
        "nationality": "VNM",
        "sur_name": mrz_name(p.surname),
        "given_name": mrz_name(f"{p.middle} {p.given}"),
    }
    if kind == "chip_id_card_2024_front":
        return {
            "id": p.citizen_id,
            "name": p.name,
            "dob": dob,
            "gender": p.gender,
            "nationality": "Việt Nam",
        }
    if kind == "chip_id_card_2024_back":
        return {
            "address": _address(p)["address"],
            "birth_place": f"{p.ward[0]}, {p.district[0]}, {p.birth_province[1]}",
            "issue_date": fmt(issued),
            "issued_at": "BỘ CÔNG AN",
            "due_date": fmt(chip_due_date(p.dob, issued, law=2023)),
            **mrz,
        }
    due = fmt(chip_due_date(p.dob, issued))
    if kind in ("12_id_card_front", "chip_id_card_front"):
        info = {
            "id": p.citizen_id,
            "name": p.name,
            "dob": dob,
            "gender": p.gender,
            "nationality": "Việt Nam",
            "due_date": due,
            **_address(p),
        }
        if kind == "12_id_card_front":
            info["ethnicity"] = "Kinh"
        return info
    if kind == "12_id_card_back":
        return {"issue_date": fmt(issued), "issued_at": CCCD_ISSUER}
    if kind == "chip_id_card_back":
        return {"issue_date": fmt(issued), "issued_at": CHIP_ISSUER, "due_date": due, **mrz}
    if kind == "passport":
        return {
            "id": p.passport_id,
            "sur_name": mrz_name(p.surname),
            "given_name": mrz_name(f"{p.middle} {p.given}"),
            "dob": dob,
            "gender": p.gender,
            "country": "VNM",
            "nationality": "VIỆT NAM",
            # Law 49/2019/QH14, Art. 7(2): 10 years from 14 at issue, 5 under 14.
            "due_date": fmt(_birthday(issued, 10 if issued >= _birthday(p.dob, 14) else 5)),
            "person_number": p.citizen_id,
        }
    raise ValueError(f"no fake card of type {kind!r}")
