"""``cvekyc export``: batch results as CSV, XLSX, Parquet and JSONL tables, read back as a user
would read them (the csv module, openpyxl, pyarrow)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cvekyc_async.cli import main
from cvekyc_async.cli.export import HEAD, INSTALL_HINT, ROW_GROUP_SIZE, RUN, TAIL
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests.test_cli import env_for, run

# -- records made by hand --------------------------------------------------------------------------


def card(kind: str = "chip_id_card_front", *, valid: bool = True, **info: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "info": info,
        "valid": valid,
        "invalid_message": "Successful"
        if valid
        else "Photo contains sign of being taken through an electronic screen",
        "invalid_code": 0 if valid else 1,
    }


def front(**changes: Any) -> dict[str, Any]:
    info = {
        "id": "001090012345",
        "name": "NGUYỄN VĂN AN",
        "dob": "01/02/1990",
        "hometown": "Xã Thanh Xuân, Huyện Sóc Sơn, Hà Nội",
        "address_town": "Hà Nội",
        "address_town_code": "01",
        "gender": "Nam",
        "due_date": "01/02/2030",
        "nationality": "Việt Nam",
        "id_confidence": 0.98,
        "name_confidence": 0.91,
        "dob_confidence": 0.97,
        "id_box": [10.0, 20.0, 200.0, 40.0],
        "name_box": [[10.0, 50.0], [200.0, 50.0], [200.0, 70.0], [10.0, 70.0]],
        "image": "aGVsbG8gY2FyZA==",
    }
    info.update(changes)
    return card("chip_id_card_front", **info)


def back(**changes: Any) -> dict[str, Any]:
    info = {
        "issue_date": "15/03/2021",
        "issued_at": "CỤC TRƯỞNG CỤC CẢNH SÁT QUẢN LÝ HÀNH CHÍNH VỀ TRẬT TỰ XÃ HỘI",
        "issue_date_confidence": 0.97,
        "issue_date_box": [1.0, 2.0, 3.0, 4.0],
    }
    info.update(changes)
    return card("chip_id_card_back", **info)


def rec(
    key: str,
    *cards: dict[str, Any],
    verdict: str = "accept",
    codes: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """An ok record of ``cards``, with the trust checks' verdict."""
    record: dict[str, Any] = {
        "key": key,
        "input": key,
        "sha256": None,
        "size": 2048,
        "ok": True,
        "result": {
            "cards": list(cards),
            "error_code": 0,
            "error_message": "",
            "attempts": 1,
            "elapsed": 0.2,
        },
        "error": None,
        "attempts": 1,
        "elapsed": 0.2,
        "billed": True,
        "assessment": {
            "verdict": verdict,
            "findings": [
                {"code": c, "severity": verdict, "message": "m", "fields": [], "rule": "r"}
                for c in codes
            ],
        },
    }
    record.update(extra)
    return record


def failed(key: str, kind: str = "APIConnectionError", **error: Any) -> dict[str, Any]:
    return {
        "key": key,
        "input": key,
        "sha256": None,
        "size": 2048,
        "ok": False,
        "result": None,
        "error": {"type": kind, "message": "the service could not be reached", **error},
        "attempts": 3,
        "elapsed": 4.5,
        "billed": False,
        "assessment": None,
    }


def write(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def export(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """Run ``cvekyc export`` in this process: (exit status, stdout, stderr)."""
    status = main(["export", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- reading the tables back -----------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def read_xlsx(path: Path) -> list[dict[str, Any]]:
    sheet = openpyxl.load_workbook(path).active
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def keys_of(rows: list[dict[str, Any]]) -> list[str]:
    return [row["key"] for row in rows]


# -- a batch output with every kind of row ---------------------------------------------------------


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """One output of a batch: a pair, a card flagged by the service, a no-expiry card, a failure,
    an answer without cards, a copy that shares another's answer, and formula-like values."""
    return write(
        tmp_path / "results.jsonl",
        rec("pair", front(), back(), written="2025-01-02T03:04:05Z", run="r1", request_id="q1"),
        rec("screen", front(name="TRẦN THỊ BÌNH"), verdict="review", codes=("card.screen",)),
        failed("down"),
        rec(
            "old",
            front(due_date="Không thời hạn", dob="12/12/1950"),
            verdict="reject",
            codes=("id.gender", "cmnd.void", "id.gender"),
        ),
        rec("empty"),
        failed("blank", "NoDocumentError", error_code=1, status_code=200),
        rec(
            "formula",
            front(
                name='=HYPERLINK("http://x","y")',
                hometown="+1",
                address_town="-1",
                nationality="@SUM(A1)",
                tilt=-1.5,
                rotation=-90,
            ),
        ),
    )


def test_csv_xlsx_parquet_and_jsonl_hold_the_same_rows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    for suffix in ("csv", "xlsx", "parquet", "jsonl"):
        status, _, err = export(capsys, results, "-o", tmp_path / f"out.{suffix}", "--confidence")
        assert status == 0, err
    schema = pq.read_schema(tmp_path / "out.parquet")
    numbers = {
        f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    }

    def text(value: Any, column: str) -> str:
        if value is None or value == "":
            return ""
        if column in numbers:
            return repr(float(value))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dt.date, dt.datetime)):
            return value.strftime("%d/%m/%Y")
        value = str(value)
        # CSV marks a cell a spreadsheet would run with a leading quote: the one change it makes.
        return value[1:] if value[:2] in ("'=", "'+", "'-", "'@") else value

    def plain(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{k: text(v, k) for k, v in row.items()} for row in rows]

    parquet = read_parquet(tmp_path / "out.parquet")
    for row in parquet:  # the text of a date column's values that are not dates
        text_of_date = row.pop("due_date_text")
        if text_of_date is not None:
            assert row["due_date"] is None
            row["due_date"] = text_of_date
    csv_rows = plain(read_csv(tmp_path / "out.csv"))
    assert len(csv_rows) == 8
    assert plain(read_xlsx(tmp_path / "out.xlsx")) == csv_rows
    assert plain(parquet) == csv_rows
    assert plain(read_jsonl(tmp_path / "out.jsonl")) == csv_rows
    assert list(csv_rows[0]) == [f.name for f in schema if f.name != "due_date_text"]


def test_one_row_per_card_a_failure_or_an_empty_answer_as_one_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    out = tmp_path / "out.csv"
    assert export(capsys, results, "-o", out)[0] == 0
    rows = read_csv(out)
    assert keys_of(rows) == ["pair", "pair", "screen", "down", "old", "empty", "blank", "formula"]
    pair = rows[:2]
    assert [(r["card"], r["card_count"], r["type"]) for r in pair] == [
        ("1", "2", "chip_id_card_front"),
        ("2", "2", "chip_id_card_back"),
    ]
    assert (pair[0]["name"], pair[0]["issue_date"]) == ("NGUYỄN VĂN AN", "")
    assert (pair[1]["name"], pair[1]["issue_date"]) == ("", "15/03/2021")
    card_fields = [c for c in rows[0] if c not in {*HEAD, *TAIL, *RUN}]
    down = rows[3]
    assert (down["error_type"], down["attempts"], down["billed"]) == (
        "APIConnectionError",
        "3",
        "false",
    )
    assert (down["card"], down["card_count"], down["type"], down["verdict"]) == ("", "", "", "")
    assert all(down[c] == "" for c in card_fields)
    blank = rows[6]
    assert (blank["error_type"], blank["error_code"], blank["status_code"]) == (
        "NoDocumentError",
        "1",
        "200",
    )
    empty = rows[5]
    assert (empty["card"], empty["card_count"], empty["error_type"]) == ("", "0", "")
    assert all(empty[c] == "" for c in card_fields)
    old = rows[4]
    assert old["findings"] == "id.gender;cmnd.void"  # each code once, in order
    assert (rows[2]["verdict"], rows[2]["findings"]) == ("review", "card.screen")


def test_columns_come_in_a_stable_documented_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    licence = card("driving_license", valid=True, type="B2", class_code="B2", zeta="z",
                   expiry_date="01/01/2030")  # fmt: skip
    records = write(
        tmp_path / "r.jsonl",
        rec("b", back(religious_extra="x"), shard="1/2"),
        rec("a", front(), licence),
    )
    out = tmp_path / "out.csv"
    assert export(capsys, records, "-o", out)[0] == 0
    with out.open(encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == [
        *HEAD,
        # The Info structs' order (fronts before backs), codes beside their places; no image,
        # no boxes, no confidences; then the undeclared fields sorted; a field named as a fixed
        # column is prefixed.
        "id", "name", "dob", "hometown", "address_town", "address_town_code", "gender",
        "due_date", "nationality", "issue_date", "issued_at",
        "class_code", "expiry_date", "info_type", "religious_extra", "zeta",
        *TAIL,
        "shard",
    ]  # fmt: skip
    assert export(capsys, records, "-o", out, "--confidence")[0] == 0
    with out.open(encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh))
    fields = header[len(HEAD) : header.index("class_code")]
    assert fields == [
        "id", "id_confidence", "name", "name_confidence", "dob", "dob_confidence", "hometown",
        "address_town", "address_town_code", "gender", "due_date", "nationality", "issue_date",
        "issue_date_confidence", "issued_at",
    ]  # fmt: skip
    licence_row = read_csv(out)[2]
    assert (licence_row["type"], licence_row["info_type"]) == ("driving_license", "B2")


def test_the_latest_record_of_a_key_counts_and_an_ok_part_wins_over_a_failed_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one = write(tmp_path / "shard1.jsonl", rec("a", front(name="CŨ")), failed("b"),
                rec("a", front(name="MỚI")), rec("c", front(name="C1")))  # fmt: skip
    two = write(tmp_path / "shard2.jsonl", rec("b", front(name="B")), failed("c"))
    out = tmp_path / "out.csv"
    status, _, err = export(capsys, one, two, "-o", out)
    assert status == 0, err
    assert {r["key"]: r["name"] for r in read_csv(out)} == {"a": "MỚI", "b": "B", "c": "C1"}
    assert "3 rows" in err
    assert "inputs 3, failed 0" in err


def test_a_same_as_copy_gets_the_fields_of_the_answer_it_shares(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sha = "ab" * 32
    records = write(
        tmp_path / "r.jsonl",
        rec(
            "copy.jpg", sha256=sha, same_as="first.jpg", billed=False, result=None, assessment=None
        ),
        rec("first.jpg", front(name="LÊ VĂN CHUNG"), back(), sha256=sha, verdict="review"),
    )
    out = tmp_path / "out.xlsx"
    assert export(capsys, records, "-o", out)[0] == 0
    rows = read_xlsx(out)
    copy = [r for r in rows if r["key"] == "copy.jpg"]
    assert [(r["card"], r["type"], r["name"]) for r in copy] == [
        (1, "chip_id_card_front", "LÊ VĂN CHUNG"),
        (2, "chip_id_card_back", None),
    ]
    assert {(r["same_as"], r["billed"], r["verdict"]) for r in copy} == {
        ("first.jpg", False, "review")
    }
    assert copy[1]["issue_date"] == dt.datetime(2021, 3, 15)


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["--verdict", "accept"], ["pair", "empty", "formula"]),
        (["--verdict", "review", "--verdict", "reject"], ["screen", "old"]),
        (["--failed"], ["down", "blank"]),
        (["--verdict", "reject", "--failed"], ["down", "old", "blank"]),
    ],
)
def test_verdict_and_failed_filters_keep_the_inputs_asked_for(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    results: Path,
    args: list[str],
    kept: list[str],
) -> None:
    out = tmp_path / "out.csv"
    status, _, err = export(capsys, results, "-o", out, *args)
    assert status == 0, err
    assert list(dict.fromkeys(keys_of(read_csv(out)))) == kept
    assert f"filtered out {7 - len(kept)})" in err


def test_columns_picks_and_orders_them_and_names_the_choices_of_an_unknown_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    out = tmp_path / "out.csv"
    status, _, err = export(capsys, results, "-o", out, "--columns", "name, key,dob,religious")
    assert status == 0, err
    rows = read_csv(out)
    assert list(rows[0]) == ["name", "key", "dob", "religious"]  # a documented field, empty
    assert rows[0] == {"name": "NGUYỄN VĂN AN", "key": "pair", "dob": "01/02/1990", "religious": ""}
    status, _, err = export(capsys, results, "-o", out, "--columns", "key,name", "--confidence")
    assert status == 0, err
    assert list(read_csv(out)[0]) == ["key", "name", "name_confidence"]
    out.unlink()
    status, _, err = export(capsys, results, "-o", out, "--columns", "key,nmae,id_box,image")
    assert status == 2
    assert "no column nmae, id_box, image" in err
    assert "the columns are key, input, card," in err
    assert "name, dob" in err
    assert "tilt" in err  # the data's own fields too
    assert not out.exists()


def test_cells_a_spreadsheet_would_run_are_neutralised_and_numbers_stay_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    for suffix in ("csv", "xlsx"):
        assert export(capsys, results, "-o", tmp_path / f"out.{suffix}")[0] == 0
    row = read_csv(tmp_path / "out.csv")[-1]
    assert row["name"] == '\'=HYPERLINK("http://x","y")'
    assert (row["hometown"], row["address_town"], row["nationality"]) == ("'+1", "'-1", "'@SUM(A1)")
    assert (row["tilt"], row["rotation"]) == ("-1.5", "-90")  # numbers, not text
    assert row["key"] == "formula"

    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    header = [c.value for c in sheet[1]]
    cells = {name: sheet.cell(row=sheet.max_row, column=n + 1) for n, name in enumerate(header)}
    for name, shown in [
        ("name", '=HYPERLINK("http://x","y")'),
        ("hometown", "+1"),
        ("address_town", "-1"),
        ("nationality", "@SUM(A1)"),
    ]:
        # A string cell, never a formula, with Excel's own mark for text typed after a quote.
        assert (cells[name].value, cells[name].data_type, cells[name].quotePrefix) == (
            shown,
            "s",
            True,
        )
    assert (cells["tilt"].value, cells["tilt"].data_type) == (-1.5, "n")
    assert (cells["rotation"].value, cells["rotation"].data_type) == (-90, "n")
    assert cells["id"].quotePrefix is False
    assert (cells["id"].value, cells["id"].data_type) == ("001090012345", "s")  # leading zeros


def test_a_key_or_input_that_looks_like_a_formula_is_neutralised_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = write(tmp_path / "r.jsonl", rec("=cmd|' /C calc'!A0", front(name=" =1+1")),
                    rec("@x", input=["-front.jpg", "back.jpg"]))  # fmt: skip
    out = tmp_path / "out.csv"
    assert export(capsys, records, "-o", out)[0] == 0
    rows = read_csv(out)
    assert (rows[0]["key"], rows[0]["input"], rows[0]["name"]) == (
        "'=cmd|' /C calc'!A0",
        "'=cmd|' /C calc'!A0",
        "' =1+1",
    )
    assert (rows[1]["key"], rows[1]["input"]) == ("'@x", "'-front.jpg | back.jpg")


def test_dates_are_dates_in_xlsx_and_parquet_and_a_no_expiry_text_is_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    for suffix in ("xlsx", "parquet", "csv"):
        assert export(capsys, results, "-o", tmp_path / f"out.{suffix}")[0] == 0
    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    header = [c.value for c in sheet[1]]
    dob, due = header.index("dob") + 1, header.index("due_date") + 1
    first, old = sheet.cell(row=2, column=dob), sheet.cell(row=6, column=due)
    assert (first.value, first.is_date, first.number_format) == (
        dt.datetime(1990, 2, 1),
        True,
        "dd/mm/yyyy",
    )
    assert (old.value, old.data_type) == ("Không thời hạn", "s")
    assert sheet.cell(row=6, column=dob).value == dt.datetime(1950, 12, 12)

    table = pq.read_table(tmp_path / "out.parquet")
    for name in ("dob", "due_date", "issue_date"):
        assert table.schema.field(name).type == pa.date32()
    assert table.schema.field("due_date_text").type == pa.string()
    names = table.column_names
    assert names.index("due_date_text") == names.index("due_date") + 1
    rows = table.to_pylist()
    assert (rows[0]["dob"], rows[0]["due_date"], rows[0]["due_date_text"]) == (
        dt.date(1990, 2, 1),
        dt.date(2030, 2, 1),
        None,
    )
    assert (rows[4]["due_date"], rows[4]["due_date_text"]) == (None, "Không thời hạn")
    csv_rows = read_csv(tmp_path / "out.csv")
    assert (csv_rows[0]["dob"], csv_rows[4]["due_date"]) == ("01/02/1990", "Không thời hạn")


def test_parquet_columns_are_typed_and_row_groups_bounded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    n = 2 * ROW_GROUP_SIZE + 500
    records = write(tmp_path / "r.jsonl", *(rec(f"k{i}", front(id=f"{i:012d}")) for i in range(n)))
    out = tmp_path / "out.parquet"
    assert export(capsys, records, "-o", out, "--confidence")[0] == 0
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == n
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [
        ROW_GROUP_SIZE,
        ROW_GROUP_SIZE,
        500,
    ]
    schema = pq.read_schema(out)
    assert [schema.field(c).type for c in ("key", "card", "valid", "id_confidence", "dob")] == [
        pa.string(),
        pa.int64(),
        pa.bool_(),
        pa.float64(),
        pa.date32(),
    ]


def test_xlsx_has_a_frozen_header_an_autofilter_and_real_booleans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    out = tmp_path / "out.xlsx"
    assert export(capsys, results, "-o", out)[0] == 0
    sheet = openpyxl.load_workbook(out).active
    assert sheet.title == "results"
    assert sheet.freeze_panes == "A2"
    assert sheet.max_row == 9  # the header and 8 rows
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(row=9, column=sheet.max_column).coordinate}"
    assert sheet["A1"].font.b is True
    header = [c.value for c in sheet[1]]
    valid = sheet.cell(row=3, column=header.index("valid") + 1)
    assert (valid.value, valid.data_type) == (True, "b")


def test_text_longer_than_a_sheet_cell_holds_is_cut_and_said(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    long = "Đ" * 40_000
    records = write(tmp_path / "r.jsonl", rec("a", card("vehicle_registration_front", note=long)))
    for suffix in ("xlsx", "csv"):
        status, _, err = export(capsys, records, "-o", tmp_path / f"out.{suffix}")
        assert status == 0
        assert ("a cell cut to the 32,767 characters" in err) == (suffix == "xlsx")
    assert read_xlsx(tmp_path / "out.xlsx")[0]["note"] == long[:32_767]
    assert read_csv(tmp_path / "out.csv")[0]["note"] == long


def test_csv_starts_with_a_byte_order_mark_and_every_output_is_private(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    for suffix in ("csv", "xlsx", "parquet", "jsonl"):
        out = tmp_path / f"out.{suffix}"
        out.write_bytes(b"an older export")
        out.chmod(0o644)
        assert export(capsys, results, "-o", out)[0] == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = (tmp_path / "out.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbfkey,input,card,")
    assert "NGUYỄN VĂN AN".encode() in data
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv",
        "out.jsonl",
        "out.parquet",
        "out.xlsx",
        "results.jsonl",
    ]  # no copies or scratch folders left beside them


def test_the_format_comes_from_the_suffix_or_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    status, _, err = export(capsys, results, "-o", tmp_path / "out.txt")
    assert status == 2
    assert "name it .csv, .xlsx, .parquet or .jsonl, or give --format csv|xlsx|parquet|jsonl" in err
    assert not (tmp_path / "out.txt").exists()
    assert export(capsys, results, "-o", tmp_path / "out.txt", "--format", "jsonl")[0] == 0
    assert len(read_jsonl(tmp_path / "out.txt")) == 8
    assert export(capsys, results, "-o", tmp_path / "OUT.XLSX")[0] == 0
    assert len(read_xlsx(tmp_path / "OUT.XLSX")) == 8
    status, _, err = export(capsys, results, "-o", tmp_path / "out.csv", "--format", "jsonl")
    assert status == 0
    assert "warning: writing jsonl to a file named .csv" in err
    assert len(read_jsonl(tmp_path / "out.csv")) == 8


def test_standard_output_takes_csv_and_jsonl_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    status, out, err = export(capsys, results, "-o", "-")
    assert status == 0, err
    assert out.startswith("\ufeffkey,input,card,")
    assert len(list(csv.DictReader(out.removeprefix("\ufeff").splitlines()))) == 8
    assert "8 rows to standard output" in err
    status, out, _ = export(capsys, results, "-o", "-", "--format", "jsonl", "--failed")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["down", "blank"]
    for fmt in ("xlsx", "parquet"):
        status, out, err = export(capsys, results, "-o", "-", "--format", fmt)
        assert status == 2
        assert f"{fmt} cannot go to standard output" in err
        assert out == ""


def test_an_output_that_is_an_input_or_holds_batch_records_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    before = results.read_bytes()
    status, _, err = export(capsys, results, "-o", results, "--format", "jsonl")
    assert status == 2
    assert "is also an input" in err
    other = write(tmp_path / "other.jsonl", rec("x", front()))
    status, _, err = export(capsys, results, "-o", other)
    assert status == 2
    assert "holds cvekyc batch records" in err
    assert results.read_bytes() == before
    assert "NGUYỄN" in other.read_text("utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    status, _, err = export(capsys, results, "-o", link)
    assert status == 2
    assert not (tmp_path / "elsewhere.csv").exists()


def test_inputs_that_are_missing_or_not_records_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = export(capsys, tmp_path / "none.jsonl", "-o", tmp_path / "out.csv")
    assert (status, "none.jsonl: no such file" in err) == (2, True)
    notes = tmp_path / "notes.csv"
    notes.write_text("path\nscan.jpg\n", "utf-8")
    status, _, err = export(capsys, notes, "-o", tmp_path / "out.csv")
    assert (status, "holds something other than cvekyc batch records" in err) == (2, True)
    assert not (tmp_path / "out.csv").exists()


# Writes past a file size limit fail with EFBIG, as on a full disk.
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))
from cvekyc_async.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("suffix", ["csv", "xlsx", "parquet"])
def test_a_failed_write_exits_3_and_leaves_the_old_output_as_it_was(
    tmp_path: Path, suffix: str
) -> None:
    records = write(tmp_path / "r.jsonl", *(rec(f"k{i}", front(), back()) for i in range(600)))
    out = tmp_path / f"out.{suffix}"
    out.write_bytes(b"the export of yesterday")
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED, "export", str(records), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write {out}" in proc.stderr
    assert "NGUYỄN" not in proc.stderr
    assert out.read_bytes() == b"the export of yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, "r.jsonl"]


def test_an_output_that_cannot_be_created_exits_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    (tmp_path / "file").write_text("", "utf-8")
    status, _, err = export(capsys, results, "-o", tmp_path / "file" / "out.csv")
    assert status == 3
    assert "cannot write" in err


def test_copies_a_killed_export_left_beside_the_output_are_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    out = tmp_path / "out.xlsx"
    (tmp_path / ".out.xlsx.k1l2m3.tmp").write_bytes(b"half a sheet of card data")
    scratch = tmp_path / ".out.xlsx.n4o5p6.tmp"
    scratch.mkdir()
    (scratch / "tmprows").write_text("<row>card data</row>", "utf-8")
    (tmp_path / ".other.xlsx.q7.tmp").write_bytes(b"another output's")
    assert export(capsys, results, "-o", out)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.xlsx.q7.tmp",
        "out.xlsx",
        "results.jsonl",
    ]


def test_sigterm_during_an_export_leaves_the_old_output_and_nothing_else(tmp_path: Path) -> None:
    source = write_many(tmp_path / "results.jsonl", 20_000)
    out = tmp_path / "out.xlsx"
    out.write_bytes(b"the export of yesterday")
    with subprocess.Popen(
        [sys.executable, "-m", "cvekyc_async.cli", "export", str(source), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the new copy is being written
            if any(p.name.startswith(".out.xlsx.") for p in tmp_path.iterdir()):
                break
            time.sleep(0.02)
        time.sleep(0.3)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out.read_bytes() == b"the export of yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx", "results.jsonl"]


def test_more_rows_than_a_sheet_holds_is_refused_before_writing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    results: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cvekyc_async.cli.export as command

    monkeypatch.setattr(command, "XLSX_MAX_ROWS", 5)
    status, _, err = export(capsys, results, "-o", tmp_path / "out.xlsx")
    assert status == 2
    assert "8 rows do not fit in a sheet (at most 5): export to csv or parquet" in err
    assert not (tmp_path / "out.xlsx").exists()
    assert export(capsys, results, "-o", tmp_path / "out.xlsx", "--failed")[0] == 0


_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if it were not installed
from cvekyc_async.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("suffix", "library"), [("xlsx", "xlsxwriter"), ("parquet", "pyarrow")])
def test_without_the_export_extra_xlsx_and_parquet_say_what_to_install(
    tmp_path: Path, results: Path, suffix: str, library: str
) -> None:
    blocked = "xlsxwriter,pyarrow,pyarrow.parquet"
    out = tmp_path / f"out.{suffix}"
    # The input does not exist: the message comes before anything is read.
    args = ["export", str(tmp_path / "missing.jsonl"), "-o", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT, blocked, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"cvekyc export: writing {suffix} needs {library}: {INSTALL_HINT}\n"
    assert INSTALL_HINT == "pip install 'cvekyc-async[export]'"
    assert not out.exists()
    # CSV and JSONL need nothing beyond the base install.
    for plain in ("csv", "jsonl"):
        args = ["export", str(results), "-o", str(tmp_path / f"out.{plain}")]
        proc = subprocess.run(
            [sys.executable, "-c", _WITHOUT, blocked, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr


def test_the_summary_counts_rows_inputs_failures_and_filtered_without_card_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, results: Path
) -> None:
    out = tmp_path / "out.xlsx"
    status, stdout, err = export(capsys, results, "-o", out, "--verdict", "accept", "--failed")
    assert status == 0
    assert stdout == ""
    assert err == (f"cvekyc export: 6 rows to {out} (inputs 7, failed 2, filtered out 2)\n")


# -- bounded memory --------------------------------------------------------------------------------

_BOX = [[12.0, 40.5], [230.25, 40.5], [230.25, 58.0], [12.0, 58.0]]


def write_many(path: Path, n: int) -> Path:
    """``n`` records of a chip card front as the service reads it (about 2.2 KB each), written
    from one template."""
    info: dict[str, Any] = {
        "id": "@ID@",
        "name": "NGUYỄN THỊ THANH HƯƠNG",
        "dob": "01/02/1990",
        "hometown": "Xã Thanh Xuân, Huyện Sóc Sơn, Hà Nội",
        "address": "Số 12 Ngõ 34 Phố Nguyễn Trãi, Phường Thượng Đình, Quận Thanh Xuân, Hà Nội",
        "address_town": "Hà Nội",
        "address_town_code": "01",
        "address_district": "Quận Thanh Xuân",
        "address_district_code": "009",
        "address_ward": "Phường Thượng Đình",
        "address_ward_code": "00367",
        "hometown_town": "Hà Nội",
        "hometown_town_code": "01",
        "hometown_district": "Huyện Sóc Sơn",
        "hometown_district_code": "016",
        "hometown_ward": "Xã Thanh Xuân",
        "hometown_ward_code": "00376",
        "gender": "Nữ",
        "due_date": "01/02/2030",
        "nationality": "Việt Nam",
    }
    for name in ("id", "name", "dob", "hometown", "address", "gender", "due_date", "nationality"):
        info[f"{name}_confidence"] = 0.9731
        info[f"{name}_box"] = _BOX
    record = rec("scans/@N@.jpg", card(**info), verdict="review", codes=("confidence.low",),
                 input="/data/scans/@N@.jpg", schema=2, written="2025-01-02T03:04:05Z",
                 run="r-20250102", shard="1/4", request_id="req-@N@")  # fmt: skip
    pieces = json.dumps(record, ensure_ascii=False).split("@N@")
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(str(i).join(pieces).replace("@ID@", f"{i:012d}") + "\n")
    return path


# The command, with its peak resident memory and run time on stderr. The peak is the process's own
# high-water mark (VmHWM): ru_maxrss would count the test process's size at the fork that
# started it.
_MEASURED = """
import json, resource, sys, time
from cvekyc_async.cli import main
started = time.perf_counter()
status = main(sys.argv[1:])
seconds = time.perf_counter() - started
try:
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
except OSError:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kib = kib / 1024 if sys.platform == "darwin" else kib
print(json.dumps({"status": status, "peak_mib": kib / 1024, "seconds": seconds}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_many(tmp_path_factory.mktemp("many") / "results.jsonl", 100_000)


# Holding every record decoded takes about 1.2 GiB for these 100,000 records (230 MB of JSONL)
# and 155 MiB for 10,000 of them. Measured here: CSV 68 MiB, Parquet 161 MiB (pyarrow itself is
# about 70, one row group of rows about 50), XLSX 46 MiB on 10,000 records (XlsxWriter takes about
# 0.27 s per 1,000 rows of 40 cells: its test is smaller, and its memory does not grow with the
# rows).
@pytest.mark.parametrize(
    ("suffix", "records", "bound_mib"),
    [("csv", 100_000, 120), ("parquet", 100_000, 250), ("xlsx", 10_000, 90)],
)
def test_memory_stays_bounded_whatever_the_number_of_records(
    tmp_path: Path, many: Path, suffix: str, records: int, bound_mib: int
) -> None:
    pytest.importorskip("resource")
    source = many
    if records < 100_000:
        source = write_many(tmp_path / "results.jsonl", records)
    out = tmp_path / f"out.{suffix}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, "export", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    measured = json.loads(proc.stderr.splitlines()[-1])
    assert measured["status"] == 0, proc.stderr
    assert f"{records} rows to {out}" in proc.stderr
    assert measured["peak_mib"] < bound_mib, measured
    print(f"{suffix}: {records} records, {measured}, {time.monotonic() - started:.1f} s in all")
    if suffix == "parquet":
        assert pq.ParquetFile(out).metadata.num_rows == records
    elif suffix == "csv":
        with out.open("rb") as fh:
            assert sum(1 for _ in fh) == records + 1


# -- the real command against the emulator ---------------------------------------------------------


def test_export_of_a_batch_run_against_the_emulator(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = specimen_path("chip_front.jpg").parent
    singles = tmp_path / "singles.jsonl"
    proc = run("batch", str(folder), "--endpoint", "ocr", "-o", str(singles),
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # blank.jpg holds no document
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(
        f"front,back\n{folder / 'chip_front.jpg'},{folder / 'chip_back.jpg'}\n", "utf-8"
    )
    pairs = tmp_path / "pairs.jsonl"
    proc = run("batch", str(manifest), "--endpoint", "cards", "--allow-outside", "-o", str(pairs),
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    requests = cv_emulator.stats()["requests"]

    out = tmp_path / "all.xlsx"
    proc = run("export", str(singles), str(pairs), "-o", str(out), "--confidence")
    assert proc.returncode == 0, proc.stderr
    assert cv_emulator.stats()["requests"] == requests  # exporting sends nothing
    rows = read_xlsx(out)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(Path(row["input"].split(" | ")[0]).name, []).append(row)
    chip = by_name["chip_front.jpg"]
    assert chip[0]["name"] == "BÙI MINH CƯỜNG"
    assert chip[0]["id"] == "040204683524"
    assert isinstance(chip[0]["dob"], dt.datetime)
    assert isinstance(chip[0]["id_confidence"], float)
    assert [r["card"] for r in by_name["two_sides.jpg"]] == [1, 2]
    # The pair: one input, both sides, front then back.
    pair = [r for r in chip if " | " in r["input"]]
    assert [(r["card"], r["card_count"], r["type"]) for r in pair] == [
        (1, 2, "chip_id_card_front"),
        (2, 2, "chip_id_card_back"),
    ]
    assert pair[0]["input"] == f"{folder / 'chip_front.jpg'} | {folder / 'chip_back.jpg'}"
    (blank,) = by_name["blank.jpg"]
    assert (blank["error_type"], blank["error_code"], blank["card"]) == ("NoDocumentError", 1, None)
    assert by_name["cccd_front.jpg"][0]["due_date"] == "Không thời hạn"
    assert {r["verdict"] for r in rows if r["error_type"] is None} <= {"accept", "review", "reject"}
    inputs = len(singles.read_text("utf-8").splitlines()) + 1
    assert f"{len(rows)} rows to {out} (inputs {inputs}, failed 1, filtered out 0)" in proc.stderr
    assert "BÙI" not in proc.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


# -- from a hostile review ------------------------------------------------------------------------


def test_a_formula_after_a_semicolon_or_in_fullwidth_signs_is_neutralised(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Where the list separator is ";" (Vietnamese settings of Windows), a spreadsheet splits a
    # cell there, and the part after it is a cell of its own.
    records = write(
        tmp_path / "r.jsonl",
        rec(
            "a",
            front(
                name="NGUYEN;=cmd|' /C calc'!A0;X",
                address="Ha Noi; -2+3;",
                hometown="\uff1d1+1",
                nationality="\ufe661",
            ),
        ),
        rec("b", front(**{"=HYPERLINK(1)": "x"})),
    )
    for suffix in ("csv", "xlsx"):
        assert export(capsys, records, "-o", tmp_path / f"out.{suffix}")[0] == 0
    raw = (tmp_path / "out.csv").read_text("utf-8-sig")
    for segment in (cell for line in raw.splitlines() for part in line.split(",")
                    for cell in part.split(";")):  # fmt: skip
        assert segment.strip(' "')[:1] not in set("=+-@\uff1d\ufe66"), segment
    row = read_csv(tmp_path / "out.csv")[0]
    assert row["name"] == "NGUYEN;'=cmd|' /C calc'!A0;X"
    assert row["address"] == "Ha Noi; '-2+3;"
    assert (row["hometown"], row["nationality"]) == ("'\uff1d1+1", "'\ufe661")
    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx").active
    header = {cell.value: cell for cell in sheet[1]}
    assert header["=HYPERLINK(1)"].quotePrefix is True
    assert header["=HYPERLINK(1)"].data_type == "s"


def test_card_fields_named_as_fixed_columns_each_keep_a_column_of_their_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fields = {"type": "T", "info_type": "I", "info_info_type": "II", "key": "K"}
    records = write(tmp_path / "r.jsonl", rec("a", card("vehicle_registration_front", **fields)))
    out = tmp_path / "out.jsonl"
    shown = []
    for seed in ("1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-m", "cvekyc_async.cli", "export", str(records), "-o", str(out)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed},
        )  # fmt: skip
        assert proc.returncode == 0
        shown.append(read_jsonl(out)[0])
    assert shown[0] == shown[1] == shown[2]  # the same columns whatever the hash seed
    row = shown[0]
    assert row["type"] == "vehicle_registration_front"
    assert sorted(v for k, v in row.items() if k.startswith("info_")) == ["I", "II", "K", "T"]


def test_numbers_too_large_for_a_column_type_are_kept_as_text(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = -99999999999999999999999
    records = write(tmp_path / "r.jsonl", rec("a", front(bigneg=big, dob=19900201)))
    for suffix in ("parquet", "xlsx", "csv"):
        assert export(capsys, records, "-o", tmp_path / f"out.{suffix}")[0] == 0
    row = read_parquet(tmp_path / "out.parquet")[0]
    assert row["bigneg"] == str(big)
    # A documented date stays a date column; a value that is no date goes to its text column.
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert schema.field("dob").type == pa.date32()
    assert (row["dob"], row["dob_text"]) == (None, "19900201")


def test_answers_with_too_many_fields_are_refused_unless_columns_are_picked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = write(tmp_path / "r.jsonl", *(rec(f"k{i}", front(**{f"extra_{i}": "x"}))
                                            for i in range(1_001)))  # fmt: skip
    status, _, err = export(capsys, records, "-o", tmp_path / "out.parquet")
    assert status == 2
    assert "--columns" in err
    assert not (tmp_path / "out.parquet").exists()
    status, _, err = export(capsys, records, "-o", tmp_path / "out.csv", "--columns", "key,extra_7")
    assert status == 0, err
    assert read_csv(tmp_path / "out.csv")[7] == {"key": "k7", "extra_7": "x"}


EXPORT = [sys.executable, "-m", "cvekyc_async.cli", "export"]


def test_standard_output_that_fails_or_is_an_input_is_said_not_a_traceback(
    tmp_path: Path, results: Path
) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*EXPORT, str(results), "-o", "-"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == 3
    assert "cannot write standard output" in proc.stderr
    assert "Traceback" not in proc.stderr
    before = results.read_bytes()
    with results.open("a") as appended:
        proc = subprocess.run(
            [*EXPORT, str(results), "-o", "-"], stdout=appended, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == 2
    assert "an input" in proc.stderr
    assert results.read_bytes() == before


def test_a_record_that_does_not_read_whole_is_left_out_and_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = tmp_path / "r.jsonl"
    write(records, rec("a", front()))
    with records.open("a") as fh:
        fh.write('{"key": "b", "ok": true, "result": {"cards": [], "n": 1e999}}\n')
    write(tmp_path / "c.jsonl", rec("c", front()))
    with records.open("a") as fh:
        fh.write((tmp_path / "c.jsonl").read_text())
    status, _, err = export(capsys, records, "-o", tmp_path / "out.csv", "--verdict", "ACCEPT")
    assert status == 0, err
    assert keys_of(read_csv(tmp_path / "out.csv")) == ["a", "c"]
    assert "1 lines that are not records left out" in err
