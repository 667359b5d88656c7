"""What the results commands do with a batch: ``cvekyc batch``, ``export`` and ``report``.

1. A batch of 300 inputs made from the bundled specimens (distinct copies, a few exact duplicates,
   a few blank scans), read by ``cvekyc batch --endpoint ocr`` against the emulator in its own
   process; then ``cvekyc export`` to CSV, XLSX, Parquet and JSONL, each read back as a user
   would (the csv module, openpyxl, pyarrow, json) and compared row for row; the summary JSON's
   counts against the records; and ``cvekyc report``.
2. Peak memory and time of ``cvekyc export`` over 100,000 records of about 2 KB, in each format,
   beside the "20 lines of Python" a user would write (``json.loads`` every line into a list,
   ``csv.DictWriter``).
3. The review page at 5,000 entries, with and without images: its size, the time to write it,
   and in headless Chromium (Selenium over Debian's chromedriver) its load time and the time a
   verdict filter takes.

Every command runs as a user runs it, in a process of its own (``python -m cvekyc_async.cli``).
Nothing here is judged: the figures are printed, and written to ``benchmarks/results/``.

    python -m benchmarks.bench_results [--quick] [--rounds N]
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import API_KEY, API_SECRET, emulator, parser, table, write_json
from cvekyc_async import parse_date
from cvekyc_async.emulator import specimens

CLI = [sys.executable, "-m", "cvekyc_async.cli"]
FORMATS = ("csv", "xlsx", "parquet", "jsonl")
MIB = 1024 * 1024


def cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run one ``cvekyc`` command: its process, and its wall time from start to exit."""
    started = time.perf_counter()
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=1800, check=False, env=env
    )
    return proc, time.perf_counter() - started


def checked(proc: subprocess.CompletedProcess[str], *allowed: int) -> None:
    if proc.returncode not in (allowed or (0,)):
        raise SystemExit(
            f"{' '.join(map(str, proc.args[3:5]))} exited {proc.returncode}:\n{proc.stderr}"
        )


# -- 1. a batch against the emulator, exported and read back -------------------------------------


def make_inputs(folder: Path, n: int) -> dict[str, int]:
    """``n`` files from the specimens: distinct copies (a few bytes appended, after the image's
    end, so each is read as its specimen), exact duplicates of some of them (read once, recorded
    as ``same_as``), and blank scans (no document: failures). How many of each."""
    folder.mkdir()
    found = specimens()
    cards = [path.read_bytes() for name, path in found.items() if name != "blank.jpg"]
    blank = found["blank.jpg"].read_bytes()
    duplicates = blanks = max(2, n // 30)
    distinct = n - duplicates - blanks
    written: list[bytes] = []
    for i in range(distinct):
        data = cards[i % len(cards)] + f"\n% copy {i:05d}\n".encode()
        (folder / f"{i:05d}{_suffix(data)}").write_bytes(data)
        written.append(data)
    for j in range(duplicates):
        data = written[j * 7 % distinct]
        (folder / f"dup-{j:03d}{_suffix(data)}").write_bytes(data)
    for j in range(blanks):
        (folder / f"blank-{j:03d}.jpg").write_bytes(blank + f"\n% blank {j:03d}\n".encode())
    return {"distinct copies": distinct, "exact duplicates": duplicates, "blank scans": blanks}


def _suffix(data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return ".pdf"
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def read_back(fmt: str, path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of an export, read with the library a user would use."""
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True)
        rows = list(book.active.iter_rows(values_only=True))
        book.close()
        header = [str(name) for name in rows[0]]
        return header, [dict(zip(header, row, strict=True)) for row in rows[1:]]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        data = pq.read_table(path)
        return data.schema.names, data.to_pylist()
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return list(rows[0]) if rows else [], rows


def parquet_kinds(path: Path) -> dict[str, str]:
    """Each column's kind as the Parquet schema types it: what the other formats are read as."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {}
    for f in pq.read_schema(path):
        if pa.types.is_date(f.type):
            kinds[f.name] = "date"
        elif pa.types.is_boolean(f.type):
            kinds[f.name] = "bool"
        elif pa.types.is_integer(f.type):
            kinds[f.name] = "int"
        elif pa.types.is_floating(f.type):
            kinds[f.name] = "float"
        else:
            kinds[f.name] = "text"
    return kinds


_FORMULA_STARTS = tuple("=+-@\t\r\n\0")


def normalised(fmt: str, value: Any, kind: str) -> str:
    """One cell as text, the same whichever format it was read from: dates as dd/mm/yyyy,
    booleans as true/false, numbers as numbers, empty as empty (CSV cannot tell it from null)."""
    if value is None or value == "":
        return ""
    if kind == "date":
        if isinstance(value, (dt.date, dt.datetime)):
            return value.strftime("%d/%m/%Y")
        date = parse_date(value)
        return date.strftime("%d/%m/%Y") if date else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "bool":
        return str(value).lower()
    if kind == "int":
        return str(int(value))
    if isinstance(value, float) or kind == "float":
        return f"{float(value):.15g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    # CSV puts a quote before text a spreadsheet would run as a formula; the others keep it as is.
    if (
        fmt == "csv"
        and text.startswith("'")
        and text[1:].lstrip(" \u00a0").startswith(_FORMULA_STARTS)
    ):
        return text[1:]
    return text


def table_of(fmt: str, path: Path, kinds: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """An export read back and normalised: its columns and its rows of text."""
    header, rows = read_back(fmt, path)
    if fmt == "parquet":
        # A date column whose values are not all dates keeps the others in <column>_text.
        extra = {f"{name}_text": name for name in header if kinds.get(name) == "date"}
        extra = {text: name for text, name in extra.items() if text in header}
        for row in rows:
            for text, name in extra.items():
                if row[name] is None:
                    row[name] = row[text]
        header = [name for name in header if name not in extra]
    cells = [
        [normalised(fmt, row[name], kinds.get(name, "text")) for name in header] for row in rows
    ]
    return header, cells


def compare(
    reference: tuple[list[str], list[list[str]]], other: tuple[list[str], list[list[str]]]
) -> str:
    """Whether two exports agree, or where they first differ (by row and column, no values)."""
    (ref_header, ref_rows), (header, rows) = reference, other
    if header != ref_header:
        return f"no: columns differ ({len(header)} against {len(ref_header)})"
    if len(rows) != len(ref_rows):
        return f"no: {len(rows)} rows against {len(ref_rows)}"
    differ = [i for i, (a, b) in enumerate(zip(rows, ref_rows, strict=True)) if a != b]
    if not differ:
        return "yes"
    first = differ[0]
    column = next(h for h, a, b in zip(header, rows[first], ref_rows[first], strict=True) if a != b)
    return f"no: {len(differ)} rows differ, first row {first + 1} column {column}"


def record_counts(path: Path) -> dict[str, Any]:
    """The summary's figures counted from the records themselves (the latest of each key)."""
    latest: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            latest[record["key"]] = record
    sent = [r for r in latest.values() if not r.get("same_as")]
    verdicts = Counter(r["assessment"]["verdict"] for r in sent if r.get("assessment"))
    return {
        "inputs": len(latest),
        "ok": sum(r["ok"] is True for r in sent),
        "failed": sum(r["ok"] is not True for r in sent),
        "same_as": len(latest) - len(sent),
        "verdicts": {v: verdicts[v] for v in ("accept", "review", "reject")},
    }


def batch_and_export(tmp: Path, n: int, base_url: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "CVEKYC_API_KEY": API_KEY,
        "CVEKYC_API_SECRET": API_SECRET,
        "CVEKYC_BASE_URL": base_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    made = make_inputs(tmp / "scans", n)
    out, summary_path = tmp / "out.jsonl", tmp / "s.json"
    proc, wall = cli(
        "batch",
        str(tmp / "scans"),
        "-o",
        str(out),
        "--endpoint",
        "ocr",
        "--summary-json",
        str(summary_path),
        env=env,
    )
    checked(proc, 0, 1)  # 1: the blank scans fail
    batch_status = proc.returncode
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    print(f"\n{n} inputs: " + ", ".join(f"{v} {k}" for k, v in made.items()))
    print(
        f"cvekyc batch scans/ -o out.jsonl --endpoint ocr --summary-json s.json: exit "
        f"{proc.returncode}, {wall:.1f} s (the run itself {summary['wall_seconds']:.1f} s, "
        f"{n / summary['wall_seconds']:.0f} inputs/s)"
    )

    counted = record_counts(out)
    from_summary = {
        "inputs": summary["inputs"],
        "ok": summary["ok"],
        "failed": summary["failed"],
        "same_as": summary["shared"],
        "verdicts": summary["verdicts"],
    }
    rows = [
        [
            name,
            _figure(from_summary[name]),
            _figure(counted[name]),
            "yes" if from_summary[name] == counted[name] else "NO",
        ]
        for name in from_summary
    ]
    print()
    print(
        table(
            "The summary JSON (--summary-json) against the records in out.jsonl",
            ["figure", "summary JSON", "out.jsonl", "agree"],
            rows,
        )
    )

    exports: dict[str, dict[str, Any]] = {}
    for fmt in FORMATS:
        path = tmp / f"results.{fmt}"
        proc, wall = cli("export", str(out), "-o", str(path))
        checked(proc)
        exports[fmt] = {"path": path, "seconds": wall, "bytes": path.stat().st_size}
    kinds = parquet_kinds(exports["parquet"]["path"])
    tables = {fmt: table_of(fmt, e["path"], kinds) for fmt, e in exports.items()}
    rows = []
    for fmt in FORMATS:
        header, cells = tables[fmt]
        exports[fmt]["rows"] = len(cells)
        exports[fmt]["agrees"] = (
            "(reference)" if fmt == "jsonl" else compare(tables["jsonl"], tables[fmt])
        )
        rows.append(
            [
                fmt,
                f"{len(cells):,}",
                str(len(header)),
                f"{exports[fmt]['bytes'] / 1024:.0f}",
                f"{exports[fmt]['seconds']:.2f}",
                exports[fmt]["agrees"],
            ]
        )
    print()
    print(
        table(
            "cvekyc export out.jsonl -o results.FORMAT, read back (csv utf-8-sig, openpyxl, "
            "pyarrow, json), compared with the JSONL export row for row",
            ["format", "rows", "columns", "KiB", "seconds", "agrees with jsonl"],
            rows,
        )
    )

    header, cells = tables["csv"]
    shared = [row for row in cells if row[header.index("same_as")]]
    answered = sum(bool(row[header.index("type")]) for row in shared)
    print(f"rows of same_as inputs: {len(shared)}, {answered} of them with the answer they share")

    page = tmp / "r.html"
    proc, wall = cli("report", str(out), "-o", str(page))
    checked(proc)
    size = page.stat().st_size
    print(
        f"\ncvekyc report out.jsonl -o r.html: {size / MIB:.1f} MiB ({size:,} bytes), "
        f"{wall:.1f} s; images from the input files"
    )
    return {
        "inputs_made": made,
        "batch_seconds": summary["wall_seconds"],
        "exit_status": batch_status,
        "summary": from_summary,
        "records": counted,
        "exports": {fmt: {k: v for k, v in e.items() if k != "path"} for fmt, e in exports.items()},
        "report_bytes": size,
        "report_seconds": wall,
    }


def _figure(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


# -- 2. export memory and time ------------------------------------------------------------------

_BOX = [[12.0, 40.5], [230.25, 40.5], [230.25, 58.0], [12.0, 58.0]]


def chip_front(name: str, gender: str, due_date: str) -> dict[str, Any]:
    """A chip card's front as the service reads it: every field, its confidence and its box."""
    info: dict[str, Any] = {
        "id": "@ID@",
        "name": name,
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
        "gender": gender,
        "due_date": due_date,
        "nationality": "Việt Nam",
    }
    for field in ("id", "name", "dob", "hometown", "address", "gender", "due_date", "nationality"):
        info[f"{field}_confidence"] = 0.9731
        info[f"{field}_box"] = _BOX
    return {
        "type": "chip_id_card_front",
        "info": info,
        "valid": True,
        "invalid_message": "Successful",
        "invalid_code": 0,
    }


def record(
    key: str,
    card: dict[str, Any] | None,
    verdict: str | None = None,
    codes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A batch record: an answer of one card with its verdict, or (``card`` None) a failure."""
    base: dict[str, Any] = {
        "schema": 2,
        "key": key,
        "input": f"/data/{key}",
        "sha256": None,
        "size": 183_204,
        "ok": card is not None,
        "result": None,
        "error": None,
        "attempts": 1,
        "elapsed": 0.42,
        "billed": card is not None,
        "assessment": None,
        "written": "2025-01-02T03:04:05.123Z",
        "run": "r-20250102-0304",
        "shard": None,
        "request_id": "req-@N@",
    }
    if card is None:
        base["error"] = {
            "type": "NoDocumentError",
            "message": "no document found in the image",
            "error_code": 1,
            "status_code": 200,
        }
    else:
        base["result"] = {
            "cards": [card],
            "error_code": 0,
            "error_message": "",
            "attempts": 1,
            "elapsed": 0.42,
            "request_id": "req-@N@",
        }
        findings = [
            {"code": c, "severity": verdict, "message": f"{c} found", "fields": [], "rule": "r"}
            for c in codes
        ]
        base["assessment"] = {"verdict": verdict, "findings": findings}
    return base


def templates(thumbnails: list[str] | None = None) -> list[list[str]]:
    """Ten records, one of each kind in the proportions of a real batch (one failure, two to
    review, one to reject, one without expiry, five accepted), each split at its ``@N@``."""
    key = "scans/@N@.jpg"
    kinds: list[dict[str, Any]] = [
        record(key, None),
        record(key, chip_front("TRẦN THỊ BÌNH", "Nữ", "01/02/2030"), "review", ("confidence.low",)),
        record(key, chip_front("LÊ VĂN CƯỜNG", "Nam", "15/08/2031"), "review", ("card.screen",)),
        record(key, chip_front("PHẠM MINH ĐỨC", "Nữ", "20/11/2029"), "reject", ("id.gender",)),
        record(key, chip_front("HOÀNG THỊ LAN", "Nữ", "Không thời hạn"), "accept"),
    ]
    names = ("NGUYỄN VĂN AN", "VŨ THỊ HẠNH", "ĐẶNG QUỐC HUY", "BÙI THU TRANG", "ĐỖ MINH KHOA")
    kinds += [record(key, chip_front(name, "Nam", "01/02/2030"), "accept") for name in names]
    out = []
    for i, kind in enumerate(kinds):
        if thumbnails and kind["ok"]:
            kind["thumbnails"] = [thumbnails[i % len(thumbnails)]]
        text = json.dumps(kind, ensure_ascii=False)
        out.append(text.split("@N@"))
    return out


def write_records(path: Path, n: int, thumbnails: list[str] | None = None) -> Path:
    """``n`` records, built from ``templates`` by putting each one's number in."""
    pieces = templates(thumbnails)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            number = f"{i:06d}"
            line = number.join(pieces[i % len(pieces)])
            fh.write(line.replace("@ID@", f"{i:012d}") + "\n")
    return path


# The peak is the process's own high-water mark (VmHWM): ru_maxrss would count the size of this
# process at the fork that started it.
_PEAK = r"""
def _peak_mib():
    import resource, sys
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except OSError:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / 1024 / (1024 if sys.platform == "darwin" else 1)

import json as _json, sys as _sys
print(_json.dumps({"peak_mib": _peak_mib()}), file=_sys.stderr)
_sys.exit(status)
"""

EXPORT = """
import sys
from cvekyc_async.cli import main
status = main(sys.argv[1:])
"""

IMPORTS_ONLY = """
import cvekyc_async.cli.export, msgspec
status = 0
"""

# What a user writes without the command: every record in a list, then csv.DictWriter.
NAIVE = """
import csv, json, sys

records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
rows = []
for r in records:
    base = {"key": r["key"], "input": r["input"], "ok": r["ok"],
            "verdict": (r.get("assessment") or {}).get("verdict"),
            "error": (r.get("error") or {}).get("type")}
    for card in (r.get("result") or {}).get("cards") or [{}]:
        info = {k: v for k, v in (card.get("info") or {}).items()
                if k != "image" and not k.endswith(("_box", "_confidence"))}
        rows.append({**base, "type": card.get("type"), "valid": card.get("valid"), **info})
fields = list(dict.fromkeys(k for row in rows for k in row))
with open(sys.argv[2], "w", encoding="utf-8-sig", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
print(f"{len(rows)} rows", file=sys.stderr)
status = 0
"""


@dataclass
class Measured:
    peak_mib: float
    seconds: float
    rows: int | None


def measure(program: str, *args: str) -> Measured:
    """Run ``program`` in a fresh process: its peak RSS, its wall time (start to exit, Python's
    start-up and imports included) and the rows ``cvekyc export`` says it wrote."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", program + _PEAK, *args],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - started
    lines = proc.stderr.splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{args[:1]} exited {proc.returncode}:\n{proc.stderr}")
    # "cvekyc export: N rows to ..." from the command, "N rows" from the naive script.
    said = [line.removeprefix("cvekyc export: ").split() for line in lines]
    rows = next((int(words[0]) for words in said if words[1:2] == ["rows"]), None)
    return Measured(json.loads(lines[-1])["peak_mib"], seconds, rows)


def export_memory(tmp: Path, n: int, xlsx_n: int) -> dict[str, Any]:
    started = time.perf_counter()
    source = write_records(tmp / "records.jsonl", n)
    size = source.stat().st_size
    made = time.perf_counter() - started
    print(
        f"\n{n:,} records written in {made:.1f} s: {size / MIB:.0f} MiB of JSONL, "
        f"{size / n:,.0f} bytes a record (a chip card's front: fields, confidences, boxes)"
    )
    sources = {n: source}
    if xlsx_n != n:
        sources[xlsx_n] = write_records(tmp / f"records-{xlsx_n}.jsonl", xlsx_n)
    results: list[dict[str, Any]] = []

    def add(what: str, records: int, got: Measured, out: Path | None) -> None:
        results.append(
            {
                "what": what,
                "records": records,
                "rows": got.rows,
                "peak_mib": got.peak_mib,
                "seconds": got.seconds,
                "bytes": out.stat().st_size if out else None,
            }
        )

    add("python + imports, nothing read", 0, measure(IMPORTS_ONLY), None)
    for fmt in FORMATS:
        records = xlsx_n if fmt == "xlsx" else n
        out = tmp / f"many.{fmt}"
        add(
            f"cvekyc export -o .{fmt}",
            records,
            measure(EXPORT, "export", str(sources[records]), "-o", str(out)),
            out,
        )
        out.unlink()
    out = tmp / "naive.csv"
    add("json.loads into a list + csv.DictWriter", n, measure(NAIVE, str(source), str(out)), out)
    rows = [
        [
            r["what"],
            f"{r['records']:,}",
            "" if r["rows"] is None else f"{r['rows']:,}",
            f"{r['peak_mib']:.0f}",
            f"{r['seconds']:.1f}",
            "" if r["bytes"] is None else f"{r['bytes'] / MIB:.1f}",
        ]
        for r in results
    ]
    print()
    print(
        table(
            "Peak RSS (VmHWM of the process, read as it exits) and wall time (process start "
            "to exit, Python start-up and imports included)",
            ["what", "records", "rows", "peak MiB", "seconds", "output MiB"],
            rows,
        )
    )
    naive = results[-1]["peak_mib"]
    csv_peak = next(r["peak_mib"] for r in results if r["what"].endswith(".csv"))
    print(
        f"\nThe naive script's peak over cvekyc export to CSV: {naive / csv_peak:.1f}x "
        f"({naive:.0f} MiB against {csv_peak:.0f} MiB)"
    )
    return {"records": n, "bytes_per_record": size / n, "runs": results}


# -- 3. the review page in a browser ------------------------------------------------------------


def write_pages(tmp: Path, n: int) -> tuple[list[dict[str, Any]], Counter[str]]:
    """``n`` records with thumbnails pointing at the specimens; the page with and without
    images: its size and the time to write it."""
    found = specimens()
    fronts = [
        str(found[name])
        for name in ("chip_front.jpg", "cccd_front.jpg", "card2024_front.jpg", "passport.jpg")
    ]
    source = write_records(tmp / f"review-{n}.jsonl", n, fronts)
    groups: Counter[str] = Counter()
    with source.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            groups[r["assessment"]["verdict"] if r["ok"] else "failed"] += 1
    pages = []
    for images in (True, False):
        page = tmp / f"review-{'images' if images else 'text'}.html"
        proc, wall = cli(
            "report", str(source), "-o", str(page), *(() if images else ("--no-images",))
        )
        checked(proc)
        pages.append(
            {"images": images, "path": page, "bytes": page.stat().st_size, "seconds": wall}
        )
    return pages, groups


def find_browser() -> tuple[str, str] | str:
    """Chromium and chromedriver, or why the browser part is skipped."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    names = ("chromium", "chromium-browser", "google-chrome")
    binary = next((found for name in names if (found := shutil.which(name))), None)
    binary = binary or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    if binary is None or driver is None:
        return "no chromium or chromedriver (apt-get install chromium chromium-driver)"
    return binary, driver


@contextmanager
def browser(binary: str, driver_path: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # --no-sandbox: Chromium's sandbox does not start as root (CI, containers).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(300)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def load_ms(driver: Any, page: Path) -> float:
    """One fresh load of ``page``: navigation start to the end of the load event."""
    driver.get("about:blank")
    driver.get(page.as_uri())
    deadline = time.monotonic() + 300
    while True:
        got = driver.execute_script(
            "var t = performance.timing;"
            "return t.loadEventEnd > 0 ? t.loadEventEnd - t.navigationStart : null"
        )
        if got is not None:
            return float(got)
        if time.monotonic() > deadline:
            raise SystemExit(f"{page.name} did not load in 300 s")
        time.sleep(0.05)


# From the start of a frame: the change handler with the layout it forces, and the time until
# the next frame has been drawn (a task queued from requestAnimationFrame runs after the paint).
_FILTER = """
var value = arguments[0], done = arguments[arguments.length - 1];
requestAnimationFrame(function () {
  var select = document.getElementById('f-verdict'), started = performance.now();
  select.value = value;
  select.dispatchEvent(new Event('change', {bubbles: true}));
  document.body.offsetHeight;
  var handled = performance.now() - started;
  requestAnimationFrame(function () {
    setTimeout(function () { done([handled, performance.now() - started]); }, 0);
  });
});
"""


def shown(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('shown').textContent"))


def in_browser(
    pages: list[dict[str, Any]], n: int, rejects: int, rounds: int
) -> dict[str, Any] | str:
    found = find_browser()
    if isinstance(found, str):
        return found
    measured: dict[str, Any] = {}
    with browser(*found) as driver:
        version = driver.capabilities.get("browserVersion", "?")
        for page in pages:
            loads = [load_ms(driver, page["path"]) for _ in range(rounds)]
            images_at_load = driver.execute_script("return document.images.length")
            articles = driver.execute_script(
                "return document.querySelectorAll('article.entry').length"
            )
            if articles != n:
                raise SystemExit(f"{page['path'].name} shows {articles} entries, not {n}")
            to_reject, to_all = [], []
            for _ in range(rounds):
                to_reject.append(driver.execute_async_script(_FILTER, "reject"))
                if shown(driver) != f"{rejects} of {n} shown":
                    raise SystemExit(f"the filter left {shown(driver)!r}, not {rejects} of {n}")
                to_all.append(driver.execute_async_script(_FILTER, ""))
            measured["images" if page["images"] else "text"] = {
                "load_ms": loads,
                "reject_ms": to_reject,
                "all_ms": to_all,
                "images_at_load": images_at_load,
            }
    measured["chromium"] = version
    return measured


def review_pages(tmp: Path, n: int, rounds: int, use_browser: bool) -> dict[str, Any]:
    pages, groups = write_pages(tmp, n)
    print(
        f"\n{n:,} entries: "
        + ", ".join(f"{k} {v}" for k, v in sorted(groups.items()))
        + "; thumbnails from the specimens (480 px by default)"
    )
    measured = in_browser(pages, n, groups["reject"], rounds) if use_browser else "--quick"

    def ms(values: list[Any], i: int | None = None) -> str:
        picked = [v if i is None else v[i] for v in values]
        return f"{statistics.median(picked):.0f}"

    rows = []
    for page in pages:
        which = "images" if page["images"] else "text"
        row = [
            f"{n:,}",
            "with" if page["images"] else "without (--no-images)",
            f"{page['bytes'] / MIB:.1f}",
            f"{page['seconds']:.1f}",
        ]
        if isinstance(measured, dict):
            m = measured[which]
            row += [
                ms(m["load_ms"]),
                f"{ms(m['reject_ms'], 0)} / {ms(m['reject_ms'], 1)}",
                f"{ms(m['all_ms'], 0)} / {ms(m['all_ms'], 1)}",
            ]
        rows.append(row)
    header = ["entries", "images", "MiB", "written in s"]
    if isinstance(measured, dict):
        header += ["load ms", "to reject ms", "back to all ms"]
    print()
    print(
        table(
            "cvekyc report: the page's size and the command's wall time (start to exit)",
            header,
            rows,
        )
    )
    if isinstance(measured, dict):
        print(
            f"\nChromium {measured['chromium']} headless (Selenium, chromedriver), medians of "
            f"{rounds}. Load: navigationStart to loadEventEnd of a fresh load. A filter: the "
            "verdict changed by script (its value set, a change event dispatched) at the start "
            "of a frame, timed to the end of the handler and the layout it forces / to the "
            f"next frame drawn. Images attached at load: {measured['images']['images_at_load']}"
            f" of {n - groups['failed']} (the others as they scroll into view)."
        )
    else:
        print(f"\nbrowser part skipped: {measured}")
    return {
        "entries": n,
        "groups": dict(groups),
        "pages": [{k: v for k, v in p.items() if k != "path"} for p in pages],
        "browser": measured,
    }


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    inputs, records, entries = (30, 2_000, 200) if args.quick else (300, 100_000, 5_000)
    xlsx_records = min(records, 10_000) if args.quick else records
    rounds = args.rounds or 3
    with tempfile.TemporaryDirectory(prefix="cvekyc-bench-results-") as folder:
        tmp = Path(folder)
        print(f"Temporary files in {tmp} (removed at the end)", file=sys.stderr)
        print("\n== 1. cvekyc batch, export and report of a batch against the emulator")
        for part in ("batch", "export", "report"):
            (tmp / part).mkdir()
        with emulator() as emu:
            batch = batch_and_export(tmp / "batch", inputs, emu.base_url)
        print("\n== 2. cvekyc export: memory and time")
        exports = export_memory(tmp / "export", records, xlsx_records)
        print("\n== 3. cvekyc report: the review page")
        report = review_pages(tmp / "report", entries, rounds, use_browser=not args.quick)
    path = write_json(
        "results_commands", {"batch": batch, "exports": exports, "report": report}, args.json
    )
    print(f"\nraw numbers: {path}")


if __name__ == "__main__":
    main()
