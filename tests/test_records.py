"""Reading batch outputs back (``cvekyc_async.cli.records.Results``): the record that counts for
each key, over one output or several parts, with shared answers resolved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cvekyc_async.cli.records import NotRecordsError, RecordsChangedError, Results, cards_of

SHA_A, SHA_B = "a" * 64, "b" * 64


def rec(key: str, ok: bool, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": key,
        "input": key,
        "sha256": None,
        "ok": ok,
        "result": {"cards": [{"type": "passport", "info": {"id": key}}]} if ok else None,
        "error": None if ok else {"type": "APIConnectionError", "message": "x"},
        "attempts": 1,
        "billed": ok,
        "assessment": {"verdict": "accept", "findings": []} if ok else None,
    }
    record.update(extra)
    return record


def write(path: Path, *records: dict[str, Any], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)
    return path


def test_within_one_output_the_latest_record_of_a_key_counts(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", False), rec("b", True), rec("a", True),
                 rec("b", False))  # fmt: skip
    results = Results([part])
    assert [(r["key"], r["ok"]) for r in results.records()] == [("a", True), ("b", False)]
    assert (len(results), results.ok, results.read) == (2, 1, 4)


def test_across_parts_an_ok_record_wins_over_a_failure_and_the_later_part_among_equals(
    tmp_path: Path,
) -> None:
    one = write(tmp_path / "1.jsonl", rec("a", True, attempts=1), rec("b", False, attempts=1),
                rec("c", False, attempts=1))  # fmt: skip
    two = write(tmp_path / "2.jsonl", rec("a", False, attempts=2), rec("b", True, attempts=2),
                rec("c", False, attempts=2))  # fmt: skip
    got = {r["key"]: (r["ok"], r["attempts"]) for r in Results([one, two]).records()}
    assert got == {"a": (True, 1), "b": (True, 2), "c": (False, 2)}


def test_a_same_as_record_takes_the_answer_it_shares_and_stays_unbilled(tmp_path: Path) -> None:
    part = write(
        tmp_path / "a.jsonl",
        rec("first", True, sha256=SHA_A),
        rec(
            "copy", True, sha256=SHA_A, same_as="first", result=None, billed=False, assessment=None
        ),
    )
    copy = next(r for r in Results([part]).records() if r["key"] == "copy")
    assert cards_of(copy)[0]["info"]["id"] == "first"
    assert copy["assessment"]["verdict"] == "accept"
    assert copy["billed"] is False
    assert copy["same_as"] == "first"


def test_a_same_as_record_finds_its_answer_in_another_part(tmp_path: Path) -> None:
    one = write(tmp_path / "1.jsonl", rec("copy", True, sha256=SHA_B, same_as="first",
                                           result=None))  # fmt: skip
    two = write(tmp_path / "2.jsonl", rec("first", True, sha256=SHA_B))
    copy = next(r for r in Results([one, two]).records() if r["key"] == "copy")
    assert cards_of(copy)[0]["info"]["id"] == "first"


def test_a_line_cut_short_and_lines_that_are_not_records_are_left_out(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", True), tail=b'not json\n{"key": "b", "ok"')
    results = Results([part])
    assert [r["key"] for r in results.records()] == ["a"]
    assert results.unreadable == 1


@pytest.mark.parametrize("content", [b"path\nscan.jpg\n", b'{"name": "x"}\n', b"\x89PNG\r\n"])
def test_a_file_that_holds_no_records_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    other = tmp_path / "notes.csv"
    other.write_bytes(content)
    with pytest.raises(NotRecordsError, match=r"notes\.csv holds something other than"):
        Results([other])


def test_lines_are_the_records_as_written(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", False), rec("a", True))
    (line,) = Results([part]).lines()
    assert json.loads(line) == rec("a", True)


def test_merge_streams_a_large_part_in_bounded_memory(tmp_path: Path) -> None:
    # 15,000 records of 4 KB: 60 MB. Holding the lines (as merge once did) costs at least that;
    # the index of keys costs a few MB.
    part = tmp_path / "part.jsonl"
    filler = "x" * 4000
    with part.open("w", encoding="utf-8") as fh:
        for i in range(15_000):
            record = rec(f"scans/{i:06d}.jpg", i % 7 != 0, sha256=f"{i:064x}")
            if record["result"]:
                record["result"]["cards"][0]["info"]["address"] = filler
            else:
                record["error"]["message"] = filler
            fh.write(json.dumps(record) + "\n")
    code = (
        "import resource, sys\n"
        "from cvekyc_async.cli import main\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "status = main(['merge', sys.argv[1], '-o', sys.argv[2]])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(status, (after - before) // 1024)\n"
    )
    merged = tmp_path / "merged.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(part), str(merged)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    status, grown_mib = map(int, proc.stdout.split()[-2:])
    assert status == 0
    assert merged.read_bytes().count(b"\n") == 15_000
    assert part.stat().st_size > 60 * 1024**2
    assert grown_mib < 24, f"merge grew by {grown_mib} MiB for a 60 MB part"


def test_a_copy_of_a_pair_shares_the_pairs_answer(tmp_path: Path) -> None:
    pair = f"{SHA_A}+{SHA_B}"
    part = write(
        tmp_path / "a.jsonl",
        rec("f.jpg\tb.jpg", True, sha256=pair, input=["f.jpg", "b.jpg"]),
        rec(
            "f2.jpg\tb2.jpg",
            True,
            sha256=pair,
            same_as="f.jpg\tb.jpg",
            result=None,
            input=["f2.jpg", "b2.jpg"],
        ),
    )
    copy = next(r for r in Results([part]).records() if r["key"] == "f2.jpg\tb2.jpg")
    assert cards_of(copy)[0]["info"]["id"] == "f.jpg\tb.jpg"


def test_merge_writes_the_shared_answer_into_a_same_as_record(tmp_path: Path) -> None:
    # b was read, then changed and read again; a holds b's old bytes: the answer a shares is
    # in a record that no longer counts, and must not be lost when only b's latest is kept.
    part = write(
        tmp_path / "a.jsonl",
        rec("b", True, sha256=SHA_A),
        rec("b", True, sha256=SHA_B),
        rec("a", True, sha256=SHA_A, same_as="b", result=None, billed=False),
    )
    merged = [json.loads(line) for line in Results([part]).lines()]
    a = next(r for r in merged if r["key"] == "a")
    assert cards_of(a)[0]["info"]["id"] == "b"
    assert a["billed"] is False
    assert a["same_as"] == "b"
    # Read back on its own, it still stands.
    alone = write(tmp_path / "merged.jsonl", *merged)
    assert cards_of(next(r for r in Results([alone]).records() if r["key"] == "a"))


def test_a_part_that_changes_while_it_is_read_is_an_error_not_another_files_records(
    tmp_path: Path,
) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", True), rec("b", True))
    results = Results([part])
    write(tmp_path / "other.jsonl", rec("x", False), rec("y", True)).replace(part)
    with pytest.raises(RecordsChangedError, match="changed while it was read"):
        list(results.records())
    part = write(tmp_path / "c.jsonl", rec("a", True), rec("b", True))
    results = Results([part])
    part.write_bytes(b"")
    with pytest.raises(RecordsChangedError):
        list(results.lines())


def test_records_appended_by_a_running_batch_leave_the_reading_whole(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", True))
    results = Results([part])
    with part.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec("b", True)) + "\n")
    assert [r["key"] for r in results.records()] == ["a"]


def test_the_same_part_given_twice_is_read_once(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", True), rec("b", False))
    (tmp_path / "link.jsonl").symlink_to(part)
    results = Results([part, tmp_path / "link.jsonl"])
    assert (results.read, len(results)) == (2, 2)


def test_a_whole_last_record_without_its_newline_counts(tmp_path: Path) -> None:
    part = write(tmp_path / "a.jsonl", rec("a", True), tail=json.dumps(rec("b", True)).encode())
    assert [r["key"] for r in Results([part]).records()] == ["a", "b"]
