"""`cvekyc batch` as users run it, in real subprocesses against the emulator: one writer per output,
resume by canonical key, quota stops, signals, kills, write failures, shards, merge."""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import signal
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cvekyc_async.emulator import RunningEmulator
from tests import samples
from tests._raw import RawServer
from tests.test_cli import CLI, env_for, lines, make_images, run


def manifest_of(folder: Path, paths: list[Path]) -> Path:
    manifest = folder / "manifest.csv"
    rows = ["path"] + [p.relative_to(folder).as_posix() for p in paths]
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def ok_keys(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["key"] for r in records if r["ok"])


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.01)


def start(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_a_second_writer_of_the_same_output_is_refused(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 200)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    # Slow answers keep the first batch running however long the second takes to start.
    cv_emulator.set_faults(latency=0.3)
    env = env_for(cv_emulator)
    with start("batch", str(manifest), "-o", str(out), "--concurrency", "4", env=env) as first:
        wait_for_lines(out, 5, first)
        second = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
        cv_emulator.set_faults(latency=0.0)
        assert second.returncode == 2
        assert f"{out} is being written by another cvekyc batch" in second.stderr
        first.communicate(timeout=120)
    assert first.returncode == 0
    records = lines(out)
    assert len(records) == 200
    assert max(ok_keys(records).values()) == 1  # no input twice


def test_resume_from_another_directory_by_another_spelling_sends_nothing_again(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 30)
    manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    first = run("batch", "manifest.csv", "-o", "out.jsonl", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cv_emulator.reset()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = run(
        "batch", str(tmp_path / "manifest.csv"), "-o", str(out), "--resume", env=env, cwd=elsewhere
    )
    assert again.returncode == 0, again.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert "skipped: already ok  30" in again.stdout
    # The same folder by another spelling: the same keys, so nothing is sent either.
    by_folder = run(
        "batch", str(tmp_path / "imgs"), "-o", str(tmp_path / "dir.jsonl"), env=env, cwd=elsewhere
    )
    assert by_folder.returncode == 0
    cv_emulator.reset()
    relative = run("batch", "imgs", "-o", "dir.jsonl", "--resume", env=env, cwd=tmp_path)
    assert relative.returncode == 0
    assert cv_emulator.stats()["requests"] == 0


def test_shards_agree_across_spellings_and_mount_points(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "a" / "scans", 60)
    make_images(tmp_path / "b" / "scans", 60)  # the same folder, mounted elsewhere
    env = env_for(cv_emulator)
    picked = []
    for folder, cwd in ((tmp_path / "a" / "scans", None), (Path("scans"), tmp_path / "b")):
        out = tmp_path / f"{len(picked)}.jsonl"
        proc = run("batch", str(folder), "--shard", "2/3", "-o", str(out), env=env, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        picked.append({r["key"] for r in lines(out)})
    assert picked[0] == picked[1]
    assert 5 < len(picked[0]) < 40
    auto = tmp_path / "auto.jsonl"
    scheduler = dict(env, JOB_COMPLETION_INDEX="1", CVEKYC_SHARD_COUNT="3")
    proc = run("batch", str(tmp_path / "a" / "scans"), "--shard", "auto", "-o", str(auto),
               env=scheduler)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {r["key"] for r in lines(auto)} == picked[0]


def test_a_quota_stop_then_resume_sends_exactly_what_was_not_read(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 300)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    cv_emulator.state.settings.quota = 50
    first = run("batch", str(manifest), "-o", str(out), "--concurrency", "4", env=env)
    assert first.returncode == 1
    records = lines(out)
    assert len(records) == 300
    assert sum(r["ok"] for r in records) == 50
    assert {r["error"]["type"] for r in records if not r["ok"]} == {"QuotaExceededError"}
    cv_emulator.state.settings.quota = None  # the account is topped up
    cv_emulator.reset()
    resumed = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert cv_emulator.stats()["requests"] == 250
    final = ok_keys(lines(out))
    assert len(final) == 300
    assert max(final.values()) == 1
    assert "re-sent:" in resumed.stdout


@pytest.mark.parametrize("stops", [3])
def test_sigint_finishes_what_is_in_flight_and_records_every_billed_answer(
    cv_emulator: RunningEmulator, tmp_path: Path, stops: int
) -> None:
    paths = make_images(tmp_path / "imgs", 400)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    cv_emulator.set_faults(latency=0.02, jitter=0.02, seed=3)
    rounds = []
    for n in range(stops):
        args = ["batch", str(manifest), "-o", str(out), "--concurrency", "8"]
        args += ["--resume"] if n else []
        with start(*args, env=env) as proc:
            wait_for_lines(out, 40 * (n + 1), proc)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=120)
        rounds.append(proc.returncode)
        assert b"Resume with: cvekyc batch" in stderr
    assert rounds == [128 + signal.SIGINT] * stops
    assert cv_emulator.wait_idle(30)
    final = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert final.returncode == 0, final.stderr
    records = lines(out)
    assert len(ok_keys(records)) == 400
    assert max(ok_keys(records).values()) == 1
    # Every answer the service billed is in the file: none was lost to a stop.
    assert sum(r["billed"] for r in records) == cv_emulator.stats()["billed"]


def test_a_second_sigint_stops_at_once(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "imgs", 20)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    # Every answer is held until the client lets go, and the grace outlasts the test: only a
    # second signal can end the run.
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=600)
    args = ["batch", str(manifest), "-o", str(out), "--concurrency", "4"]
    with start(*args, "--stop-grace", "600", env=env) as proc:
        assert proc.stderr is not None
        assert cv_emulator.state.wait_for_count("requests", 4, 30)
        proc.send_signal(signal.SIGINT)
        first = b""
        while b"press Ctrl-C again" not in first:
            line = proc.stderr.readline()
            assert line, first
            first += line
        proc.send_signal(signal.SIGINT)
        try:
            _, rest = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 128 + signal.SIGINT
    assert b"Resume with: cvekyc batch" in rest
    assert b"Traceback" not in first + rest
    assert b"stopped at once by a second signal: 4 inputs in flight left for --resume" in rest
    # Nothing was answered: the four in flight are recorded as not done, and sent again.
    assert [r["error"]["type"] for r in lines(out)] == ["Interrupted"] * 4
    cv_emulator.set_faults(rate_stall=0.0)
    resumed = run(*args, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(ok_keys(lines(out))) == 20


def test_kill_9_three_times_then_resume_ends_with_every_input_once(
    cv_emulator: RunningEmulator, tmp_path: Path, slow_tier: bool
) -> None:
    n = 3000 if slow_tier else 600
    paths = make_images(tmp_path / "imgs", n)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    cv_emulator.set_faults(latency=0.005)
    for k in range(3):
        args = ["batch", str(manifest), "-o", str(out), "--concurrency", "8"]
        args += ["--resume"] if k else []
        with start(*args, env=env) as proc:
            wait_for_lines(out, n * (k + 1) // 5, proc)
            proc.kill()
            proc.communicate(timeout=60)
    assert cv_emulator.wait_idle(30)
    final = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert final.returncode == 0, final.stderr
    keys = ok_keys(lines(out))
    assert len(keys) == n
    assert max(keys.values()) == 1


def test_a_write_failure_stops_cleanly_and_resume_finishes(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 60)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)

    def small_files() -> None:  # the file system refuses to grow any file past 20 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run(
        [*CLI, "batch", str(manifest), "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot write" in proc.stderr
    assert "Resume with: cvekyc batch" in proc.stderr
    assert "batch summary" in proc.stdout
    written = lines(out)  # every line whole
    assert 0 < len(written) < 60
    # The answers in flight when the write failed were read to the end, and any the file could
    # not take are counted: what the service billed is recorded or reported.
    assert cv_emulator.wait_idle(30)
    found = re.search(r"(\d+) billed answers in flight could not be recorded", proc.stderr)
    unrecorded = int(found.group(1)) if found else 0
    assert sum(r["billed"] for r in written) + unrecorded == cv_emulator.stats()["billed"]
    assert re.search(rf"billed\s+{cv_emulator.stats()['billed']}\n", proc.stdout)
    resumed = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    keys = ok_keys(lines(out))
    assert len(keys) == 60
    assert max(keys.values()) == 1


def test_records_can_go_to_stdout(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "imgs", 3)
    proc = run("batch", *map(str, paths), "-o", "-", env=env_for(cv_emulator), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["key"] for r in records) == [p.name for p in paths]
    assert "batch summary" in proc.stderr
    assert not (tmp_path / "-").exists()


def test_a_symlinked_output_is_refused_and_its_target_kept(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep", encoding="utf-8")
    (tmp_path / "out.jsonl").symlink_to(target)
    paths = make_images(tmp_path / "imgs", 1)
    proc = run(
        "batch", str(paths[0]), "-o", str(tmp_path / "out.jsonl"), "--overwrite",
        env=env_for(cv_emulator),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr
    assert target.read_text(encoding="utf-8") == "keep"
    assert cv_emulator.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"path\nimgs/a.jpg\n\xff\xfe\n", "manifest.csv:3: not UTF-8 text"),
        (b"name,phone\nA,1\n", "no column this command reads"),
        (b"path\nftp://host/a.jpg\n", "ftp:// URLs are not supported"),
    ],
)
def test_bad_manifests_exit_2_before_sending_and_leave_no_output(
    cv_emulator: RunningEmulator, tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "manifest.csv").write_bytes(content)
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(tmp_path / "manifest.csv"), "-o", str(out), env=env_for(cv_emulator))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()
    assert cv_emulator.stats()["requests"] == 0


def test_the_same_bytes_under_another_name_are_not_paid_twice(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    assert run("batch", str(tmp_path / "imgs"), "-o", str(out), env=env).returncode == 0
    copy = tmp_path / "copy-of-0.jpg"
    copy.write_bytes(paths[0].read_bytes())
    cv_emulator.reset()
    again = run("batch", str(tmp_path / "imgs"), str(copy), "-o", str(out), "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert "same bytes as another input" in again.stdout
    record = lines(out)[-1]
    assert (record["key"], record["same_as"], record["billed"]) == (
        "copy-of-0.jpg",
        "imgs/scan-00000.jpg",
        False,
    )


def test_merge_combines_shards_and_lists_what_is_missing(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "imgs", 30)
    env = env_for(cv_emulator)
    parts = []
    for k in (1, 2):  # shard 3 of 3 never ran
        part = tmp_path / f"part{k}.jsonl"
        proc = run("batch", str(tmp_path / "imgs"), "--shard", f"{k}/3", "-o", str(part), env=env)
        assert proc.returncode == 0
        parts.append(str(part))
    merged = run("merge", *parts, "-o", str(tmp_path / "all.jsonl"), "--inputs",
                 str(tmp_path / "imgs"))  # fmt: skip
    assert merged.returncode == 1
    held = {r["key"] for r in lines(tmp_path / "all.jsonl")}
    missing = [line.strip() for line in merged.stdout.splitlines()[2:]]
    assert len(held) + len(missing) == 30
    assert not held & set(missing)
    assert stat.S_IMODE((tmp_path / "all.jsonl").stat().st_mode) == 0o600


def test_one_hostile_answer_among_300_is_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    deep = b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b', "errorCode": "0"}'
    good = samples.answer(samples.PASSPORT)

    async def answer(head: bytes, writer: Any) -> None:
        body = deep if server.requests % 30 == 0 else good
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    paths = make_images(tmp_path / "imgs", 300)
    with RawServer(answer) as server:
        env = dict(os.environ, CVEKYC_API_KEY="k", CVEKYC_API_SECRET="s",
                   CVEKYC_BASE_URL=server.base_url)  # fmt: skip
        out = tmp_path / "out.jsonl"
        proc = run("batch", str(tmp_path / "imgs"), "-o", str(out), "--max-retries", "0", env=env)
    assert proc.returncode == 1, proc.stderr
    records = lines(out)
    assert len(records) == 300
    failed = [r for r in records if not r["ok"]]
    assert {r["error"]["type"] for r in failed} == {"MalformedResponseError"}
    assert len(failed) == 10
    assert len({r["key"] for r in records}) == len(paths)


def test_hostile_card_types_never_steer_a_thumbnail_path(tmp_path: Path) -> None:
    thumb = base64.b64encode(samples.JPEG).decode()
    card = {"type": "../../escape/../x y", "info": {"image": thumb}}
    body = samples.answer(card)

    async def answer(head: bytes, writer: Any) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    image = tmp_path / "scan one.jpg"
    image.write_bytes(samples.JPEG)
    with RawServer(answer) as server:
        env = dict(os.environ, CVEKYC_API_KEY="k", CVEKYC_API_SECRET="s",
                   CVEKYC_BASE_URL=server.base_url)  # fmt: skip
        proc = run("extract", str(image), "--thumb", str(tmp_path / "thumbs"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    [saved] = json.loads(proc.stdout)["thumbnails"]
    path = Path(saved)
    assert path.parent == tmp_path / "thumbs"
    assert path.name == "scan_one-1-card.jpg"  # an undocumented type never names a file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "thumbs").stat().st_mode) == 0o700
    assert not (tmp_path / "escape").exists()


def test_extract_json_prints_an_error_object(cv_emulator: RunningEmulator) -> None:
    from cvekyc_async.emulator import specimen_path

    proc = run("extract", str(specimen_path("blank.jpg")), "--json", env=env_for(cv_emulator))
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert (error["type"], error["error_code"]) == ("NoDocumentError", 1)


def test_messages_speak_in_flags(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(samples.JPEG + b"\x00" * 3000)
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(big), "-o", str(out), "--max-file-size", "2K",
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1
    [record] = lines(out)
    assert "--max-file-size" in record["error"]["message"]
    assert "AsyncCVClient" not in record["error"]["message"]


@pytest.mark.parametrize("name", ["k8s-indexed-job.yaml", "slurm-array.sh"])
def test_the_scheduler_examples_use_commands_that_parse(name: str) -> None:
    import re
    import shlex

    from cvekyc_async.cli.main import build_parser

    text = (Path(__file__).resolve().parent.parent / "examples" / name).read_text(encoding="utf-8")
    text = re.sub(r"\\\s*\n\s*#?\s*", " ", text)
    commands = re.findall(r"cvekyc (batch|merge)([^\n&]*)", text)
    assert {c for c, _ in commands} == {"batch", "merge"}
    for command, rest in commands:
        if rest.count('"') % 2:  # the end of the YAML string the command sits in
            rest = rest.rstrip().removesuffix('"')
        words = shlex.split(rest.replace("$(JOB_COMPLETION_INDEX)", "0"))
        build_parser().parse_args([command, *words])  # exits 2 on a flag that does not exist


def test_two_inputs_with_one_key_are_refused_before_sending(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "2023" / "scans", 3)
    (tmp_path / "2024" / "scans").mkdir(parents=True)
    (tmp_path / "2024" / "scans" / "scan-00000.jpg").write_bytes(samples.JPEG + b"other")
    out = tmp_path / "out.jsonl"
    args = [str(tmp_path / "2023" / "scans"), str(tmp_path / "2024" / "scans")]
    proc = run("batch", *args, "-o", str(out), env=env_for(cv_emulator))
    assert proc.returncode == 2, proc.stderr
    assert "two different inputs have the key 'scans/scan-00000.jpg'" in proc.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert not out.exists()


def test_the_same_bytes_in_flight_at_once_are_paid_once(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        (folder / f"copy-{i:02d}.jpg").write_bytes(samples.JPEG)
    cv_emulator.set_faults(latency=0.2)
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch", str(folder), "-o", str(out), "--concurrency", "10", env=env_for(cv_emulator)
    )
    assert proc.returncode == 0, proc.stderr
    records = lines(out)
    assert len(ok_keys(records)) == 20
    assert cv_emulator.stats()["billed"] == 1
    assert sum(1 for r in records if r.get("same_as")) == 19


def test_unreadable_answers_are_not_sent_again_unless_asked(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 6)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator, CVEKYC_MAX_RETRIES="0")
    cv_emulator.set_faults(rate_malformed=1.0)
    first = run("batch", str(manifest), "-o", str(out), "--max-retries", "0", env=env)
    assert first.returncode == 1
    cv_emulator.set_faults(rate_malformed=0.0)
    cv_emulator.reset()
    # A malformed answer may have been billed: resuming does not pay for it again...
    resumed = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert cv_emulator.stats()["requests"] == 0
    assert "skipped: MalformedResponseError (--retry-failed sends it)" in resumed.stdout
    # ...unless asked to.
    retried = run("batch", str(manifest), "-o", str(out), "--resume", "--retry-failed", env=env)
    assert retried.returncode == 0, retried.stderr
    assert cv_emulator.stats()["requests"] == 6


@pytest.mark.parametrize("kind", ["device", "not records", "manifest", "folder"])
def test_an_output_that_is_not_ours_is_refused_and_left_alone(
    cv_emulator: RunningEmulator, tmp_path: Path, kind: str
) -> None:
    paths = make_images(tmp_path / "imgs", 2)
    manifest = manifest_of(tmp_path, paths)
    extra: list[str] = []
    if kind == "device":
        target = Path("/dev/null")
    elif kind == "not records":
        target = tmp_path / "notes.txt"
        target.write_text("my notes\n", encoding="utf-8")
        target.chmod(0o644)
        extra = ["--resume"]
    elif kind == "manifest":
        target = manifest
        extra = ["--overwrite"]
    else:
        target = tmp_path / "newdir"
    before = target.read_bytes() if target.is_file() else None
    mode = target.stat().st_mode if target.exists() else None
    shown = f"{target}/" if kind == "folder" else str(target)
    proc = run("batch", str(manifest), "-o", shown, *extra, env=env_for(cv_emulator))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert cv_emulator.stats()["requests"] == 0
    if mode is not None:
        assert target.stat().st_mode == mode
    if before is not None:
        assert target.read_bytes() == before
    assert not (tmp_path / "newdir").exists()


def test_the_resume_command_never_repeats_a_secret(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 40)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    del env["CVEKYC_API_SECRET"]
    args = ["--api-secret", cv_emulator.api_secret, "--api-key", cv_emulator.api_key]
    cv_emulator.set_faults(latency=0.05)
    with start("batch", str(manifest), "-o", str(out), *args, "--concurrency", "2", env=env) as p:
        wait_for_lines(out, 2, p)
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=60)
    assert b"Resume with: cvekyc batch" in stderr
    assert cv_emulator.api_secret.encode() not in stderr.replace(b"--api-secret", b"")
