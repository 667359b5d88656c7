"""msgspec structs for the service's answers, and the decoder that builds them from bytes.

The service sends ``{"data": ..., "errorCode": "0", "errorMessage": ""}``. ``data`` is one object
for one document and a list for two sides, several documents or a PDF; it is normalised to a list
of ``Card``. Each card's ``info`` is decoded into the struct for its ``type``; a type this library
does not know (driving licences, vehicle papers, newer cards) decodes into ``GenericInfo``, which
keeps every field. Fields a struct does not declare are kept too (``info.extra``, ``get()``,
``to_dict()``), numbers sent as strings are accepted, and a field whose value cannot be read as its
type is left empty rather than failing the whole answer.

``decode_answer`` is the one decoding boundary: whatever the bytes, it returns a result or raises
``AnswerFormatError``, which the client turns into a ``CVError``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import errno
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import msgspec

from ._errors import ERROR_MESSAGE_KEYS
from ._prepare import Preparation
from ._redact import masked_fields, masked_text, safe_name

if TYPE_CHECKING:
    from .checks import Assessment

__all__ = [
    "WARNING_MESSAGES",
    "Box",
    "CCCDBackInfo",
    "CCCDFrontInfo",
    "CMNDBackInfo",
    "CMNDFrontInfo",
    "Card",
    "CardInfo",
    "ChipCCCD2024BackInfo",
    "ChipCCCD2024FrontInfo",
    "ChipCCCDBackInfo",
    "ChipCCCDFrontInfo",
    "ExtractionResult",
    "GenericInfo",
    "Info",
    "PassportInfo",
    "decode_answer",
    "parse_date",
]

_DATE_RE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})\s*$")


def parse_date(text: str | None) -> _dt.date | None:
    """Read a ``dd/mm/yyyy`` date as printed on Vietnamese documents.

    Args:
        text: the field's text, e.g. ``"01/02/1990"``; ``-`` and ``.`` separators are accepted too.

    Returns:
        The date, or ``None`` when the text is empty, is not a date (``"Không thời hạn"``,
        no expiry) or names a day that does not exist.
    """
    if not text:
        return None
    m = _DATE_RE.match(text)
    if m is None:
        return None
    day, month, year = (int(g) for g in m.groups())
    try:
        return _dt.date(year, month, day)
    except ValueError:
        return None


Box = list[Union[float, list[float]]]  # noqa: UP007 - evaluated at runtime on 3.10
"""Where a field lies in the image: ``[left, top, right, bottom]`` pixels, or its four corners
as ``[x, y]`` points (both forms are sent); ``Info.box()`` reads either as a rectangle."""


class _Masked(str):
    """A masked value that shows as itself, for ``__rich_repr__``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class Info(msgspec.Struct, kw_only=True, omit_defaults=True, dict=True):
    """Fields read off one document. Subclasses hold the fields of each document type.

    Every field is optional: the service leaves out what it could not read. Fields the service
    sends that the struct does not declare are kept in ``extra``. ``repr()`` masks personal
    values (``id='0012******45'``); attribute access, ``get()`` and ``to_dict()`` give them whole.
    """

    image: str | None = None
    """The cropped, deskewed document image, base64 (only with ``get_thumb=True``)."""

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the service sent that this struct does not declare, by their names."""
        extra: dict[str, Any] = self.__dict__.get("_extra", {})
        return extra

    def get(self, field: str, default: Any = None) -> Any:
        """Return a field by name (declared or ``extra``), or ``default`` when it is missing or
        empty."""
        value = getattr(self, field) if field in self.__struct_fields__ else None
        if value is None:
            value = self.extra.get(field)
        return default if value is None or value == "" else value

    def box(self, field: str) -> tuple[float, float, float, float] | None:
        """Where ``field`` lies in the image, as ``(left, top, right, bottom)`` pixels.

        Reads ``<field>_box`` in either form the service sends (four numbers, or four
        ``[x, y]`` corners, whose bounding rectangle is returned); ``None`` when it is missing or
        not a box.
        """
        return _rectangle(self.get(f"{field}_box"))

    def date(self, field: str) -> _dt.date | None:
        """Return a date field (``dob``, ``issue_date``, ``due_date``...) as a ``datetime.date``.

        Returns ``None`` when the field is missing or does not hold a date; the raw text stays in
        the field itself (some say ``"Không thời hạn"``, no expiry).
        """
        value = self.get(field)
        return parse_date(value) if isinstance(value, str) else None

    def image_bytes(self) -> bytes | None:
        """Return the thumbnail (``image``) decoded from base64, or ``None`` when there is none.

        Raises:
            ValueError: the service sent a thumbnail that is not valid base64.
        """
        if not self.image:
            return None
        data = self.image
        if data.startswith("data:"):
            data = data.partition(",")[2]
        try:
            return base64.b64decode(data)
        except ValueError:
            raise ValueError("the thumbnail the service sent is not valid base64") from None

    def save_image(self, path: str | os.PathLike[str]) -> Path:
        """Write the thumbnail to ``path`` and return that path.

        The file is created readable by its owner only (mode 0600: a card image is personal
        data); a symlink at ``path`` is not followed.

        Raises:
            ValueError: the answer holds no thumbnail (ask for one with ``get_thumb=True``), or
                it is not valid base64.
            OSError: the file cannot be written.
        """
        data = self.image_bytes()
        if data is None:
            raise ValueError("this answer holds no thumbnail; request it with get_thumb=True")
        out = Path(path)
        # Never through a symlink, and never into a FIFO or a device (opened without blocking,
        # then checked, before anything is cut or written).
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(out, flags | getattr(os, "O_NONBLOCK", 0), 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "a symlink is there (not followed)", str(out)) from None
            if exc.errno == errno.ENXIO:
                raise OSError(exc.errno, "not a regular file", str(out)) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(out))
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the fields that are present, ``extra`` ones included, as a plain dict."""
        fields = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        fields.update(self.extra)
        return fields

    def __repr__(self) -> str:
        # Only the fields present, masked: reprs end up in logs and error trackers.
        shown = ", ".join(f"{k}={v}" for k, v in masked_fields(self.to_dict()))
        return f"{type(self).__name__}({shown})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(k, _Masked(v)) for k, v in masked_fields(self.to_dict())]


def _rectangle(value: Any) -> tuple[float, float, float, float] | None:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(value, list) or not value:
        return None
    if len(value) == 4 and all(number(v) for v in value):
        left, top, right, bottom = (float(v) for v in value)
        return left, top, right, bottom
    if all(isinstance(p, list) and len(p) == 2 and all(number(v) for v in p) for p in value):
        xs = [float(p[0]) for p in value]
        ys = [float(p[1]) for p in value]
        return min(xs), min(ys), max(xs), max(ys)
    return None


class _PersonFrontInfo(Info, kw_only=True, omit_defaults=True):
    """Fields shared by the fronts of CMND, CCCD and chip CCCD cards."""

    id: str | None = None
    """Card or passport number (số thẻ / số CMND / số hộ chiếu)."""
    name: str | None = None
    """Full name (họ và tên)."""
    dob: str | None = None
    """Date of birth, dd/mm/yyyy (ngày sinh)."""
    hometown: str | None = None
    """Place of origin (quê quán)."""
    address: str | None = None
    """Place of permanent residence (nơi thường trú)."""
    address_town: str | None = None
    """Province or city of residence (tỉnh/thành phố thường trú)."""
    address_town_code: str | None = None
    """Administrative code of ``address_town``."""
    address_district: str | None = None
    """District of residence (quận/huyện thường trú)."""
    address_district_code: str | None = None
    """Administrative code of ``address_district``."""
    address_ward: str | None = None
    """Ward or commune of residence (phường/xã thường trú)."""
    address_ward_code: str | None = None
    """Administrative code of ``address_ward``."""
    hometown_town: str | None = None
    """Province or city of origin (tỉnh/thành phố quê quán)."""
    hometown_town_code: str | None = None
    """Administrative code of ``hometown_town``."""
    hometown_district: str | None = None
    """District of origin (quận/huyện quê quán)."""
    hometown_district_code: str | None = None
    """Administrative code of ``hometown_district``."""
    hometown_ward: str | None = None
    """Ward or commune of origin (phường/xã quê quán)."""
    hometown_ward_code: str | None = None
    """Administrative code of ``hometown_ward``."""
    # How sure the service is of each field above, from 0 to 1.
    id_confidence: float | None = None
    name_confidence: float | None = None
    dob_confidence: float | None = None
    hometown_confidence: float | None = None
    address_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    id_box: Box | None = None
    name_box: Box | None = None
    dob_box: Box | None = None
    hometown_box: Box | None = None
    address_box: Box | None = None


class CMNDFrontInfo(_PersonFrontInfo, kw_only=True, omit_defaults=True):
    """Front of the 9-digit identity card, CMND (``9_id_card_front``)."""


class CCCDFrontInfo(_PersonFrontInfo, kw_only=True, omit_defaults=True):
    """Front of the 12-digit citizen identity card, CCCD (``12_id_card_front``)."""

    gender: str | None = None
    """Sex, as printed: Nam / Nữ (giới tính)."""
    due_date: str | None = None
    """Date of expiry, dd/mm/yyyy or a no-expiry text (ngày hết hạn)."""
    nationality: str | None = None
    """Nationality (quốc tịch)."""
    ethnicity: str | None = None
    """Ethnic group (dân tộc)."""
    # How sure the service is of each field above, from 0 to 1.
    gender_confidence: float | None = None
    due_date_confidence: float | None = None
    nationality_confidence: float | None = None
    ethnicity_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    gender_box: Box | None = None
    due_date_box: Box | None = None
    nationality_box: Box | None = None
    ethnicity_box: Box | None = None


class ChipCCCDFrontInfo(_PersonFrontInfo, kw_only=True, omit_defaults=True):
    """Front of the chip citizen identity card (``chip_id_card_front``)."""

    gender: str | None = None
    """Sex, as printed: Nam / Nữ (giới tính)."""
    due_date: str | None = None
    """Date of expiry, dd/mm/yyyy or a no-expiry text (ngày hết hạn)."""
    nationality: str | None = None
    """Nationality (quốc tịch)."""
    # How sure the service is of each field above, from 0 to 1.
    gender_confidence: float | None = None
    due_date_confidence: float | None = None
    nationality_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    gender_box: Box | None = None
    due_date_box: Box | None = None
    nationality_box: Box | None = None


class CMNDBackInfo(Info, kw_only=True, omit_defaults=True):
    """Back of the CMND (``9_id_card_back``)."""

    ethnicity: str | None = None
    """Ethnic group (dân tộc)."""
    issue_date: str | None = None
    """Date of issue, dd/mm/yyyy (ngày cấp)."""
    religious: str | None = None
    """Religion (tôn giáo)."""
    issued_at: str | None = None
    """Issuing authority or place (nơi cấp)."""
    # How sure the service is of each field above, from 0 to 1.
    ethnicity_confidence: float | None = None
    issue_date_confidence: float | None = None
    religious_confidence: float | None = None
    issued_at_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    ethnicity_box: Box | None = None
    issue_date_box: Box | None = None
    religious_box: Box | None = None
    issued_at_box: Box | None = None


class CCCDBackInfo(Info, kw_only=True, omit_defaults=True):
    """Back of the CCCD (``12_id_card_back``)."""

    issue_date: str | None = None
    """Date of issue, dd/mm/yyyy (ngày cấp)."""
    issued_at: str | None = None
    """Issuing authority or place (nơi cấp)."""
    # How sure the service is of each field above, from 0 to 1.
    issue_date_confidence: float | None = None
    issued_at_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    issue_date_box: Box | None = None
    issued_at_box: Box | None = None


class ChipCCCDBackInfo(Info, kw_only=True, omit_defaults=True):
    """Back of the chip CCCD (``chip_id_card_back``); most fields come from its MRZ."""

    issue_date: str | None = None
    """Date of issue, dd/mm/yyyy (ngày cấp)."""
    issued_at: str | None = None
    """Issuing authority or place (nơi cấp)."""
    country: str | None = None
    """Country code of the document (quốc gia)."""
    document_number: str | None = None
    """Number of the card itself, from the MRZ (số thẻ mặt sau)."""
    person_number: str | None = None
    """Citizen ID number, from the MRZ (số định danh)."""
    dob: str | None = None
    """Date of birth, dd/mm/yyyy (ngày sinh)."""
    gender: str | None = None
    """Sex, as printed: Nam / Nữ (giới tính)."""
    due_date: str | None = None
    """Date of expiry, dd/mm/yyyy or a no-expiry text (ngày hết hạn)."""
    nationality: str | None = None
    """Nationality (quốc tịch)."""
    sur_name: str | None = None
    """Surname, from the MRZ (họ)."""
    given_name: str | None = None
    """Given names, from the MRZ (tên)."""
    # How sure the service is of each field above, from 0 to 1.
    issue_date_confidence: float | None = None
    issued_at_confidence: float | None = None
    country_confidence: float | None = None
    document_number_confidence: float | None = None
    person_number_confidence: float | None = None
    dob_confidence: float | None = None
    gender_confidence: float | None = None
    due_date_confidence: float | None = None
    nationality_confidence: float | None = None
    sur_name_confidence: float | None = None
    given_name_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    issue_date_box: Box | None = None
    issued_at_box: Box | None = None
    country_box: Box | None = None
    document_number_box: Box | None = None
    person_number_box: Box | None = None
    dob_box: Box | None = None
    gender_box: Box | None = None
    due_date_box: Box | None = None
    nationality_box: Box | None = None
    sur_name_box: Box | None = None
    given_name_box: Box | None = None
    mrz_confidence: float | None = None
    """How sure the service is of the machine-readable zone as a whole."""


class ChipCCCD2024FrontInfo(Info, kw_only=True, omit_defaults=True):
    """Front of the identity card issued from 1 July 2024 under the Law on Identification 2023
    (``chip_id_card_2024_front``, thẻ căn cước). It no longer shows place of origin, residence
    or expiry on the front."""

    id: str | None = None
    """Personal identification number, 12 digits (số định danh cá nhân)."""
    name: str | None = None
    """Full name (họ, chữ đệm và tên khai sinh)."""
    dob: str | None = None
    """Date of birth, dd/mm/yyyy (ngày sinh)."""
    gender: str | None = None
    """Sex, as printed: Nam / Nữ (giới tính)."""
    nationality: str | None = None
    """Nationality (quốc tịch)."""
    # How sure the service is of each field above, from 0 to 1.
    id_confidence: float | None = None
    name_confidence: float | None = None
    dob_confidence: float | None = None
    gender_confidence: float | None = None
    nationality_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    id_box: Box | None = None
    name_box: Box | None = None
    dob_box: Box | None = None
    gender_box: Box | None = None
    nationality_box: Box | None = None


class ChipCCCD2024BackInfo(ChipCCCDBackInfo, kw_only=True, omit_defaults=True):
    """Back of the 2024 identity card (``chip_id_card_2024_back``): residence, place of birth
    registration, dates of issue and expiry, and the MRZ (as the chip CCCD's back)."""

    address: str | None = None
    """Place of residence (nơi cư trú)."""
    birth_place: str | None = None
    """Place of birth registration (nơi đăng ký khai sinh)."""
    address_confidence: float | None = None
    birth_place_confidence: float | None = None
    address_box: Box | None = None
    birth_place_box: Box | None = None


class PassportInfo(Info, kw_only=True, omit_defaults=True):
    """Passport data page (``passport``)."""

    id: str | None = None
    """Card or passport number (số thẻ / số CMND / số hộ chiếu)."""
    sur_name: str | None = None
    """Surname, from the MRZ (họ)."""
    given_name: str | None = None
    """Given names, from the MRZ (tên)."""
    dob: str | None = None
    """Date of birth, dd/mm/yyyy (ngày sinh)."""
    gender: str | None = None
    """Sex, as printed: Nam / Nữ (giới tính)."""
    country: str | None = None
    """Country code of the document (quốc gia)."""
    nationality: str | None = None
    """Nationality (quốc tịch)."""
    due_date: str | None = None
    """Date of expiry, dd/mm/yyyy or a no-expiry text (ngày hết hạn)."""
    person_number: str | None = None
    """Citizen ID number, from the MRZ (số định danh)."""
    # How sure the service is of each field above, from 0 to 1.
    id_confidence: float | None = None
    sur_name_confidence: float | None = None
    given_name_confidence: float | None = None
    dob_confidence: float | None = None
    gender_confidence: float | None = None
    country_confidence: float | None = None
    nationality_confidence: float | None = None
    due_date_confidence: float | None = None
    person_number_confidence: float | None = None
    # Where each field above lies in the image (see ``Box``).
    id_box: Box | None = None
    sur_name_box: Box | None = None
    given_name_box: Box | None = None
    dob_box: Box | None = None
    gender_box: Box | None = None
    country_box: Box | None = None
    nationality_box: Box | None = None
    due_date_box: Box | None = None
    person_number_box: Box | None = None
    confidence: float | None = None
    """How sure the service is of the passport as a whole."""
    mrz_confidence: float | None = None
    """How sure the service is of the machine-readable zone."""


class GenericInfo(Info, kw_only=True, omit_defaults=True):
    """Any document type without a struct of its own (driving licence, vehicle papers, a newer
    card such as ``chip_id_card_2024_front``): every field the service sent, by its name."""

    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    """All fields of ``info`` as sent, ``image`` included."""

    def get(self, field: str, default: Any = None) -> Any:
        """Return a field by name, or ``default`` when it is missing or empty."""
        value = self.fields.get(field)
        return default if value is None or value == "" else value

    def to_dict(self) -> dict[str, Any]:
        """Return the fields that are present, as a plain dict."""
        return {k: v for k, v in self.fields.items() if v is not None}


CardInfo = Union[  # noqa: UP007 - a runtime alias, and 3.10 has no ``type`` statement
    CMNDFrontInfo,
    CCCDFrontInfo,
    ChipCCCDFrontInfo,
    CMNDBackInfo,
    CCCDBackInfo,
    ChipCCCDBackInfo,
    ChipCCCD2024FrontInfo,
    ChipCCCD2024BackInfo,
    PassportInfo,
    GenericInfo,
]
"""The ``info`` of a card: the struct for its ``type``, else ``GenericInfo``."""

#: The warning codes the service documents for ``invalidCode`` / ``invalidMessage``.
WARNING_MESSAGES: dict[int, str] = {
    0: "Successful",
    1: "Photo contains sign of being taken through an electronic screen",
    2: "The picture is a photocopy version of the id card",
    3: "The id field on the document is incorrectly formatted",
    4: "The mrzcode on the passport is incorrectly formatted",
    5: "The id card's corner has been clipped",
}
_WARNING_TEXTS = (*tuple(m.lower().strip(" .") for m in WARNING_MESSAGES.values()), "uccessful")
# Loose keys, since the vendor's own table misspells some messages ("uccessful").
_WARNING_KEYS: tuple[tuple[str, int], ...] = (
    ("electronic screen", 1),
    ("photocopy", 2),
    ("id field", 3),
    ("mrz", 4),
    ("corner", 5),
    ("uccessful", 0),
)


class Card(msgspec.Struct, kw_only=True):
    """One document (or one side of a card) read from the image."""

    type: str
    """Document type as the service names it, e.g. ``chip_id_card_front``, ``passport``."""
    info: CardInfo
    """The fields read, in the struct for ``type``."""
    valid: bool | None = None
    """``False`` when the service flags the document (screen photo, photocopy...); ``None`` when
    it says nothing (driving licences, PDFs)."""
    invalid_message: str | None = None
    """The service's warning text, when it sent one."""
    invalid_code: int | None = None
    """The warning code (see ``WARNING_MESSAGES``), as sent or matched from the message."""

    def _shown(self) -> list[tuple[str, str]]:
        return [
            ("type", repr(safe_name(self.type, "<unknown type>"))),
            ("info", repr(self.info)),
            ("valid", repr(self.valid)),
            ("invalid_message", masked_text(self.invalid_message, _WARNING_TEXTS)),
            ("invalid_code", repr(self.invalid_code)),
        ]

    def __repr__(self) -> str:
        # The service's own texts are shown only when they are ones it documents.
        return "Card(" + ", ".join(f"{k}={v}" for k, v in self._shown()) + ")"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(k, _Masked(v)) for k, v in self._shown()]

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data, ``info`` as ``Info.to_dict()`` gives it (every field the
        service sent, by its name)."""
        return {
            "type": self.type,
            "info": self.info.to_dict(),
            "valid": self.valid,
            "invalid_message": self.invalid_message,
            "invalid_code": self.invalid_code,
        }


class ExtractionResult(msgspec.Struct, kw_only=True):
    """A decoded answer: the documents read, and how the request went."""

    cards: list[Card]
    """Every document in the answer, in the service's order (front before back for two sides,
    page order for a PDF)."""
    error_code: int = 0
    """The service's ``errorCode``: 0 for an answer with data."""
    error_message: str = ""
    """The service's ``errorMessage``."""
    attempts: int = 1
    """How many HTTP attempts the request took."""
    elapsed: float = 0.0
    """Seconds from the first attempt to the answer, retries included."""
    request_id: str | None = None
    """The call's id, made by the client and sent as ``X-Request-ID`` (unless
    ``request_id_header=None``); the same id is on the call's log lines, spans and hooks."""
    service_request_id: str | None = None
    """The service's own id of the request, when its answer carried one (``X-Request-Id``,
    ``Request-Id`` or ``X-Correlation-Id``): what its support asks for."""
    prepared: list[Preparation] = msgspec.field(default_factory=list)
    """What preparing did to each input, when the call prepared them (``prepare=True``)."""

    @property
    def billed(self) -> bool:
        """Whether the service bills this answer (it bills every ``errorCode`` 0)."""
        return self.error_code == 0

    def _shown(self) -> list[tuple[str, str]]:
        return [
            ("cards", repr(self.cards)),
            ("error_code", repr(self.error_code)),
            ("error_message", masked_text(self.error_message, ERROR_MESSAGE_KEYS)),
            ("attempts", repr(self.attempts)),
            ("elapsed", repr(self.elapsed)),
            ("request_id", repr(self.request_id)),
            *(
                [("service_request_id", repr(self.service_request_id))]
                if self.service_request_id
                else []
            ),
            *([("prepared", repr(self.prepared))] if self.prepared else []),
        ]

    def __repr__(self) -> str:
        return "ExtractionResult(" + ", ".join(f"{k}={v}" for k, v in self._shown()) + ")"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(k, _Masked(v)) for k, v in self._shown()]

    def to_dict(self) -> dict[str, Any]:
        """The answer as plain data, for JSON: every field the service sent is kept, those no
        struct declares included (``msgspec.to_builtins`` gives the declared ones only)."""
        return {
            "cards": [card.to_dict() for card in self.cards],
            "error_code": self.error_code,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "elapsed": self.elapsed,
            "request_id": self.request_id,
            "service_request_id": self.service_request_id,
            "prepared": msgspec.to_builtins(self.prepared),
        }

    def assess(self, *, today: _dt.date | None = None, min_confidence: float = 0.8) -> Assessment:
        """Run the trust checks on this answer's cards (see ``cvekyc_async.checks``).

        Two cards from ``extract_cards`` are checked as a front and back pair.

        Returns:
            The verdict (``accept``, ``review`` or ``reject``) and the findings behind it.
        """
        from .checks import assess_cards

        return assess_cards(self.cards, today=today, min_confidence=min_confidence)


_INFO_TYPES: dict[str, type[Info]] = {
    "9_id_card_front": CMNDFrontInfo,
    "12_id_card_front": CCCDFrontInfo,
    "chip_id_card_front": ChipCCCDFrontInfo,
    "9_id_card_back": CMNDBackInfo,
    "12_id_card_back": CCCDBackInfo,
    "chip_id_card_back": ChipCCCDBackInfo,
    "chip_id_card_2024_front": ChipCCCD2024FrontInfo,
    "chip_id_card_2024_back": ChipCCCD2024BackInfo,
    "passport": PassportInfo,
}

_NULL = msgspec.Raw(b"null")


class _RawCard(msgspec.Struct):
    # Card-level scalars arrive in several spellings ("True", true, "1"); they are read loosely
    # and normalised below, so an odd value never fails the answer.
    type: Any = None
    info: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)
    valid: Any = None
    invalidMessage: Any = None  # the service's own names
    invalidCode: Any = None


class _Envelope(msgspec.Struct):
    # One pass over the body: cards are decoded here, only each card's info is left raw.
    data: Union[list[_RawCard], _RawCard, None] = None  # noqa: UP007 - evaluated at runtime
    errorCode: Any = None
    errorMessage: Any = None


class _LooseEnvelope(msgspec.Struct):
    # For bodies whose data is neither a card nor a list of cards (error answers may carry
    # anything there): data is kept raw and only read when it holds cards.
    data: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)
    errorCode: Any = None
    errorMessage: Any = None


class AnswerFormatError(ValueError):
    """The body is not the answer envelope; the client turns this into MalformedResponseError."""


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_LOOSE_ENVELOPE = msgspec.json.Decoder(_LooseEnvelope)
_ONE_CARD = msgspec.json.Decoder(_RawCard)
_CARD_LIST = msgspec.json.Decoder(list[_RawCard])
_DICT = msgspec.json.Decoder(dict[str, Any])
_FIELD_NAMES: dict[type[Info], frozenset[str]] = {
    cls: frozenset(f.encode_name for f in msgspec.structs.fields(cls))
    for cls in _INFO_TYPES.values()
}


# Integers in the envelope are ASCII digits of bounded length: ``int()`` alone would take "١٢"
# (Arabic-Indic digits) as 12, and fail on "²" or on 5,000 digits.
_INT_RE = re.compile(r"[+-]?[0-9]{1,9}")
_INT_BOUND = 10**9
#: Deepest nesting kept in fields no struct declares; deeper answers are refused.
MAX_NESTING = 32


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_INT_BOUND < value < _INT_BOUND else None
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    return None


def _as_bool(value: Any) -> bool | None:
    if value == "True" or value is True:  # what the service sends, first
        return True
    if value == "False" or value is False:
        return False
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    return None


def _warning_code(code: Any, message: str | None) -> int | None:
    number = _as_int(code)
    if number is None and isinstance(code, float) and code.is_integer():
        number = _as_int(int(code)) if abs(code) < _INT_BOUND else None
    if number is not None or not message:
        return number
    lowered = message.lower()
    return next((c for key, c in _WARNING_KEYS if key in lowered), None)


def _card_validity(valid: Any, raw_code: Any, code: int | None, message: str | None) -> bool | None:
    flag = _as_bool(valid)
    if code is not None and code != 0:
        return False  # a warning flags the card, whatever ``valid`` says
    unreadable_code = code is None and raw_code not in (None, "", False)
    if flag is None and (unreadable_code or (code is None and message and message.strip())):
        return False  # a warning the library cannot read or does not know
    if flag is None and code == 0:
        return True  # "Successful"
    return flag


def _check_depth(fields: dict[str, Any]) -> None:
    """Refuse values nested deeper than ``MAX_NESTING`` (iteratively: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(v, 1) for v in fields.values()]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            raise AnswerFormatError(f"a card's info is nested more than {MAX_NESTING} levels deep")
        stack.extend((c, depth + 1) for c in children)


def _salvage(cls: type[Info], fields: dict[str, Any]) -> tuple[Info, dict[str, Any]]:
    """Build ``cls`` field by field, keeping what can be read; the values that cannot be read as
    their field's type are returned apart, to be kept as ``extra`` under their names."""
    kwargs: dict[str, Any] = {}
    unread: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.encode_name not in fields:
            continue
        value = fields[f.encode_name]
        try:
            kwargs[f.name] = msgspec.convert(value, f.type, strict=False)
        except msgspec.ValidationError:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                with contextlib.suppress(msgspec.ValidationError):
                    kwargs[f.name] = msgspec.convert(str(value), f.type, strict=False)
            if f.name not in kwargs:
                unread[f.encode_name] = value
    return cls(**kwargs), unread


def _decode_info(card_type: str, raw: msgspec.Raw) -> CardInfo:
    if len(raw) <= 4 and bytes(raw).strip() in (b"null", b""):
        fields: dict[str, Any] = {}
    else:
        try:
            fields = _DICT.decode(raw)
        except msgspec.ValidationError:
            raise AnswerFormatError("a card's info is not an object") from None
    cls = _INFO_TYPES.get(card_type)
    if cls is None:
        _check_depth(fields)
        image = fields.get("image")
        return GenericInfo(image=image if isinstance(image, str) else None, fields=fields)
    unread: dict[str, Any] = {}
    try:
        info = msgspec.convert(fields, cls, strict=False)
    except msgspec.ValidationError:
        info, unread = _salvage(cls, fields)
    names = _FIELD_NAMES[cls]
    extra = {k: v for k, v in fields.items() if k not in names or k in unread}
    if extra:
        _check_depth(extra)
        info.__dict__["_extra"] = extra
    return info  # type: ignore[return-value]


def _build_card(raw: _RawCard) -> Card:
    card_type = raw.type if isinstance(raw.type, str) else ""
    message = raw.invalidMessage if isinstance(raw.invalidMessage, str) else None
    code = _warning_code(raw.invalidCode, message)
    return Card(
        type=card_type,
        info=_decode_info(card_type, raw.info),
        valid=_card_validity(raw.valid, raw.invalidCode, code, message),
        invalid_message=message,
        invalid_code=code,
    )


def _loose_envelope(body: bytes) -> _Envelope:
    try:
        loose = _LOOSE_ENVELOPE.decode(body)
    except msgspec.DecodeError as exc:
        raise AnswerFormatError(f"not an answer object: {exc}") from None
    data = bytes(loose.data).lstrip()
    cards: list[_RawCard] = []
    if data[:1] in (b"[", b"{") and _as_int(loose.errorCode) == 0:
        # A success must carry cards: what failed the fast path fails here too, and says why.
        try:
            decoded = _CARD_LIST.decode(data) if data[:1] == b"[" else [_ONE_CARD.decode(data)]
        except msgspec.DecodeError as exc:
            raise AnswerFormatError(f"data is not a card or a list of cards: {exc}") from None
        cards = decoded
    elif _as_int(loose.errorCode) == 0 and data not in (b"null", b"", b'""'):
        raise AnswerFormatError("data is not a card or a list of cards")
    return _Envelope(data=cards, errorCode=loose.errorCode, errorMessage=loose.errorMessage)


def decode_answer(body: bytes) -> ExtractionResult:
    """Decode an answer body into an ``ExtractionResult``, whatever its ``errorCode``.

    Args:
        body: the raw JSON body of an answer from any of the card endpoints.

    Returns:
        The decoded answer; ``cards`` is empty when the answer carries no data.

    Raises:
        AnswerFormatError: the body is not the answer envelope: not JSON, not UTF-8, nested too
            deeply, an ``errorCode`` that is not a small integer, ... Nothing else escapes.
    """
    try:
        return _decode(body)
    except AnswerFormatError:
        raise
    except RecursionError:
        raise AnswerFormatError("the answer is nested too deeply") from None
    except UnicodeError:
        raise AnswerFormatError("the answer is not valid UTF-8") from None
    except Exception as exc:  # the boundary: what the bytes can provoke ends here
        # Only the type: messages of Python's own errors can quote the offending value.
        raise AnswerFormatError(f"cannot read the answer ({type(exc).__name__})") from None


def _decode(body: bytes) -> ExtractionResult:
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.ValidationError:
        envelope = _loose_envelope(body)
    except msgspec.DecodeError as exc:
        raise AnswerFormatError(f"not an answer object: {exc}") from None
    code = _as_int(envelope.errorCode)
    if code is None:
        raise AnswerFormatError("errorCode is missing or not a small integer")
    message = envelope.errorMessage if isinstance(envelope.errorMessage, str) else ""
    data = envelope.data
    raw_cards = [] if data is None else data if isinstance(data, list) else [data]
    return ExtractionResult(
        cards=[_build_card(c) for c in raw_cards],
        error_code=code,
        error_message=message,
    )
