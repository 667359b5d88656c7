"""The batch command's files: input keys, manifests, shards and the resumable JSONL record."""

from __future__ import annotations

import gc
import io
import json
import os
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import pytest

from cvekyc_async._batch import BatchResult
from cvekyc_async._errors import APIConnectionError, InvalidImageError, QuotaExceededError
from cvekyc_async.cli.joblog import (
    LockedError,
    ResultLog,
    merge,
    result_record,
)
from cvekyc_async.cli.jobs import Job, ManifestError, PairRule, Shard, discover
from cvekyc_async.cli.records import complete_end


def record(key: str, ok: bool, error: Exception | None = None, attempts: int = 1) -> str:
    job = Job(key, key)
    result = BatchResult(0, key, error=error, attempts=attempts)  # type: ignore[arg-type]
    line = result_record(job, result, sha256=f"sha-{key}")
    line["ok"] = ok
    return json.dumps(line)


def test_resume_drops_a_cut_line_and_judges_each_key_by_its_latest_record(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    lines = [
        record("a.jpg", True),
        record("quota.jpg", False, QuotaExceededError(4, "Out of requests"), attempts=0),
        record("blank.jpg", False, InvalidImageError(3, "Incorrect image format")),
        record("net.jpg", False, APIConnectionError("reset")),
        record("late.jpg", False, APIConnectionError("reset")),
        record("late.jpg", True),
        json.dumps({"input": ["/f.jpg", "/b.jpg"], "ok": True}),  # written before keys
    ]
    out.write_text("\n".join(lines) + '\n{"key": "cut.jpg", "ok": tr', encoding="utf-8")
    log = ResultLog(out)
    log.open(resume=True, overwrite=False)
    log.close()
    decided = {}
    for key in ("a.jpg", "quota.jpg", "blank.jpg", "net.jpg"):
        latest = log.decide(Job(key, key))
        assert latest is not None
        decided[key] = (latest.ok, latest.resend, latest.reason)
    assert decided == {
        "a.jpg": (True, False, "ok"),
        "quota.jpg": (False, True, "never sent"),
        "blank.jpg": (False, False, "InvalidImageError"),
        "net.jpg": (False, True, "APIConnectionError"),
    }
    assert log.decide(Job("late.jpg", "late.jpg")).ok  # type: ignore[union-attr]
    assert log.decide(Job("/f.jpg\t/b.jpg", ("/f.jpg", "/b.jpg"))).ok  # type: ignore[union-attr]
    assert log.decide(Job("cut.jpg", "cut.jpg")) is None  # cut short: sent again
    assert log.known_digest("sha-a.jpg") == "a.jpg"
    assert log.known_digest("sha-net.jpg") is None
    assert out.read_text(encoding="utf-8").endswith("\n")
    again = ResultLog(out, retry_failed=True)
    again.open(resume=True, overwrite=False)
    again.close()
    assert again.decide(Job("blank.jpg", "blank.jpg")).resend  # type: ignore[union-attr]


def test_a_second_writer_is_refused_while_the_first_holds_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = ResultLog(out)
    first.open(resume=False, overwrite=False)
    try:
        with pytest.raises(LockedError):
            ResultLog(out).open(resume=True, overwrite=False)
    finally:
        first.close()
    second = ResultLog(out)
    second.open(resume=True, overwrite=False)  # free again
    second.close()
    assert os.stat(out).st_mode & 0o777 == 0o600


def test_the_output_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep", encoding="utf-8")
    (tmp_path / "out.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="a symlink"):
        ResultLog(tmp_path / "out.jsonl").open(resume=False, overwrite=True)
    assert target.read_text(encoding="utf-8") == "keep"


@pytest.mark.parametrize(
    ("data", "block", "end"),
    [(b"", 4, 0), (b"abc", 4, 0), (b"a\n", 4, 2), (b"a\nbcdefghij", 4, 2), (b"a\nb\n", 1, 4)],
)
def test_end_of_last_line(data: bytes, block: int, end: int) -> None:
    assert complete_end(io.BytesIO(data), block) == end


def test_shards_split_keys_stably() -> None:
    keys = [f"scans/{i}.jpg" for i in range(300)]
    parts = [[k for k in keys if k in Shard(i, 3)] for i in (1, 2, 3)]
    assert sorted(k for part in parts for k in part) == sorted(keys)
    assert all(60 < len(p) < 140 for p in parts)
    assert parts == [[k for k in keys if k in Shard(i, 3)] for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("env", "shard"),
    [
        ({"JOB_COMPLETION_INDEX": "0", "CVEKYC_SHARD_COUNT": "4"}, Shard(1, 4)),
        ({"JOB_COMPLETION_INDEX": "3", "JOB_COMPLETIONS": "4"}, Shard(4, 4)),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(3, 3)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_MIN": "5",
                "SLURM_ARRAY_TASK_COUNT": "2",
            },
            Shard(1, 2),
        ),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "CVEKYC_SHARD_COUNT": "2"}, Shard(2, 2)),
        *(  # --array=10-14:2 runs tasks 10, 12 and 14: parts 1, 2 and 3 of 3
            (
                {
                    "SLURM_ARRAY_TASK_ID": str(task),
                    "SLURM_ARRAY_TASK_MIN": "10",
                    "SLURM_ARRAY_TASK_MAX": "14",
                    "SLURM_ARRAY_TASK_STEP": "2",
                    "SLURM_ARRAY_TASK_COUNT": "3",
                },
                Shard(part, 3),
            )
            for part, task in ((1, 10), (2, 12), (3, 14))
        ),
    ],
)
def test_shard_auto_reads_each_scheduler(env: dict[str, str], shard: Shard) -> None:
    assert Shard.parse("auto", env) == shard


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "found no array job"),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1"}, "CVEKYC_SHARD_COUNT"),
        ({"JOB_COMPLETION_INDEX": "4", "CVEKYC_SHARD_COUNT": "4"}, "outside 4 parts"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "must be a number"),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "x"}, "must be a number"),
        ({"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "１"}, "must be a number"),
        (  # --array=1,5,9: a list, whose parts cannot be told from the task id
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "9",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            "is a list",
        ),
        (
            {
                "SLURM_ARRAY_TASK_ID": "11",
                "SLURM_ARRAY_TASK_MIN": "10",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            "not MIN-MAX",
        ),
    ],
)
def test_shard_auto_says_what_is_missing(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard.parse("auto", env)


@pytest.mark.parametrize(
    "text", ["0/3", "4/3", "1/0", "-1/3", "1/3.5", " 1/3", "+1/3", "1_0/30", "１/3"]
)
def test_shard_refuses_anything_but_plain_k_of_n(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        Shard.parse(text, {})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a\x00b.jpg", "NUL"),
        ("javascript:alert(1)", "javascript: inputs are not supported"),
        ("mailto:x@example.com", "mailto: inputs"),
        ("file:/etc/passwd", "file: inputs"),
        ("ftp://host/a.jpg", "ftp:// URLs are not supported"),
        ("x" * 200_000, "not a CSV row|no column"),
    ],
)
def test_manifest_entries_that_cannot_be_sent_are_refused_by_line(
    tmp_path: Path, line: str, message: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path\na.jpg\n{line}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        list(discover([str(manifest)], pairs=False))


def test_manifests_with_cr_line_endings_and_text_lists(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (tmp_path / "m.csv").write_bytes(b"path\ra.jpg\rb.jpg\r")
    (tmp_path / "m.txt").write_text("a.jpg\nb,c.jpg\n", encoding="utf-8")
    assert [j.key for j in discover([str(tmp_path / "m.csv")], pairs=False)] == ["a.jpg", "b.jpg"]
    assert [j.key for j in discover([str(tmp_path / "m.txt")], pairs=False)] == ["a.jpg", "b,c.jpg"]


def test_a_scanned_folder_keeps_files_it_cannot_read_as_inputs(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "empty.jpg").write_bytes(b"")
    (scans / "ok.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (scans / "noext").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (scans / "notes.md").write_text("hello", encoding="utf-8")
    keys = [j.key for j in discover([str(scans)], pairs=False)]
    assert keys == ["scans/empty.jpg", "scans/noext", "scans/ok.jpg"]


def test_keys_do_not_depend_on_how_a_path_was_spelled(tmp_path: Path) -> None:
    (tmp_path / "scans" / "x").mkdir(parents=True)
    (tmp_path / "scans" / "x" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (tmp_path / "m.csv").write_text("path\nscans/x/a.jpg\n", encoding="utf-8")
    spellings = [str(tmp_path / "scans"), os.path.relpath(tmp_path / "scans", Path.cwd())]
    keys = {tuple(j.key for j in discover([spelling], pairs=False)) for spelling in spellings}
    assert keys == {("scans/x/a.jpg",)}
    manifest_keys = {
        j.key
        for m in (str(tmp_path / "m.csv"), os.path.relpath(tmp_path / "m.csv", Path.cwd()))
        for j in discover([m], pairs=False)
    }
    assert manifest_keys == {"scans/x/a.jpg"}


def test_manifests_resolve_relative_paths_and_take_pairs(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "front,back\nf1.jpg,b1.jpg\n\n/abs/f2.jpg,b2.jpg\n", encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=r"m\.csv:4: '/abs/f2\.jpg' is outside"):
        list(discover([str(tmp_path / "m.csv")], pairs=True))
    jobs = list(discover([str(tmp_path / "m.csv")], pairs=True, allow_outside=True))
    assert [j.value for j in jobs] == [
        (str(tmp_path / "f1.jpg"), str(tmp_path / "b1.jpg")),
        ("/abs/f2.jpg", str(tmp_path / "b2.jpg")),
    ]
    assert [j.key for j in jobs] == ["f1.jpg\tb1.jpg", "/abs/f2.jpg\tb2.jpg"]
    (tmp_path / "plain.csv").write_text("a.jpg\nhttps://x.test/b.jpg\n", encoding="utf-8")
    assert [j.key for j in discover([str(tmp_path / "plain.csv")], pairs=False)] == [
        "a.jpg",
        "https://x.test/b.jpg",
    ]
    (tmp_path / "bad.jsonl").write_text('"a.jpg"\n{oops\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2: not JSON"):
        list(discover([str(tmp_path / "bad.jsonl")], pairs=False))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"path\na.jpg\n\xff\xfe.jpg\n", r"m\.csv:3: not UTF-8 text"),
        (b"name,phone\nA,1\n", r"m\.csv:1: no column this command reads; name one of: path"),
        (b"path\nftp://host/a.jpg\n", r"m\.csv:2: ftp:// URLs are not supported"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "m.csv").write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        list(discover([str(tmp_path / "m.csv")], pairs=False))


def test_a_bom_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("\ufeffpath\na.jpg\n".encode())
    assert [j.key for j in discover([str(tmp_path / "m.csv")], pairs=False)] == ["a.jpg"]


def test_discovery_never_opens_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe.jpg")
    (tmp_path / "in" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    assert [j.key for j in discover([str(tmp_path / "in")], pairs=False)] == ["in/a.jpg"]
    with pytest.raises(ManifestError, match="not a regular file"):
        list(discover([str(tmp_path / "in" / "pipe.jpg")], pairs=False))


def test_other_url_schemes_are_refused_by_name() -> None:
    with pytest.raises(ManifestError, match="ftp:// URLs are not supported"):
        list(discover(["ftp://host/a.jpg"], pairs=False))


def test_merge_keeps_an_ok_record_per_key_and_lists_what_is_missing(tmp_path: Path) -> None:
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    one.write_text(
        record("a.jpg", True) + "\n" + record("b.jpg", False, APIConnectionError("x")) + "\n",
        encoding="utf-8",
    )
    two.write_text(
        record("a.jpg", False, APIConnectionError("x")) + "\n" + record("b.jpg", True) + "\n",
        encoding="utf-8",
    )
    expected = [Job(k, k) for k in ("a.jpg", "b.jpg", "c.jpg")]
    report = merge([one, two], tmp_path / "all.jsonl", expected)
    merged = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [(r["key"], r["ok"]) for r in merged] == [("a.jpg", True), ("b.jpg", True)]
    assert (report.written, report.ok, report.missing) == (2, 2, ["c.jpg"])
    assert os.stat(tmp_path / "all.jsonl").st_mode & 0o777 == 0o600


def test_an_oversized_file_is_not_read_to_be_hashed(tmp_path: Path) -> None:
    from cvekyc_async.cli.jobs import load

    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as fh:  # sparse: 12 GiB that take no room
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(12 * 1024**3)
    value, sent = load(Job("huge.jpg", str(huge)), max_file_size=10 * 1024**2)
    assert (value, sent) == (str(huge), None)  # the client refuses it by its size


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (
            ["batch", "m.csv", "-o", "o", "--api-secret", "s3cr3t"],
            "cvekyc batch m.csv -o o --resume",
        ),
        (["batch", "m.csv", "--api-secret=s3cr3t", "-o", "o"], "cvekyc batch m.csv -o o --resume"),
        (
            ["batch", "m.csv", "--api-key", "k3y", "-o", "o", "--overwrite"],
            "cvekyc batch m.csv -o o --resume",
        ),
    ],
)
def test_the_resume_command_drops_credentials(argv: list[str], shown: str) -> None:
    from cvekyc_async.cli.batch import resume_command as _resume_command

    assert _resume_command(argv) == shown


@pytest.mark.parametrize(
    ("now", "recorded", "size", "same"),
    [
        (b"scan", b"scan", 4, True),
        (b"scaN", b"scan", 4, False),  # the same size, other bytes
        (b"scan!", b"scan", 4, False),  # another size: not hashed
        (b"scan", b"scan", None, True),  # a record written before sizes: hashed
        (b"scaN", b"scan", None, False),
        (None, b"scan", 4, True),  # gone: the record stands
    ],
)
def test_still_as_sent_compares_size_then_bytes(
    tmp_path: Path, now: bytes | None, recorded: bytes, size: int | None, same: bool
) -> None:
    import hashlib

    from cvekyc_async.cli.jobs import still_as_sent

    path = tmp_path / "a.jpg"
    if now is not None:
        path.write_bytes(now)
    digest = hashlib.sha256(recorded).hexdigest()
    assert still_as_sent(str(path), digest, size) is same
    pair = (str(path), str(path))
    assert still_as_sent(pair, f"{digest}+{digest}", None if size is None else 2 * size) is same
    assert still_as_sent("https://x.test/a.jpg", digest, size) is True  # a URL: by its key


# -- CSV manifests as spreadsheets write them ---------------------------------------------------


def keys(manifest: Path, **options: Any) -> list[str]:
    return [j.key for j in discover([str(manifest)], pairs=False, **options)]


def test_a_quoted_line_break_stays_in_its_cell(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        'path,note\na.jpg,"customer said:\nplease hurry"\nb.jpg,x\n', encoding="utf-8"
    )
    assert keys(manifest) == ["a.jpg", "b.jpg"]
    # An error names the line a row starts on, counted in the file's own lines.
    manifest.write_text('path,note\na.jpg,"two\nlines"\nftp://h/c.jpg,x\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m\.csv:4: ftp:// URLs"):
        keys(manifest)


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("path;note\na.jpg;x\nb.jpg;1,5\n", ";"),  # Excel where the decimal mark is ","
        ("path\tnote\na.jpg\tx\nb.jpg\ty\n", "\t"),  # Excel's "Unicode text"
        ("note;path\nx;a.jpg\n1,5;b.jpg\n", ";"),
        ("path,note\na.jpg,x;y\nb.jpg,z\n", ","),
    ],
)
def test_the_delimiter_is_found_among_comma_semicolon_and_tab(
    tmp_path: Path, text: str, delimiter: str
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8-sig")
    assert keys(manifest) == ["a.jpg", "b.jpg"]
    assert keys(manifest, delimiter=delimiter) == ["a.jpg", "b.jpg"]


def test_a_headerless_list_with_semicolons_in_names_is_one_column(tmp_path: Path) -> None:
    (tmp_path / "a;1.jpg").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("a;1.jpg\n", encoding="utf-8")
    assert keys(manifest, delimiter=",") == ["a;1.jpg"]


@pytest.mark.parametrize(
    ("header", "pairs"),
    [
        ("Đường dẫn,Ghi chú", False),
        ("ĐƯỜNG_DẪN,ghi chu", False),
        ("Mặt trước,Mặt sau", True),
        ("mat truoc;MAT SAU", True),
        ("PATH,Note", False),
    ],
)
def test_columns_are_found_by_header_in_any_case_and_in_vietnamese(
    tmp_path: Path, header: str, pairs: bool
) -> None:
    manifest = tmp_path / "m.csv"
    delimiter = ";" if ";" in header else ","
    manifest.write_text(f"{header}\na.jpg{delimiter}b.jpg\n", encoding="utf-8")
    jobs = list(discover([str(manifest)], pairs=pairs))
    assert [j.key for j in jobs] == (["a.jpg\tb.jpg"] if pairs else ["a.jpg"])


def test_a_header_that_names_a_column_twice_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,Đường dẫn\na.jpg,b.jpg\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m\.csv:1: the header names the column path twice"):
        keys(manifest)


def test_an_xlsx_manifest_is_read_from_its_first_sheet(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mặt trước", "Mặt sau", "Ghi chú"])
    sheet.append(["f1.jpg", "b1.jpg", "gọi lại\nsau"])
    sheet.append([None, None, None])
    sheet.append(["f2.jpg", "b2.jpg", 12.0])
    book.save(tmp_path / "m.xlsx")
    jobs = list(discover([str(tmp_path / "m.xlsx")], pairs=True))
    assert [j.key for j in jobs] == ["f1.jpg\tb1.jpg", "f2.jpg\tb2.jpg"]
    (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04 not a sheet")
    with pytest.raises(ManifestError, match=r"bad\.xlsx: not a sheet openpyxl reads"):
        list(discover([str(tmp_path / "bad.xlsx")], pairs=False))


def test_without_openpyxl_an_xlsx_manifest_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "m.xlsx").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(ManifestError, match=r"cvekyc-async\[export\]"):
        list(discover([str(tmp_path / "m.xlsx")], pairs=False))


@pytest.mark.parametrize(
    ("text", "delimiter"), [(",", ","), (";", ";"), ("tab", "\t"), ("\\t", "\t")]
)
def test_the_delimiter_option_takes_comma_semicolon_or_tab(text: str, delimiter: str) -> None:
    from cvekyc_async.cli.main import parse_delimiter

    assert parse_delimiter(text) == delimiter


def test_another_delimiter_is_refused_by_the_command(tmp_path: Path) -> None:
    from cvekyc_async.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "m.csv", "-o", "o", "--delimiter", "|"])


# -- fronts and backs paired by name --------------------------------------------------------------


def folder_of(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "scans"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\xff\xd8\xff\xe0" + name.encode())
    return folder


@pytest.mark.parametrize(
    ("front", "back"),
    [
        ("0001_front.jpg", "0001_back.jpg"),
        ("0001_FRONT.JPG", "0001_Back.png"),
        ("0001_truoc.jpg", "0001_sau.jpg"),
        ("0001_mặt_trước.jpg", "0001_Mặt Sau.jpeg"),
        ("0001-mt.jpg", "0001-ms.jpg"),
        ("Nguyen Van A_1.jpg", "Nguyen Van A_2.webp"),
    ],
)
def test_auto_pairs_each_naming_scheme(tmp_path: Path, front: str, back: str) -> None:
    from cvekyc_async.cli.jobs import PairRule

    folder = folder_of(tmp_path, back, front)
    (job,) = discover([str(folder)], pairs=True, pair_rule=PairRule.parse("auto"))
    assert job.problem is None
    assert job.value == (str(folder / front), str(folder / back))
    assert job.key == f"scans/{front}\tscans/{back}"


def test_a_side_without_its_other_is_a_problem_never_a_single(tmp_path: Path) -> None:
    from cvekyc_async.cli.jobs import LeftOut, PairRule

    folder = folder_of(tmp_path, "a_front.jpg", "a_back.jpg", "b_front.jpg", "c_sau.jpg",
                       "d_front.jpg", "d_truoc.jpg", "d_back.jpg", "sub/a_back.jpg",
                       "scan1.jpg")  # fmt: skip
    left_out = LeftOut()
    jobs = list(discover([str(folder)], pairs=True, pair_rule=PairRule.parse("auto"),
                         left_out=left_out))  # fmt: skip
    by_key = {j.key: j for j in jobs}
    assert by_key["scans/a_front.jpg\tscans/a_back.jpg"].problem is None
    assert "the back side is missing" in (by_key["scans/b_front.jpg\t"].problem or "")
    assert "the front side is missing" in (by_key["scans/c_sau.jpg\t"].problem or "")
    assert "2 files are the front of one card" in (by_key["scans/d_front.jpg\t"].problem or "")
    assert (
        by_key["scans/d_back.jpg\t"].problem
    ) == "its front is given by 2 files (d_front.jpg, d_truoc.jpg): keep one"
    # Pairs are made within one folder: the back in sub/ has no front there.
    assert "the front side is missing" in (by_key["scans/sub/a_back.jpg\t"].problem or "")
    assert left_out.kinds == {"no front or back in its name": 1}
    assert len(jobs) + len(left_out) == 8  # every file accounted for (a pair is one job)


def test_a_pairs_expression_names_its_key_and_side(tmp_path: Path) -> None:
    from cvekyc_async.cli.jobs import LeftOut, PairRule

    rule = PairRule.parse(r"(?P<side>front|back)-(?P<key>\d+)")
    folder = folder_of(tmp_path / "x", "front-0001.jpg", "back-0001.jpg")
    (job,) = discover([str(folder)], pairs=True, pair_rule=rule)
    assert job.value == (str(folder / "front-0001.jpg"), str(folder / "back-0001.jpg"))
    # A side the expression finds must be one of the side words: F and B are not.
    left_out = LeftOut()
    folder = folder_of(tmp_path / "y", "F-0001.jpg", "B-0001.jpg")
    rule = PairRule.parse(r"(?P<side>F|B)-(?P<key>\d+)")
    assert list(discover([str(folder)], pairs=True, pair_rule=rule, left_out=left_out)) == []
    assert left_out.kinds == {"no front or back in its name": 2}
    for bad in ("(", "(?P<key>.*)"):
        with pytest.raises(ValueError, match="--pairs"):
            PairRule.parse(bad)


def test_pairs_keep_a_names_diacritics_so_two_people_never_pair(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("Lê Thị Hà_mt.jpg", "Lê Thị Hạ_ms.jpg", "0001_mặt_trước.JPG", "0001_mat_sau.png"):
        (folder / name).write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    rule = PairRule.parse("auto")
    jobs = {j.key: j for j in discover([str(folder)], pairs=True, pair_rule=rule)}
    # The side word is read with or without diacritics, the person's name is not folded.
    assert jobs["scans/0001_mặt_trước.JPG\tscans/0001_mat_sau.png"].problem is None
    assert "the back side is missing" in (jobs["scans/Lê Thị Hà_mt.jpg\t"].problem or "")
    assert "the front side is missing" in (jobs["scans/Lê Thị Hạ_ms.jpg\t"].problem or "")
    assert rule.side_of(Path("NGUYỄN VĂN ĐỨC-Front.jpg")) == ("nguyễn văn đức", "front")
    # A name written in decomposed form (as macOS stores names) is the same name.
    decomposed = unicodedata.normalize("NFD", "Lê Thị Hà_ms.jpg")
    assert rule.side_of(Path(decomposed)) == ("lê thị hà", "back")


def test_thumbnail_trash_and_hidden_folders_are_left_out_file_by_file(tmp_path: Path) -> None:
    from cvekyc_async.cli.jobs import LeftOut

    jpeg = b"\xff\xd8\xff\xe0 a jpeg"
    folder = tmp_path / "scans"
    (folder / "@eaDir" / "a.jpg").mkdir(parents=True)
    (folder / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_XL.jpg").write_bytes(jpeg)
    (folder / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_S.jpg").write_bytes(jpeg)
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "a.png").write_bytes(jpeg)
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.jpg").write_bytes(jpeg)
    (folder / "a.jpg").write_bytes(jpeg)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.jpg").write_bytes(jpeg)
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    left_out = LeftOut()
    keys = [job.key for job in discover([str(folder)], pairs=False, left_out=left_out)]
    assert keys == ["scans/a.jpg", "scans/sub/b.jpg"]
    assert left_out.kinds == {"in a system or hidden folder": 4, "linked folder, not followed": 1}


def test_xlsx_manifests_are_read_as_excel_shows_them_or_refused_by_row(tmp_path: Path) -> None:
    import zipfile

    import openpyxl

    def xlsx(name: str, fill: Any) -> str:
        book = openpyxl.Workbook()
        fill(book)
        book.save(tmp_path / name)
        return str(tmp_path / name)

    def notes_first(book: Any) -> None:
        book.active.title = "Hướng dẫn"
        data = book.create_sheet("Danh sách")
        data.append(["path"])
        data.append(["a.jpg"])
        book.active = 1  # the sheet Excel opens on

    [job] = discover([xlsx("active.xlsx", notes_first)], pairs=False)
    assert job.key == "a.jpg"

    def formula(book: Any) -> None:
        book.active.append(["path"])
        book.active.append(["a.jpg"])
        book.active.append(['=CONCATENATE("b",".jpg")'])  # no value saved: never computed

    with pytest.raises(ManifestError, match=r"formula\.xlsx: row 3: a formula with no saved"):
        list(discover([xlsx("formula.xlsx", formula)], pairs=False))
    with pytest.raises(ManifestError, match=r"holds no rows"):
        list(discover([xlsx("empty.xlsx", lambda book: None)], pairs=False))
    # A header and nothing under it is no batch of nothing: refused, by its row.
    with pytest.raises(ManifestError, match=r"head\.xlsx:1: a header and no row under it"):
        list(discover([xlsx("head.xlsx", lambda book: book.active.append(["path"]))], pairs=False))
    head = tmp_path / "head.csv"
    head.write_text("path\n\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"head\.csv:1: a header and no row under it"):
        list(discover([str(head)], pairs=False))
    # A sheet whose XML is damaged inside a sound archive: named by row, no traceback.
    good = xlsx("good.xlsx", lambda book: [book.active.append([p]) for p in ("path", "a.jpg")])
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</sheetData>", b"<row><c>")
            dst.writestr(item, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ManifestError, match=r"damaged\.xlsx: .*cannot be read"):
            list(discover([str(damaged)], pairs=False))
        gc.collect()
    assert [str(w.message) for w in caught] == []  # no file left open by the refused read


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path\nNguyễn, Văn.jpg\n", r":2: 2 cells under a header of 1: quote a value"),
        ("path,url\na.jpg,https://example.com/a.jpg\n", r":2: the row gives both path and url"),
    ],
)
def test_a_csv_row_that_would_be_read_in_part_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        list(discover([str(manifest)], pairs=False))
    # Trailing empty cells, as spreadsheets export them, are no problem.
    manifest.write_text("path\na.jpg,,\n", encoding="utf-8")
    assert [j.key for j in discover([str(manifest)], pairs=False)] == ["a.jpg"]


def test_names_listed_for_a_terminal_escape_control_characters() -> None:
    from cvekyc_async.cli.jobs import printable

    assert printable("scans/a\nleft out: b.jpg") == "scans/a\\nleft out: b.jpg"
    assert printable("\x1b[31mred\u202e.jpg") == "\\x1b[31mred\\u202e.jpg"
    assert printable("Lê Thị Hà_mt.jpg") == "Lê Thị Hà_mt.jpg"


def test_a_name_that_is_only_a_side_word_is_never_a_card_of_its_own() -> None:
    rule = PairRule.parse("auto")
    for name in ("front.jpg", "back.jpg", "mặt trước.jpg", "1.jpg"):
        assert rule.side_of(Path(name)) is None, name
