"""What a batch leaves for the people after it: records stamped with their format, time, run
and shard; the run's figures as JSON (checked against the records they describe); the end-of-run
text with the next commands; card crops kept as files the records name."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import shutil
import signal
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from cvekyc_async.emulator import RunningEmulator, specimens
from tests.test_batch_jobs import manifest_of, start, wait_for_lines
from tests.test_cli import env_for, lines, make_images, run


def specimen_folder(folder: Path) -> list[Path]:
    """The bundled specimens (cards of every kind, a blank page, a PDF), and a copy of one."""
    folder.mkdir(parents=True)
    paths = [Path(shutil.copy(p, folder)) for p in specimens().values()]
    paths.append(Path(shutil.copy(folder / "chip_front.jpg", folder / "copy.jpg")))
    (folder / "notes.jpg").write_bytes(b"not an image at all")
    return [*paths, folder / "notes.jpg"]


def parse_utc(text: str) -> datetime.datetime:
    assert text.endswith("Z"), text
    return datetime.datetime.fromisoformat(text[:-1] + "+00:00")


def test_every_record_carries_its_format_time_run_and_shard(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 12)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    before = datetime.datetime.now(datetime.timezone.utc)
    first = run("batch", str(tmp_path / "imgs"), "--shard", "1/2", "-o", str(out), env=env)
    assert first.returncode == 0, first.stderr
    after = datetime.datetime.now(datetime.timezone.utc)
    records = lines(out)
    assert records
    assert {r["schema"] for r in records} == {2}
    assert {r["shard"] for r in records} == {"1/2"}
    (run_id,) = {r["run"] for r in records}
    assert re.fullmatch(r"[0-9a-f]{16}", run_id)
    for record in records:
        # Truncated to the millisecond, so compared at that precision.
        assert before - datetime.timedelta(milliseconds=1) <= parse_utc(record["written"]) <= after
        # The call's id, sent as X-Request-ID; the emulator sends no id of its own.
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                            record["request_id"])  # fmt: skip
        assert record["service_request_id"] is None
    # A later run of the same output is another run.
    again = run("batch", str(tmp_path / "imgs"), "--shard", "1/2", "-o", str(out), "--overwrite",
                env=env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {r["run"] for r in lines(out)} - {run_id}


def test_the_summary_json_agrees_with_the_records_it_describes(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = specimen_folder(tmp_path / "imgs")
    out, summary = tmp_path / "out.jsonl", tmp_path / "reports" / "summary.json"
    proc = run("batch", str(tmp_path / "imgs"), "--endpoint", "ocr", "-o", str(out),
               "--summary-json", str(summary), env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the blank page and the text file fail
    figures = json.loads(summary.read_text(encoding="utf-8"))
    records = lines(out)
    sent = [r for r in records if "same_as" not in r]
    outcomes = Counter("ok" if r["ok"] else r["error"]["type"] for r in sent)
    assert figures["outcomes"] == dict(outcomes)
    assert figures["ok"] == outcomes["ok"]
    assert figures["failed"] == len(sent) - outcomes["ok"]
    assert figures["failed"] >= 2
    assert figures["billed"] == sum(r["billed"] for r in records)
    verdicts = Counter(r["assessment"]["verdict"] for r in sent if r["assessment"])
    assert figures["verdicts"] == {v: verdicts[v] for v in ("accept", "review", "reject")}
    assert figures["shared"] == sum("same_as" in r for r in records) == 1
    assert figures["inputs"] == len(paths) == len(records)
    assert (
        figures["sent"] + figures["refused"] + figures["shared"] + figures["not_started"]
        == figures["inputs"]
    )
    # The text file is refused before sending: nothing stopped the run early.
    assert (figures["refused"], figures["not_started"]) == (1, 0)
    assert "not started" not in proc.stdout
    assert figures["exit_status"] == 1
    assert figures["stopped"] is None
    assert figures["run"] == records[0]["run"]
    assert figures["output"] == str(out)
    assert figures["resume_command"].endswith("--resume")
    assert parse_utc(figures["started"]) <= parse_utc(figures["ended"])
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600


def test_the_summary_json_goes_to_standard_output_when_the_records_go_to_a_file(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    proc = run("batch", str(tmp_path / "imgs"), "-o", str(out), "--summary-json", "-", env=env)
    assert proc.returncode == 0, proc.stderr
    start_of_json = proc.stdout.index("{\n")
    figures = json.loads(proc.stdout[start_of_json:])
    assert figures["ok"] == 3
    # Records on standard output leave no room for the summary there: refused before sending.
    refused = run("batch", str(tmp_path / "imgs"), "-o", "-", "--summary-json", "-", env=env)
    assert refused.returncode == 2
    assert "--summary-json -" in refused.stderr
    assert refused.stdout == ""
    other = tmp_path / "o2.jsonl"
    for bad in (str(tmp_path / "imgs"), str(other), str(tmp_path / "imgs" / "scan-00000.jpg")):
        refused = run("batch", str(tmp_path / "imgs"), "-o", str(other),
                      "--summary-json", bad, env=env)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "--summary-json" in refused.stderr


def test_the_end_of_run_text_names_the_output_and_the_next_commands(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    specimen_folder(tmp_path / "imgs")
    out = tmp_path / "run 1" / "out.jsonl"
    proc = run("batch", str(tmp_path / "imgs"), "--endpoint", "ocr", "-o", str(out),
               env=env_for(cv_emulator))  # fmt: skip
    assert re.search(r"records in +" + re.escape(str(out)), proc.stdout)
    quoted = f"'{out}'"  # a path with a space is quoted, so the command works as pasted
    assert f"cvekyc export {quoted} --verdict review -o" in proc.stdout
    assert f"cvekyc report {quoted} -o" in proc.stdout


def test_a_stopped_run_says_how_many_inputs_were_not_started(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 300)
    manifest = manifest_of(tmp_path, paths)
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    cv_emulator.set_faults(latency=0.02)
    with start("batch", str(manifest), "-o", str(out), "--concurrency", "4",
               "--summary-json", str(summary), env=env_for(cv_emulator)) as proc:  # fmt: skip
        wait_for_lines(out, 20, proc)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT
    figures = json.loads(summary.read_text(encoding="utf-8"))
    recorded = len(lines(out))
    assert figures["stopped"] == "signal: SIGINT"
    assert figures["not_started"] == 300 - recorded > 0
    assert f"not started  {300 - recorded} " in stdout.decode().replace("  +", "  ")
    assert cv_emulator.wait_idle(30)


def test_thumbnails_are_kept_as_owner_only_files_that_the_records_name(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    specimen_folder(tmp_path / "imgs")
    out, thumbs = tmp_path / "out.jsonl", tmp_path / "thumbs"
    proc = run("batch", str(tmp_path / "imgs"), "--endpoint", "ocr", "-o", str(out),
               "--thumbnails", str(thumbs), env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert stat.S_IMODE(thumbs.stat().st_mode) == 0o700
    named: list[Any] = []
    for record in lines(out):
        if not record["ok"] or "same_as" in record:
            assert "thumbnails" not in record
            continue
        cards = record["result"]["cards"]
        assert len(record["thumbnails"]) == len(cards)
        # The images are in the files, not in the records.
        assert all("image" not in card["info"] for card in cards)
        named += [p for p in record["thumbnails"] if p is not None]
    assert named
    for path in map(Path, named):
        assert path.parent == thumbs.absolute()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = path.read_bytes()
        assert data[:3] == b"\xff\xd8\xff"  # a JPEG
        # Named by its bytes' SHA-256, never by the input's own name (which may name a person):
        # a name always stands for the same image.
        assert path.name == hashlib.sha256(data).hexdigest() + ".jpg"


def test_a_thumbnails_folder_that_cannot_be_made_is_refused_before_sending(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cv_emulator.reset()
    proc = run("batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl"),
               "--thumbnails", str(blocker / "sub"), env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 2
    assert "--thumbnails" in proc.stderr
    assert cv_emulator.stats()["requests"] == 0


def test_a_summary_json_replaces_only_an_earlier_summary(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 2)
    env = env_for(cv_emulator)
    summary = tmp_path / "summary.json"
    for n in range(2):
        proc = run("batch", str(tmp_path / "imgs"), "-o", str(tmp_path / f"{n}.jsonl"),
                   "--summary-json", str(summary), env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(summary.read_text())["output"] == str(tmp_path / f"{n}.jsonl")
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    proc = run("batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "2.jsonl"),
               "--summary-json", str(notes), env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "holds something other than a batch summary" in proc.stderr
    assert notes.read_text() == '{"mine": true}'


def test_a_thumbnails_folder_inside_an_input_folder_is_refused(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 2)
    cv_emulator.reset()
    for inside in (tmp_path / "imgs", tmp_path / "imgs" / "thumbs"):
        proc = run("batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl"),
                   "--thumbnails", str(inside), env=env_for(cv_emulator))  # fmt: skip
        assert proc.returncode == 2
        assert "lies in the input folder" in proc.stderr
    assert cv_emulator.stats()["requests"] == 0


def test_a_thumbnail_that_cannot_be_decoded_is_left_out_and_the_answer_kept(
    tmp_path: Path,
) -> None:
    import io

    from cvekyc_async._batch import BatchResult
    from cvekyc_async._models import decode_answer
    from cvekyc_async.cli.batch import _keep_thumbnails
    from tests import samples

    good = base64.b64encode(samples.JPEG).decode()
    cards = [
        {**samples.CHIP_FRONT, "info": {**samples.CHIP_FRONT["info"], "image": image}}
        for image in ("abcde", good)
    ]
    result = decode_answer(samples.answer(cards))
    record: dict[str, Any] = {"result": result.to_dict()}
    err = io.StringIO()
    _keep_thumbnails(record, BatchResult(0, "x.jpg", result=result), tmp_path, err)
    bad, saved = record["thumbnails"]
    assert bad is None
    assert Path(saved).read_bytes() == samples.JPEG
    assert "a thumbnail was not saved" in err.getvalue()
    assert all("image" not in card["info"] for card in record["result"]["cards"])


def test_every_file_of_a_scanned_folder_is_an_input_or_left_out_by_kind(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    make_images(folder / "sub", 3)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00")
    (folder / "notes.txt").write_text("Nguyễn Văn A, 001099012345")
    (folder / "sub" / "list.csv").write_text("path\na.jpg\n")
    (folder / "empty.dat").write_bytes(b"")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    summary = tmp_path / "s.json"
    proc = run("batch", str(folder), "-o", str(tmp_path / "o.jsonl"), "--summary-json",
               str(summary), "--list-left-out", env=env_for(cv_emulator))  # fmt: skip
    # The HEIC photo is an input: without --prepare its record says how to send it.
    assert proc.returncode == 1, proc.stderr
    figures = json.loads(summary.read_text())
    assert figures["inputs"] == 4
    assert figures["left_out"] == {
        "files": 6,
        "kinds": {
            "system file": 2,
            "list or manifest": 2,
            "empty file": 1,
            "not a regular file": 1,
        },
    }
    files = sum(1 for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    assert figures["inputs"] + figures["left_out"]["files"] == files
    assert re.search(r"left out +6 files \(", proc.stdout)
    listed = re.findall(r"^left out: (.+) \((.+)\)$", proc.stdout, re.M)
    assert (str(folder / ".DS_Store"), "system file") in listed
    assert len(listed) == 6
    [heic] = [r for r in lines(tmp_path / "o.jsonl") if r["key"].endswith("IMG_0001.HEIC")]
    assert heic["error"]["type"] == "InvalidInputError"
    assert "HEIC photo" in heic["error"]["message"]
    assert "add --prepare" in heic["error"]["message"]
    # What a left-out file holds is never shown, only what kind of file it is.
    assert "Nguy" not in proc.stdout + proc.stderr
    assert "001099012345" not in proc.stdout + proc.stderr


def test_pairs_auto_sends_fronts_with_their_backs_and_records_a_missing_side(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(specimens()["chip_front.jpg"], folder / "0001_front.jpg")
    shutil.copy(specimens()["chip_back.jpg"], folder / "0001_sau.jpg")
    shutil.copy(specimens()["cccd_front.jpg"], folder / "0002_mt.jpg")
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    cv_emulator.reset()
    proc = run("batch", str(folder), "--endpoint", "cards", "--pairs", "auto", "-o", str(out),
               "--summary-json", str(summary), env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    records = {r["key"]: r for r in lines(out)}
    pair = records["scans/0001_front.jpg\tscans/0001_sau.jpg"]
    assert [c["type"] for c in pair["result"]["cards"]] == [
        "chip_id_card_front",
        "chip_id_card_back",
    ]
    lone = records["scans/0002_mt.jpg\t"]
    assert lone["error"]["type"] == "InvalidInputError"
    assert "the back side is missing" in lone["error"]["message"]
    assert lone["attempts"] == 0
    assert cv_emulator.stats()["requests"] == 1  # the lone front was never sent
    figures = json.loads(summary.read_text())
    assert (figures["inputs"], figures["sent"], figures["refused"]) == (2, 1, 1)
    refused = run("batch", str(folder), "--pairs", "auto", "-o", str(tmp_path / "x.jsonl"),
                  env=env_for(cv_emulator))  # fmt: skip
    assert refused.returncode == 2
    assert "--endpoint cards" in refused.stderr


def test_a_side_added_later_withdraws_its_lone_record_from_export_and_merge(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(specimens()["cccd_front.jpg"], folder / "0002_mt.jpg")
    out = tmp_path / "o.jsonl"
    cards = ["--endpoint", "cards", "--pairs", "auto", "-o", str(out)]
    assert run("batch", str(folder), *cards, env=env_for(cv_emulator)).returncode == 1
    # The back arrives; the resumed run sends the pair and withdraws the lone front's error.
    shutil.copy(specimens()["cccd_back.png"], folder / "0002_ms.png")
    proc = run("batch", str(folder), *cards, "--resume", env=env_for(cv_emulator))
    assert proc.returncode == 0, proc.stderr
    records = lines(out)
    assert [(r["key"], r["ok"], r.get("withdrawn")) for r in records] == [
        ("scans/0002_mt.jpg\t", False, None),
        ("scans/0002_mt.jpg\tscans/0002_ms.png", True, None),
        ("scans/0002_mt.jpg\t", False, "scans/0002_mt.jpg\tscans/0002_ms.png"),
    ]
    csv_path, merged = tmp_path / "o.csv", tmp_path / "m.jsonl"
    assert run("export", str(out), "-o", str(csv_path)).returncode == 0
    table = csv_path.read_text(encoding="utf-8-sig")
    assert len(table.splitlines()) == 1 + 2  # the header, then the pair's two cards
    assert "InvalidInputError" not in table
    assert run("merge", str(out), "-o", str(merged)).returncode == 0
    assert [r["key"] for r in lines(merged)] == ["scans/0002_mt.jpg\tscans/0002_ms.png"]
    # Resuming again sends nothing and writes nothing more.
    again = run("batch", str(folder), *cards, "--resume", env=env_for(cv_emulator))
    assert again.returncode == 0, again.stderr
    assert len(lines(out)) == 3


def test_a_card_sent_as_a_pair_withdraws_every_lone_side_of_it_in_its_shard(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(specimens()["chip_front.jpg"], folder / "x_front.jpg")
    shutil.copy(specimens()["chip_front.jpg"], folder / "x_1.jpg")  # a second front
    shutil.copy(specimens()["chip_back.jpg"], folder / "x_back.jpg")
    shutil.copy(specimens()["cccd_front.jpg"], folder / "y_front.jpg")
    outs = [tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"]
    env = env_for(cv_emulator)

    def both_shards(*extra: str) -> None:
        for n, out in enumerate(outs, 1):
            run("batch", str(folder), "--endpoint", "cards", "--pairs", "auto", "-o", str(out),
                "--shard", f"{n}/2", *extra, env=env)  # fmt: skip

    both_shards()
    first = [r for out in outs if out.exists() for r in lines(out)]
    problems = {r["key"]: r["error"]["message"] for r in first}
    assert problems == {
        "cards/x_front.jpg\t": "2 files are the front of one card (x_1.jpg, x_front.jpg): keep one",
        "cards/x_1.jpg\t": "2 files are the front of one card (x_1.jpg, x_front.jpg): keep one",
        "cards/x_back.jpg\t": "its front is given by 2 files (x_1.jpg, x_front.jpg): keep one",
        "cards/y_front.jpg\t": problems["cards/y_front.jpg\t"],
    }
    # The sides of one card fall in one shard, whichever their keys.
    holding_x = [out for out in outs if out.exists() and "x_1" in out.read_text()]
    assert len(holding_x) == 1
    assert all("x_back" in out.read_text() for out in holding_x)

    (folder / "x_1.jpg").unlink()  # kept one, as asked
    both_shards("--resume")
    merged = tmp_path / "all.jsonl"
    parts = [str(out) for out in outs if out.exists()]  # a shard with nothing writes nothing
    assert run("merge", *parts, "-o", str(merged)).returncode == 0
    assert sorted(r["key"] for r in lines(merged)) == [
        "cards/x_front.jpg\tcards/x_back.jpg",
        "cards/y_front.jpg\t",
    ]
    withdrawn = [r for r in lines(holding_x[0]) if r.get("withdrawn")]
    assert sorted(r["key"] for r in withdrawn) == [
        "cards/x_1.jpg\t",
        "cards/x_back.jpg\t",
        "cards/x_front.jpg\t",
    ]
