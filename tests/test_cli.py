"""The ``cvekyc`` command, run as a real subprocess against the emulator."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples

CLI = [sys.executable, "-m", "cvekyc_async.cli"]


def env_for(emu: RunningEmulator, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CVEKYC_API_KEY=emu.api_key,
        CVEKYC_API_SECRET=emu.api_secret,
        CVEKYC_BASE_URL=emu.base_url,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"scan-{i:05d}.jpg"
        path.write_bytes(samples.JPEG + i.to_bytes(4, "big"))
        paths.append(path)
    return paths


# -- extract ---------------------------------------------------------------------------------------


def test_extract_prints_the_fields_read(cv_emulator: RunningEmulator) -> None:
    proc = run("extract", str(specimen_path("chip_front.jpg")), env=env_for(cv_emulator))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "chip_id_card_front  valid"
    assert any(line.split()[:2] == ["id", "040204683524"] for line in out)
    assert any(line.strip().startswith("name") and "BÙI MINH CƯỜNG" in line for line in out)


def test_extract_two_sides_as_json_with_thumbnails(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    proc = run(
        "extract",
        str(specimen_path("chip_front.jpg")),
        str(specimen_path("chip_back.jpg")),
        "--json",
        "--thumb",
        str(tmp_path / "thumbs"),
        env=env_for(cv_emulator),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [c["type"] for c in data["cards"]] == ["chip_id_card_front", "chip_id_card_back"]
    assert "image" not in data["cards"][0]["info"]
    assert len(data["thumbnails"]) == 2
    for name in data["thumbnails"]:
        with Image.open(name) as img:
            assert img.format == "JPEG"


def test_extract_reports_an_api_error_with_status_1(cv_emulator: RunningEmulator) -> None:
    proc = run("extract", str(specimen_path("blank.jpg")), env=env_for(cv_emulator))
    assert proc.returncode == 1
    assert "errorCode 1" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "/no/such/file.jpg"], "not found"),
        (["extract", "a.jpg", "b.jpg", "--endpoint", "ocr"], "BACK image goes with"),
        (["extract", "a.jpg", "--endpoint", "cards"], "needs both IMAGE and BACK"),
        (["batch", "/no/such/dir", "-o", "out.jsonl"], "no such file or directory"),
        (["batch", ".", "-o", "out.jsonl", "--shard", "3/2"], "K must be from 1 to N"),
        (["batch", ".", "-o", "out.jsonl", "--shard", "x"], "takes K/N"),
        (["batch", ".", "-o", "out.jsonl", "--endpoint", "cards"], "pairs from a manifest"),
        (["batch", ".", "-o", "out.jsonl", "--concurrency", "0"], "from 1 to 10000, or auto"),
        (["batch", ".", "-o", "out.jsonl", "--concurrency", "fast"], "from 1 to 10000, or auto"),
        (["batch", ".", "-o", "out.jsonl", "--concurrency", "auto:x"], "auto:N takes a ceiling"),
        (["demo", "--concurrency", "0"], "at least 1"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    cv_emulator: RunningEmulator, tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run(*args, env=env_for(cv_emulator), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert cv_emulator.stats()["requests"] == 0


def test_no_command_and_missing_credentials_are_usage_errors(tmp_path: Path) -> None:
    assert run().returncode == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVEKYC_")}
    proc = run("extract", str(specimen_path("chip_front.jpg")), env=env)
    assert proc.returncode == 2
    assert "CVEKYC_API_KEY" in proc.stderr


def test_secret_on_the_command_line_warns_and_never_shows(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    env = env_for(cv_emulator)
    secret = env.pop("CVEKYC_API_SECRET")
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch",
        str(specimen_path("chip_front.jpg")),
        "-o",
        str(out),
        "--api-secret",
        secret,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: a secret on the command line" in proc.stderr
    assert secret not in proc.stdout + proc.stderr.replace("--api-secret", "")
    assert secret not in out.read_text(encoding="utf-8")


def test_secret_from_a_file(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    env = env_for(cv_emulator)
    secret_file = tmp_path / "secret"
    secret_file.write_text(env.pop("CVEKYC_API_SECRET") + "\n", encoding="utf-8")
    proc = run(
        "extract",
        str(specimen_path("passport.jpg")),
        "--api-secret-file",
        str(secret_file),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr


# -- batch -----------------------------------------------------------------------------------------


def test_batch_over_a_csv_manifest(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 5)
    manifest = tmp_path / "manifest.csv"
    rows = ["path"] + [f"imgs/scan-{i:05d}.jpg" for i in range(5)]
    rows.append(str(specimen_path("blank.jpg")))
    rows.append(cv_emulator.specimen_url("passport.jpg"))
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    # The specimen lies outside the manifest's folder: read only when allowed.
    args = ["batch", str(manifest), "-o", str(out)]
    proc = run(*args, "--allow-outside", env=env_for(cv_emulator))
    assert proc.returncode == 1  # the blank page fails
    records = lines(out)
    assert len(records) == 7
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    by_input = {r["input"]: r for r in records}
    assert by_input[str(tmp_path / "imgs" / "scan-00000.jpg")]["ok"] is True
    blank = by_input[str(specimen_path("blank.jpg"))]
    assert blank["ok"] is False
    assert blank["error"]["type"] == "NoDocumentError"
    assert blank["error"]["error_code"] == 1
    passport = by_input[cv_emulator.specimen_url("passport.jpg")]
    assert passport["result"]["cards"][0]["type"] == "passport"
    assert passport["billed"] is True
    summary = proc.stdout
    assert "batch summary" in summary
    assert "ok                 6" in summary
    assert "NoDocumentError  1" in summary
    assert "billed             6" in summary


def test_batch_of_pairs_from_jsonl(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(
        json.dumps(
            {
                "front": str(specimen_path("chip_front.jpg")),
                "back": str(specimen_path("chip_back.jpg")),
            }
        )
        + "\n"
        + json.dumps([str(specimen_path("cccd_front.jpg")), str(specimen_path("cccd_back.png"))])
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch", str(manifest), "--endpoint", "cards", "-o", str(out), "--allow-outside",
        env=env_for(cv_emulator),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = lines(out)
    assert [len(r["input"]) for r in records] == [2, 2]
    assert all(len(r["result"]["cards"]) == 2 for r in records)


def test_batch_walks_directories_by_content(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    make_images(tmp_path / "a", 2)
    make_images(tmp_path / "a" / "nested", 3)
    (tmp_path / "a" / "notes.txt").write_text("not an image", encoding="utf-8")
    (tmp_path / "a" / "renamed.dat").write_bytes(specimen_path("scan.pdf").read_bytes())
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch", str(tmp_path / "a"), "--endpoint", "ocr", "-o", str(out), env=env_for(cv_emulator)
    )
    assert proc.returncode == 0, proc.stderr
    inputs = sorted(Path(r["input"]).name for r in lines(out))
    assert inputs == ["renamed.dat"] + [f"scan-{i:05d}.jpg" for i in (0, 0, 1, 1, 2)]


def test_batch_refuses_to_overwrite_results_by_accident(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    card = str(specimen_path("chip_front.jpg"))
    assert run("batch", card, "-o", str(out), env=env_for(cv_emulator)).returncode == 0
    again = run("batch", card, "-o", str(out), env=env_for(cv_emulator))
    assert again.returncode == 2
    assert "--resume" in again.stderr
    assert (
        run("batch", card, "-o", str(out), "--overwrite", env=env_for(cv_emulator)).returncode == 0
    )
    assert len(lines(out)) == 1


def test_resume_after_sigkill_loses_nothing_and_resends_nothing_done(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    n = 400
    paths = make_images(tmp_path / "imgs", n)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n" + "\n".join(str(p) for p in paths) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cv_emulator.set_faults(latency=0.01)
    cmd = [*CLI, "batch", str(manifest), "-o", str(out), "--concurrency", "4"]
    with subprocess.Popen(
        cmd, env=env_for(cv_emulator), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the batch to be well under way
            if out.exists() and out.read_bytes().count(b"\n") >= 60:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    complete = out.read_bytes().count(b"\n")
    assert 60 <= complete < n
    assert cv_emulator.wait_idle(30)
    cv_emulator.reset()
    resumed = run("batch", str(manifest), "-o", str(out), "--resume", env=env_for(cv_emulator))
    assert resumed.returncode == 0, resumed.stderr
    records = lines(out)
    assert len(records) == n
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in paths)
    assert all(r["ok"] for r in records)
    # Only what was not recorded went out again.
    assert cv_emulator.stats()["requests"] == n - complete
    assert f"skipped: already ok  {complete}" in resumed.stdout


def test_shards_cover_every_input_exactly_once(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 60)
    outs = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}.jsonl"
        proc = run(
            "batch",
            str(tmp_path / "imgs"),
            "--shard",
            f"{k}/3",
            "-o",
            str(out),
            env=env_for(cv_emulator),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append({r["input"] for r in lines(out)})
    assert all(outs)
    assert sum(len(o) for o in outs) == len(set().union(*outs))  # no input in two shards
    assert outs[0] | outs[1] | outs[2] == {str(p) for p in paths}
    assert cv_emulator.stats()["requests"] == 60


def test_progress_is_plain_lines_when_not_a_terminal(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 20)
    proc = run(
        "batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl"), env=env_for(cv_emulator)
    )
    assert proc.returncode == 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("20/20 100%")
    assert "failed 0" in last
    assert "billed 20" in last
    assert "in flight <= 10" in last  # the default --concurrency
    assert "\r" not in proc.stderr


def test_batch_with_concurrency_auto_finds_the_services_level(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    cv_emulator.set_faults(capacity=5, queue=2, latency=0.02, retry_after="0")
    make_images(tmp_path / "imgs", 150)
    out = tmp_path / "o.jsonl"
    proc = run(
        "batch", str(tmp_path / "imgs"), "-o", str(out), "--concurrency", "auto:16",
        env=env_for(cv_emulator),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(lines(out)) == 150
    shown = re.search(r"in flight <= (\d+)", proc.stderr.strip().splitlines()[-1])
    assert shown is not None
    assert 1 <= int(shown.group(1)) <= 5 + 2  # where the service turns nothing away
    stats = cv_emulator.stats()
    assert stats["busy"] <= 0.05 * stats["requests"], stats


def test_progress_is_a_live_bar_on_a_terminal(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 20)
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*CLI, "batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "o.jsonl")],
        env=env_for(cv_emulator),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
    os.close(leader)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\x1b[" in shown  # drawn in place, with terminal codes
    assert "━" in shown  # a bar
    final = [part for part in shown.split("\r") if "20/20" in part][-1]  # the last redraw
    assert "20/20" in final
    assert "100%" in final
    assert "failed 0  billed 20" in final


# -- demo and emulator -----------------------------------------------------------------------------


def test_demo_reads_every_specimen_against_the_emulator() -> None:
    proc = run("demo")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "emulator at http://127.0.0.1:" in out
    assert re.search(r"chip_front\.jpg +chip_id_card_front: 040204683524, BÙI MINH CƯỜNG", out)
    assert re.search(r"card2024_front\.jpg +chip_id_card_2024_front: ", out)
    assert re.search(r"blank\.jpg +error: errorCode 1", out)
    assert re.search(r"scan\.pdf +9_id_card_front:", out)
    assert "[flagged: Photo contains sign of being taken through an electronic screen]" in out
    assert "ok                 12" in out
    assert "billed             12" in out
    assert "13/13 100%" in proc.stderr


def test_cvekyc_emulator_serves_answers(tmp_path: Path) -> None:
    cmd = [*CLI, "emulator", "--port", "0", "--api-key", "k1", "--api-secret", "s1"]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stderr is not None
            base = server.stderr.readline().split("listening on ")[1].split()[0]
            env = dict(
                os.environ, CVEKYC_API_KEY="k1", CVEKYC_API_SECRET="s1", CVEKYC_BASE_URL=base
            )
            proc = run("extract", str(specimen_path("passport.jpg")), "--json", env=env)
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["cards"][0]["type"] == "passport"
        finally:
            server.terminate()
            server.wait(timeout=30)


# -- trust checks in the output --------------------------------------------------------------------


def doctored(folder: Path, name: str, source: str, change: dict[str, object]) -> Path:
    """A copy of a specimen whose embedded truth was altered: a deliberately inconsistent card."""
    from cvekyc_async.emulator._truth import encode_truth, read_documents

    pages = read_documents(specimen_path(source).read_bytes())
    assert pages is not None
    doc = dict(pages[0][0])
    doc["info"] = {**doc["info"], **change}
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(specimen_path(source)) as img:
        img.save(folder / name, "JPEG", quality=50, comment=encode_truth([doc]))
    return folder / name


def test_batch_reports_verdicts_for_specimens_and_doctored_cards(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    doctored(extra, "wrong_gender_digit.jpg", "chip_front.jpg", {"id": "040304683524"})
    doctored(extra, "expired_passport.jpg", "passport.jpg", {"due_date": "02/11/2020"})
    doctored(extra, "blurry_name.jpg", "cccd_front.jpg", {"name_confidence": 0.41})
    specimen_dir = specimen_path("chip_front.jpg").parent
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch",
        str(specimen_dir),
        str(extra),
        "--endpoint",
        "ocr",
        "-o",
        str(out),
        env=env_for(cv_emulator),
    )
    assert proc.returncode == 1, proc.stderr  # blank.jpg holds no document
    verdicts = {Path(r["input"]).name: r["assessment"]["verdict"] for r in lines(out) if r["ok"]}
    assert verdicts.pop("wrong_gender_digit.jpg") == "reject"
    assert verdicts.pop("expired_passport.jpg") == "reject"
    assert verdicts.pop("blurry_name.jpg") == "review"
    assert verdicts.pop("screen_photo.jpg") == "review"  # the service's own warning
    records = {Path(r["input"]).name: r for r in lines(out)}
    # Every CMND is void since 1 January 2025 (Law 26/2023/QH15, Art. 46): the CMND specimens
    # (and the PDF that holds one) are rejected for that alone.
    for name in ("cmnd_front.jpg", "cmnd_back.jpg", "scan.pdf"):
        assert verdicts.pop(name) == "reject"
        assert "cmnd.void" in {f["code"] for f in records[name]["assessment"]["findings"]}
    assert set(verdicts.values()) == {"accept"}
    assert len(verdicts) == 8  # the 2024 card's two sides included
    codes = {f["code"] for f in records["wrong_gender_digit.jpg"]["assessment"]["findings"]}
    assert codes == {"id.gender"}  # digit 4 is 3: a woman born 2000-2099
    assert "verdicts           accept 8, review 2, reject 5" in proc.stdout


def test_extract_prints_the_verdict(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    proc = run(
        "extract",
        str(specimen_path("chip_front.jpg")),
        str(specimen_path("chip_back.jpg")),
        env=env_for(cv_emulator),
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: accept" in proc.stdout
    bad = doctored(tmp_path, "bad.jpg", "chip_back.jpg", {"dob": "16/02/2004"})
    proc = run(
        "extract",
        str(specimen_path("chip_front.jpg")),
        str(bad),
        "--json",
        env=env_for(cv_emulator),
    )
    data = json.loads(proc.stdout)
    assert data["assessment"]["verdict"] == "reject"
    assert "pair.dob" in {f["code"] for f in data["assessment"]["findings"]}
