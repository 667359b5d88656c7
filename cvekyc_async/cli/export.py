"""``cvekyc export``: batch results as a table (CSV, XLSX, Parquet or JSONL), one row per card.

The rows come from the record that counts for each input (``records.Results``: the latest of a
key, an ok record over a failure across the parts of a sharded run, ``same_as`` resolved). An
input read as several cards (a front and back pair, a page with two documents) gives one row per
card, numbered from 1 in ``card``; a failure gives one row with its error and no card fields; an
answer without cards gives one row with ``card_count`` 0.

Columns, in this order: the fixed ones (``HEAD``), the cards' fields (documented ones in the
order the ``Info`` structs declare them, then the others sorted; ``--confidence`` puts
``<field>_confidence`` right after each field), the error and billing ones (``TAIL``), then the
run's own (``RUN``) when some record carries them. Thumbnails (``image``) and boxes (``_box``)
are never exported; administrative codes (``address_town_code``...) are: they name a place
unambiguously where names are spelled several ways or change.

Records are never held: past the small index ``Results`` keeps, they are read twice, once to
learn the columns and their types (a Parquet schema and a sheet's header come before the first
row), once to write; only a summary of each column is kept in between. A Parquet writer holds
one row group (``ROW_GROUP_SIZE`` rows), a sheet is written row by row to scratch files.

Dates (``dob``, ``issue_date``, ``due_date``, any ``*_date``, and any text field whose every value
reads as dd/mm/yyyy) are date cells in XLSX and ``date32`` in Parquet, and stay as printed in CSV
and JSONL. A value that is not a date (``Không thời hạn``, no expiry) stays text in its XLSX cell;
Parquet keeps the column a date and adds ``<field>_text`` beside it, holding the text of the
values that are not dates, so the schema stays the same whatever the data.

CSV and XLSX are opened by spreadsheets: a text cell that a spreadsheet would run as a formula
(one starting with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return...) is written with a
leading ``'`` in CSV, and in XLSX as a string cell with Excel's own quote-prefix mark (shown as
written, and still text when edited). Numbers and dates are never touched. JSONL and Parquet are
data for programs: their values are kept as they are.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import importlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Protocol, TextIO, get_args

import msgspec

from .._models import CardInfo, GenericInfo, parse_date
from .joblog import LockedError, NotRegularError, holds_records, named_among, replacing_output
from .options import EXIT_OK, EXIT_WRITE, UsageError, batch_outputs, terminate_as_interrupt
from .records import NotRecordsError, Results, cards_of

__all__ = [
    "FORMATS",
    "HEAD",
    "INSTALL_HINT",
    "ROW_GROUP_SIZE",
    "RUN",
    "TAIL",
    "XLSX_MAX_ROWS",
    "add_export_parser",
    "run_export",
]

#: The formats, each named by its file suffix.
FORMATS = ("csv", "xlsx", "parquet", "jsonl")
#: What installs the libraries the XLSX and Parquet writers need.
INSTALL_HINT = "pip install 'cvekyc-async[export]'"
#: Rows per Parquet row group: what the writer holds at most.
ROW_GROUP_SIZE = 10_000
#: Cells a Parquet row group holds at most (a wide table's groups have fewer rows).
ROW_GROUP_CELLS = 500_000
#: Rows a sheet holds below its header.
XLSX_MAX_ROWS = 1_048_575
#: Columns a sheet holds.
XLSX_MAX_COLUMNS = 16_384
#: Card fields beyond the documented ones that a table takes without --columns: answers that
#: carry more are no cards (a hostile or broken service), and each costs memory in every row.
MAX_EXTRA_FIELDS = 1_000

#: Columns before the cards' fields.
HEAD = (
    "key",
    "input",
    "card",
    "card_count",
    "type",
    "verdict",
    "findings",
    "valid",
    "invalid_message",
    "invalid_code",
)
#: Columns after the cards' fields.
TAIL = ("error_type", "error_code", "status_code", "error_message", "attempts", "billed", "same_as")
#: Columns of the run that wrote a record, last, each only when some record carries it.
RUN = ("written", "run", "shard", "request_id", "service_request_id")

_LIBRARIES = {"xlsx": ("xlsxwriter",), "parquet": ("pyarrow", "pyarrow.parquet")}
_BINARY = frozenset(_LIBRARIES)
_VERDICTS = ("accept", "review", "reject")
#: Pairs show as ``front | back``.
_PAIR = " | "

# The kinds of column; JSON is the kind of a value only (a list or object, written as text).
TEXT, INT, FLOAT, BOOL, DATE, JSON = "text", "int", "float", "bool", "date", "json"
_FIXED_KINDS = {
    **dict.fromkeys((*HEAD, *TAIL, *RUN), TEXT),
    **dict.fromkeys(
        ("card", "card_count", "invalid_code", "error_code", "status_code", "attempts"), INT
    ),
    **dict.fromkeys(("valid", "billed"), BOOL),
}
_DATE_FIELDS = frozenset({"dob", "issue_date", "due_date"})
# A text cell starting with one of these is a formula, or may become one (OWASP, ASVS 1.2.10).
# Their fullwidth and small forms too: some spreadsheets read them as the signs themselves.
_FORMULA_STARTS = frozenset("=+-@\t\r\n\0\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63")
# Spreadsheets that trim cells as they read them would run a formula after these.
_BLANKS = " \u00a0"
_SUSPECT = _FORMULA_STARTS | frozenset(_BLANKS)
_INT64 = 2**63
_EXACT_IN_A_SHEET = 2**53  # integers past this lose digits in a number cell


def _documented() -> dict[str, str]:
    """Every field the ``Info`` structs declare, in their order, with its kind (boxes and the
    thumbnail left out)."""
    kinds: dict[str, str] = {}
    for cls in get_args(CardInfo):
        if cls is GenericInfo:
            continue
        for f in msgspec.structs.fields(cls):
            if f.encode_name not in kinds and _exported(f.encode_name):
                kinds[f.encode_name] = FLOAT if float in get_args(f.type) else _text_kind(f.name)
    return kinds


def _exported(name: str) -> bool:
    """Whether a card field is exported: never thumbnails (base64) nor boxes."""
    return not (name == "image" or name.endswith(("_image", "_box")))


def _is_confidence(name: str) -> bool:
    return name == "confidence" or name.endswith("_confidence")


def _text_kind(name: str) -> str:
    return DATE if name in _DATE_FIELDS or name.endswith("_date") else TEXT


_DOCUMENTED = _documented()


# -- values --------------------------------------------------------------------------------------

_ENCODE = msgspec.json.Encoder()


def _as_text(value: Any) -> str:
    """A value that is not text, as JSON writes it (``true``, ``0.98``, ``{"a": 1}``)."""
    return value if isinstance(value, str) else _ENCODE.encode(value).decode()


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else _as_text(value)


def _int(value: Any) -> int | None:
    return value if type(value) is int and -_INT64 <= value < _INT64 else None


def _bool(value: Any) -> bool | None:
    return value if type(value) is bool else None


def _risky(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula."""
    first = text[:1]
    if first in _FORMULA_STARTS:
        return True
    return bool(first) and first in _BLANKS and text.lstrip(_BLANKS)[:1] in _FORMULA_STARTS


def _defused(text: str) -> str:
    return "'" + text if _risky(text) else text


#: A ``;`` inside a cell, before what would start a formula: where the list separator is ``;``
#: (Vietnamese and most European settings of Windows), a spreadsheet opening the CSV splits the
#: cell there, and the part after it is a cell of its own.
_AFTER_SEMICOLON = re.compile(
    "(;[" + re.escape(_BLANKS) + "]*)([" + re.escape("".join(sorted(_FORMULA_STARTS))) + "])"
)


def _csv_defused(text: str) -> str:
    """``text`` for a CSV cell: defused at its start and after every ``;`` in it."""
    if ";" in text:
        text = _AFTER_SEMICOLON.sub(r"\1'\2", text)
    return _defused(text)


# -- rows ----------------------------------------------------------------------------------------


def _key_of(record: dict[str, Any]) -> str | None:
    key = record.get("key")
    if isinstance(key, str):
        return key
    value = record.get("input")  # records written before keys existed
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\t".join(value)
    return value if isinstance(value, str) else None


def _input_of(value: Any) -> str | None:
    if isinstance(value, list):
        return _PAIR.join(_as_text(v) for v in value)
    return _text(value)


def _record_values(record: dict[str, Any]) -> dict[str, Any]:
    """The columns a record gives every row of it."""
    ok = record.get("ok") is True
    error = record.get("error")
    error = error if isinstance(error, dict) and not ok else {}
    assessment = record.get("assessment")
    assessment = assessment if isinstance(assessment, dict) else {}
    findings = assessment.get("findings")
    codes = dict.fromkeys(
        f["code"]
        for f in (findings if isinstance(findings, list) else [])
        if isinstance(f, dict) and isinstance(f.get("code"), str)
    )
    values = {
        "key": _key_of(record),
        "input": _input_of(record.get("input")),
        "verdict": _text(assessment.get("verdict")),
        "findings": ";".join(codes) or None,
        "error_type": _text(error.get("type")),
        "error_code": _int(error.get("error_code")),
        "status_code": _int(error.get("status_code")),
        "error_message": _text(error.get("message")),
        "attempts": _int(record.get("attempts")),
        "billed": _bool(record.get("billed")),
        "same_as": _text(record.get("same_as")),
    }
    for name in RUN:
        values[name] = _text(record.get(name))
    return values


_NO_INFO: dict[str, Any] = {}


def _rows(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(the row's own columns, the card's fields) of each row a record gives."""
    values = _record_values(record)
    if record.get("ok") is not True:
        yield values, _NO_INFO
        return
    cards = cards_of(record)
    if not cards:
        values["card_count"] = 0
        yield values, _NO_INFO
        return
    for number, card in enumerate(cards, 1):
        info = card.get("info")
        row = {
            **values,
            "card": number,
            "card_count": len(cards),
            "type": _text(card.get("type")),
            "valid": _bool(card.get("valid")),
            "invalid_message": _text(card.get("invalid_message")),
            "invalid_code": _int(card.get("invalid_code")),
        }
        yield row, info if isinstance(info, dict) else _NO_INFO


@dataclass(frozen=True)
class _Filter:
    """Which inputs are exported: all, or those with the verdicts asked and/or those failed."""

    verdicts: frozenset[str]
    failed: bool

    def keeps(self, record: dict[str, Any]) -> bool:
        if not (self.verdicts or self.failed):
            return True
        if record.get("ok") is not True:
            return self.failed
        assessment = record.get("assessment")
        verdict = assessment.get("verdict") if isinstance(assessment, dict) else None
        return verdict in self.verdicts


def _read(results: Results) -> Iterator[dict[str, Any]]:
    """The records that count; an input that changes or goes away between the two readings is
    a usage error, not a write error."""
    records = results.records()
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (OSError, msgspec.MsgspecError):
            raise UsageError(
                "an input changed or went away during the export: nothing was written"
            ) from None
        yield record


# -- the first reading: what the columns are ------------------------------------------------------


@dataclass
class _Seen:
    """What the first reading saw of one card field."""

    kinds: set[str] = field(default_factory=set)
    dates: bool = False  # some value reads as a date
    texts: bool = False  # some other value is text, not empty
    width: int = 0


_KINDS = {str: TEXT, float: FLOAT, bool: BOOL, int: INT, dict: JSON, list: JSON}


@dataclass
class _Survey:
    """The first reading: counts, the card fields seen (by name) and what they hold."""

    widths: bool = False  # measure text widths (for a sheet's columns)
    inputs: int = 0
    failed: int = 0
    filtered: int = 0
    rows: int = 0
    fields: dict[str, _Seen] = field(default_factory=dict)
    run: set[str] = field(default_factory=set)
    fixed_widths: dict[str, int] = field(default_factory=dict)
    _settled: set[tuple[str, type]] = field(default_factory=set)

    def add(self, record: dict[str, Any], keep: _Filter) -> None:
        self.inputs += 1
        ok = record.get("ok") is True
        self.failed += not ok
        if not keep.keeps(record):
            self.filtered += 1
            return
        for name in RUN:
            if record.get(name) is not None:
                self.run.add(name)
        cards = cards_of(record) if ok else []
        self.rows += len(cards) or 1
        if self.widths:
            for values, _ in _rows(record):
                for name, value in values.items():
                    if isinstance(value, str):
                        width = min(len(value), 60)
                        if width > self.fixed_widths.get(name, 0):
                            self.fixed_widths[name] = width
        for card in cards:
            info = card.get("info")
            if isinstance(info, dict):
                self._add_fields(info)

    def _add_fields(self, info: dict[str, Any]) -> None:
        fields, settled = self.fields, self._settled
        for name, value in info.items():
            cls = type(value)
            if (name, cls) in settled:  # nothing more to learn from such a value
                continue
            if value is None or not _exported(name):
                settled.add((name, cls))
                continue
            seen = fields.get(name)
            if seen is None:
                seen = fields[name] = _Seen()
            kind = _KINDS.get(cls, JSON)
            if kind == INT and not -_INT64 <= value < _INT64:
                seen.kinds.add(JSON)  # kept whole, written as text
                continue
            seen.kinds.add(kind)
            if kind != TEXT:
                if kind != INT:  # an integer's kind depends on its size
                    settled.add((name, cls))
                continue
            if self.widths and len(value) > seen.width:
                seen.width = min(len(value), 60)
            if parse_date(value) is not None:
                seen.dates = True
            elif value.strip():
                seen.texts = True
                # Whether the other values are dates is moot now (a sheet's widths aside).
                if not self.widths:
                    settled.add((name, cls))


# -- the plan: which columns, in which order, of which kind ---------------------------------------


@dataclass(frozen=True)
class _Column:
    """One column of the table."""

    name: str
    field: str  # the name in the row's own columns, or in the card's fields
    info: bool  # a card field
    kind: str
    text_too: bool = False  # a date column some of whose values are not dates
    mixed: bool = False  # a text column some of whose values are not text
    width: int = 0


def _info_kind(name: str, seen: _Seen | None) -> str:
    if seen is None:  # asked for by name, and in no row
        return _DOCUMENTED.get(name, TEXT)
    kinds = seen.kinds
    if _text_kind(name) == DATE:
        return DATE  # a date column whatever its values: other values go to <name>_text
    if kinds == {TEXT}:
        return DATE if seen.dates and not seen.texts else TEXT
    if kinds == {INT}:
        return INT
    if kinds <= {INT, FLOAT}:
        return FLOAT
    if kinds == {BOOL}:
        return BOOL
    return TEXT


class _Plan:
    """The columns of the table, from what the first reading saw and what was asked."""

    def __init__(self, survey: _Survey, asked: list[str] | None, confidence: bool) -> None:
        self.survey = survey
        # Every card field a column can show, by column name: a field named as a fixed column
        # (a vehicle paper's "type") is shown as info_<name>.
        others = sorted(set(survey.fields) - set(_DOCUMENTED), key=lambda n: (_column_name(n), n))
        if asked is None and len(others) > MAX_EXTRA_FIELDS:
            raise UsageError(
                f"the cards carry {len(others)} fields beyond the documented ones, more than a "
                f"table of {MAX_EXTRA_FIELDS} takes: pick the columns with --columns"
            )
        self.fields: dict[str, str] = {}  # column name: card field
        for name in [*_DOCUMENTED, *others]:
            column = _column_name(name)
            while column in self.fields or column in _FIXED_KINDS:
                column = f"info_{column}"
            self.fields[column] = name
        self.column_of = {name: column for column, name in self.fields.items()}
        names = self._default(confidence) if asked is None else self._asked(asked, confidence)
        self.columns = [self._column(name) for name in names]

    def _default(self, confidence: bool) -> list[str]:
        seen = self.survey.fields
        fields = [n for n in self.fields.values() if n in seen]
        placed: list[str] = []
        for name in fields:
            if _is_confidence(name):
                continue
            placed.append(name)
            if confidence and f"{name}_confidence" in seen:
                placed.append(f"{name}_confidence")
        if confidence:  # those of no field here, and the documents' own (mrz_confidence...)
            placed += [n for n in fields if _is_confidence(n) and n not in placed]
        run = [name for name in RUN if name in self.survey.run]
        return [*HEAD, *(self.column_of[name] for name in placed), *TAIL, *run]

    def available(self) -> list[str]:
        return [*HEAD, *self.fields, *TAIL, *RUN]

    def _asked(self, asked: list[str], confidence: bool) -> list[str]:
        available = self.available()
        unknown = [name for name in asked if name not in available]
        if unknown:
            shown = ", ".join(available[:80]) + (
                f" and {len(available) - 80} more" if len(available) > 80 else ""
            )
            raise UsageError(f"--columns: no column {', '.join(unknown)}; the columns are {shown}")
        if not confidence:
            return asked
        names: list[str] = []
        for name in asked:
            names.append(name)
            source = self.fields.get(name)
            extra = None if source is None else self.column_of.get(f"{source}_confidence")
            if extra is not None and extra not in asked:
                names.append(extra)
        return names

    def _column(self, name: str) -> _Column:
        if name in _FIXED_KINDS:
            width = self.survey.fixed_widths.get(name, 0)
            return _Column(name, name, False, _FIXED_KINDS[name], width=width)
        source = self.fields[name]
        seen = self.survey.fields.get(source)
        kind = _info_kind(source, seen)
        if seen is None:
            return _Column(name, source, True, kind)
        text_too = kind == DATE and (seen.texts or seen.kinds != {TEXT})
        mixed = kind == TEXT and seen.kinds != {TEXT}
        return _Column(name, source, True, kind, text_too, mixed, seen.width)


def _column_name(field_name: str) -> str:
    return f"info_{field_name}" if field_name in _FIXED_KINDS else field_name


# -- writers -------------------------------------------------------------------------------------


class _Writer(Protocol):
    def write(self, values: list[Any]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _CsvWriter:
    """UTF-8 with a byte-order mark (so Excel reads Vietnamese as written), RFC 4180 quoting.
    Rows are encoded a batch at a time into the caller's file, which stays the caller's (standard
    output is never closed under it)."""

    _BATCH = 1000

    def __init__(self, fh: BinaryIO, columns: list[_Column]) -> None:
        self._fh = fh
        self._text = io.StringIO()
        self._csv = csv.writer(self._text)
        fh.write(codecs.BOM_UTF8)
        self._csv.writerow([_csv_defused(c.name) for c in columns])
        self._pending = 1
        self._bools = [n for n, c in enumerate(columns) if c.kind == BOOL]
        self._mixed = [n for n, c in enumerate(columns) if c.mixed]

    def write(self, values: list[Any]) -> None:
        # The csv module writes None as empty, and numbers as Python prints them; only text
        # that a spreadsheet could run, booleans and values of mixed columns need more.
        cells = [
            _csv_defused(v) if type(v) is str and (v[:1] in _SUSPECT or ";" in v) else v
            for v in values
        ]
        for n in self._bools:
            if cells[n] is not None:
                cells[n] = "true" if cells[n] else "false"
        for n in self._mixed:
            cells[n] = _csv_cell(values[n])
        self._csv.writerow(cells)
        self._pending += 1
        if self._pending >= self._BATCH:
            self._drain()

    def _drain(self) -> None:
        self._fh.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()
        self._pending = 0

    def close(self) -> None:
        self._drain()
        self._fh.flush()

    def abort(self) -> None:
        pass


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return _as_text(value)  # numbers are numbers: -1 stays -1
    return _csv_defused(_as_text(value))


class _JsonlWriter:
    """One JSON object per row, every column in order (``null`` for empty), values as read."""

    def __init__(self, fh: BinaryIO, columns: list[_Column]) -> None:
        self._fh = fh
        self._names = [c.name for c in columns]
        self._encoder = msgspec.json.Encoder()

    def write(self, values: list[Any]) -> None:
        self._fh.write(self._encoder.encode(dict(zip(self._names, values, strict=True))) + b"\n")

    def close(self) -> None:
        self._fh.flush()

    def abort(self) -> None:
        pass


def _library(name: str) -> ModuleType:
    # Imported by name: neither library ships type information.
    return importlib.import_module(name)


class _XlsxWriter:
    """XlsxWriter in constant-memory mode: each row goes to a scratch file as soon as the next
    begins. Every cell is written by its type, never guessed: text is never a formula nor a
    link."""

    def __init__(self, fh: BinaryIO, columns: list[_Column], rows: int, scratch: Path) -> None:
        xlsxwriter = _library("xlsxwriter")
        self._columns = columns
        self._book = xlsxwriter.Workbook(
            fh,
            {
                "constant_memory": True,
                "tmpdir": str(scratch),
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                # Past a few tens of millions of cells the sheet's XML passes 4 GiB.
                "use_zip64": rows * len(columns) > 20_000_000,
            },
        )
        self._sheet = self._book.add_worksheet("results")
        self._date = self._book.add_format({"num_format": "dd/mm/yyyy"})
        self._quoted = self._book.add_format({"quote_prefix": True})
        header = self._book.add_format({"bold": True, "bottom": 1})
        header_quoted = self._book.add_format({"bold": True, "bottom": 1, "quote_prefix": True})
        self.cut = 0  # cells cut to a sheet's 32,767 characters
        for n, column in enumerate(columns):
            self._sheet.set_column(n, n, _width(column))
            self._sheet.write_string(
                0, n, column.name, header_quoted if _risky(column.name) else header
            )
        self._sheet.freeze_panes(1, 0)
        self._sheet.autofilter(0, 0, max(rows, 1), max(len(columns) - 1, 0))
        self._row = 0

    def write(self, values: list[Any]) -> None:
        self._row += 1
        row, sheet = self._row, self._sheet
        for n, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(row, n, value)
            elif isinstance(value, float) or (
                isinstance(value, int) and abs(value) <= _EXACT_IN_A_SHEET
            ):
                sheet.write_number(row, n, value)
            elif isinstance(value, str) and self._columns[n].kind == DATE:
                date = parse_date(value)
                if date is not None and date.year >= 1900:  # a sheet's dates start in 1900
                    sheet.write_datetime(row, n, date, self._date)
                else:
                    self._string(row, n, value)
            else:
                self._string(row, n, _as_text(value))

    def _string(self, row: int, col: int, text: str) -> None:
        if self._sheet.write_string(row, col, text, self._quoted if _risky(text) else None) == -2:
            self.cut += 1

    def close(self) -> None:
        try:
            self._book.close()
        except OSError:
            raise
        except Exception as exc:  # the library's own errors: only their names (no data)
            raise OSError(f"the XLSX writer failed ({type(exc).__name__})") from None

    def abort(self) -> None:
        # Some XlsxWriter releases close a workbook left open when it is collected: this one
        # is given up, and its file removed.
        self._book.fileclosed = True


def _width(column: _Column) -> float:
    fixed = {DATE: 11, BOOL: 7, INT: 8, FLOAT: 10}
    width = max(len(column.name), fixed.get(column.kind, column.width))
    return min(width + 2, 60)


class _ParquetWriter:
    """A typed schema (string, int64, float64, bool, date32), written in row groups of
    ``ROW_GROUP_SIZE`` rows (fewer for a wide table, at most ``ROW_GROUP_CELLS`` cells): at
    most one row group is held."""

    def __init__(self, fh: BinaryIO, columns: list[_Column]) -> None:
        self._pa = pa = _library("pyarrow")
        parquet = _library("pyarrow.parquet")
        types = {
            TEXT: pa.string(),
            INT: pa.int64(),
            FLOAT: pa.float64(),
            BOOL: pa.bool_(),
            DATE: pa.date32(),
        }
        self._columns = columns
        names = {c.name for c in columns}
        fields: list[Any] = []
        for column in columns:
            fields.append(pa.field(column.name, types[column.kind]))
            if column.text_too:
                name = f"{column.name}_text"
                while name in names:
                    name += "_"
                names.add(name)
                fields.append(pa.field(name, pa.string()))
        self._schema = pa.schema(fields)
        self._rows: list[list[Any]] = []
        # Rows held at once: fewer for a wide table, so that a row group's cells stay bounded.
        self._group = max(100, min(ROW_GROUP_SIZE, ROW_GROUP_CELLS // max(1, len(fields))))
        self._writer = parquet.ParquetWriter(fh, self._schema)

    def write(self, values: list[Any]) -> None:
        self._rows.append(values)
        if len(self._rows) >= self._group:
            self._flush()

    def _arrays(self) -> Iterator[Sequence[Any]]:
        """The row group's columns, as the schema types them."""
        for column, values in zip(self._columns, zip(*self._rows, strict=True), strict=True):
            if column.kind == DATE:
                dates = [parse_date(v) if type(v) is str else None for v in values]
                yield dates
                if column.text_too:  # the text of the values that are not dates
                    yield [
                        None
                        if d is not None or v is None or (type(v) is str and not v.strip())
                        else _as_text(v)
                        for v, d in zip(values, dates, strict=True)
                    ]
            elif column.mixed:
                yield [None if v is None else _as_text(v) for v in values]
            else:
                yield values

    def _flush(self) -> None:
        if not self._rows:
            return
        pa = self._pa
        try:
            arrays = [
                pa.array(values, type=f.type)
                for values, f in zip(self._arrays(), self._schema, strict=True)
            ]
        except pa.ArrowException as exc:  # a bug here: its message would quote card data
            raise RuntimeError(f"cannot build a Parquet column ({type(exc).__name__})") from None
        self._rows.clear()
        self._writer.write_table(
            pa.Table.from_arrays(arrays, schema=self._schema), row_group_size=self._group
        )

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        self._rows.clear()
        with contextlib.suppress(Exception):
            self._writer.close()


# -- the command ---------------------------------------------------------------------------------


def add_export_parser(sub: Any) -> None:
    """Add ``export`` to the command's subparsers."""
    p = sub.add_parser(
        "export",
        help="write batch results as a table (CSV, XLSX, Parquet or JSONL), one row per card",
        description="Write the record that counts for each input (over the parts of a sharded "
        "run, as merge combines them) as a table: one row per card, a failed input as one "
        "row with its error. The format comes from the output's suffix, or --format; XLSX "
        f"and Parquet need {INSTALL_HINT}.",
    )
    p.add_argument(
        "results", nargs="+", metavar="RESULTS", help="JSONL outputs of cvekyc batch (or merge)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the table (mode 0600; replaced only once complete), or - for standard output "
        "(CSV, or JSONL with --format jsonl)",
    )
    p.add_argument("--format", choices=FORMATS, help="default: from the output's suffix")
    p.add_argument(
        "--verdict",
        action="append",
        type=str.lower,
        choices=_VERDICTS,
        help="only inputs with this verdict (repeatable; with --failed, either)",
    )
    p.add_argument("--failed", action="store_true", help="only inputs that failed")
    p.add_argument("--columns", metavar="A,B,...", help="only these columns, in this order")
    p.add_argument(
        "--confidence",
        action="store_true",
        help="add <field>_confidence after each field (how sure the service is of it)",
    )


def _format_of(args: argparse.Namespace, err: TextIO) -> str:
    named = None if args.output == "-" else Path(args.output).suffix.lower().lstrip(".")
    if args.format is not None:
        if named and named != args.format:
            err.write(f"cvekyc export: warning: writing {args.format} to a file named .{named}\n")
        return str(args.format)
    if named is None:
        return "csv"
    if named not in FORMATS:
        raise UsageError(
            f"cannot tell the format of -o {args.output}: name it .csv, .xlsx, .parquet or "
            ".jsonl, or give --format csv|xlsx|parquet|jsonl"
        )
    return named


def _check_libraries(fmt: str) -> None:
    for name in _LIBRARIES.get(fmt, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(f"writing {fmt} needs {name.split('.')[0]}: {INSTALL_HINT}") from None


def _columns_asked(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UsageError("--columns takes names separated by commas, e.g. key,name,dob")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--columns names {', '.join(twice)} more than once")
    return names


def _check_output(output: Path, parts: Sequence[Path]) -> None:
    if str(output).endswith(("/", os.sep)) or output.is_dir():
        raise UsageError(f"-o {output} names a folder: give the file to write")
    try:
        part = named_among(output.stat(), parts)
    except OSError:
        return
    if part is not None:
        raise UsageError(f"-o {output} is also an input ({part}): write to another file")


def _refuse_records(output: Path) -> Callable[[int], None]:
    def check(fd: int) -> None:
        if holds_records(fd):
            raise UsageError(
                f"{output} holds cvekyc batch records: write the export to another file"
            )

    return check


class _Export:
    """One run of the command: the inputs read, the plan made, the table written."""

    def __init__(self, args: argparse.Namespace, err: TextIO) -> None:
        self.format = _format_of(args, err)
        self.output = None if args.output == "-" else Path(args.output)
        if self.output is None and self.format in _BINARY:
            raise UsageError(f"{self.format} cannot go to standard output: give -o FILE")
        _check_libraries(self.format)  # before anything is read
        self.asked = _columns_asked(args.columns)
        self.confidence = bool(args.confidence)
        self.keep = _Filter(frozenset(args.verdict or ()), bool(args.failed))
        self.parts = batch_outputs(args.results)
        if self.output is not None:
            _check_output(self.output, self.parts)
        try:
            self.results = Results(self.parts)
        except NotRecordsError as exc:
            raise UsageError(f"{exc}: give the JSONL outputs of cvekyc batch") from None
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
        self.survey = _Survey(widths=self.format == "xlsx")
        for record in _read(self.results):
            self.survey.add(record, self.keep)
        if self.format == "xlsx" and self.survey.rows > XLSX_MAX_ROWS:
            raise UsageError(
                f"{self.survey.rows} rows do not fit in a sheet (at most {XLSX_MAX_ROWS}): "
                "export to csv or parquet, or fewer inputs (--verdict, --failed)"
            )
        self.columns = _Plan(self.survey, self.asked, self.confidence).columns
        if self.format == "xlsx" and len(self.columns) > XLSX_MAX_COLUMNS:
            raise UsageError(
                f"{len(self.columns)} columns do not fit in a sheet (at most "
                f"{XLSX_MAX_COLUMNS}): pick them with --columns, or export to csv or parquet"
            )
        self.written = 0
        self.cut = 0

    def rows(self) -> Iterator[list[Any]]:
        getters = [(c.info, c.field) for c in self.columns]
        for record in _read(self.results):
            if not self.keep.keeps(record):
                continue
            for values, info in _rows(record):
                yield [info.get(f) if is_info else values.get(f) for is_info, f in getters]

    def write(self, fh: BinaryIO, scratch: Path | None = None) -> None:
        writer: _Writer
        if self.format == "csv":
            writer = _CsvWriter(fh, self.columns)
        elif self.format == "jsonl":
            writer = _JsonlWriter(fh, self.columns)
        elif self.format == "parquet":
            writer = _ParquetWriter(fh, self.columns)
        else:
            assert scratch is not None
            writer = _XlsxWriter(fh, self.columns, self.survey.rows, scratch)
        try:
            for row in self.rows():
                writer.write(row)
                self.written += 1
            writer.close()
        except BaseException:
            writer.abort()
            raise
        if isinstance(writer, _XlsxWriter):
            self.cut = writer.cut

    def to_file(self, output: Path) -> None:
        with replacing_output(output, _refuse_records(output)) as fh:
            # XlsxWriter keeps the sheet in scratch files until the end: beside the output (its
            # disk has room for it), private, named as stale copies so a killed run's are removed.
            if self.format == "xlsx":
                scratch = Path(
                    tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
                )
                try:
                    self.write(fh, scratch)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            else:
                self.write(fh)

    def summary(self, where: str) -> str:
        s = self.survey
        text = (
            f"cvekyc export: {self.written} rows to {where} (inputs {s.inputs}, failed "
            f"{s.failed}, filtered out {s.filtered})"
        )
        if self.results.unreadable:
            text += f"; {self.results.unreadable} lines that are not records left out"
        if self.cut:
            cells = "a cell" if self.cut == 1 else f"{self.cut} cells"
            text += f"; {cells} cut to the 32,767 characters a sheet's cell holds"
        return text + "\n"


def _refuse_an_input_as_standard_output(out: TextIO, names: Sequence[str]) -> None:
    """Refuse ``-o -`` when standard output is one of the inputs (``>> out.jsonl``): the table
    would be appended to the batch records."""
    try:
        name = named_among(os.fstat(out.fileno()), names)
    except (OSError, ValueError, AttributeError):
        return
    if name is not None:
        raise UsageError(f"standard output is {name}, an input: write to another file")


def run_export(args: argparse.Namespace, out: TextIO | None, err: TextIO) -> int:
    """Run ``cvekyc export``; returns the exit status.

    Raises:
        UsageError: bad arguments, unreadable inputs, a missing library, an output that is an
            input or holds batch records.
    """
    if args.output == "-" and out is not None:
        _refuse_an_input_as_standard_output(out, args.results)
    export = _Export(args, err)
    if export.output is None:
        stream = getattr(out, "buffer", None)
        if stream is None:
            err.write("cvekyc export: -o - but standard output is closed\n")
            return EXIT_WRITE
        assert out is not None
        try:
            out.flush()
            export.write(stream)
            stream.flush()
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise  # its reader went away: the command's usual quiet end
            err.write(f"cvekyc export: cannot write standard output: {exc.strerror or exc}\n")
            return EXIT_WRITE
        err.write(export.summary("standard output"))
        return EXIT_OK
    output = export.output
    try:
        with terminate_as_interrupt():
            export.to_file(output)
    except LockedError:
        raise UsageError(f"{output} is being written by another cvekyc command") from None
    except NotRegularError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    except OSError as exc:
        err.write(
            f"cvekyc export: cannot write {output}: {exc.strerror or exc}; nothing was "
            "written (a file already there is left as it was)\n"
        )
        return EXIT_WRITE
    err.write(export.summary(str(output)))
    return EXIT_OK
