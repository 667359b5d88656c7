"""What ``cvekyc`` does when things go wrong around it: answers that trickle in, stops that must
not wait for ever, outputs that are merged into themselves, deleted or cut short by a full disk,
inputs that changed since they were recorded, URLs that carry credentials, manifests that point
outside their folder, a closed standard output. Real subprocesses, against the emulator or small
raw servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import resource
import shlex
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cvekyc_async.emulator import RunningEmulator
from tests import samples
from tests._raw import RawServer
from tests.test_batch_jobs import manifest_of, ok_keys, start, wait_for_lines
from tests.test_cli import CLI, env_for, lines, make_images, run


def raw_env(server: RawServer) -> dict[str, str]:
    return dict(
        os.environ,
        CVEKYC_API_KEY="k",
        CVEKYC_API_SECRET="s",
        CVEKYC_BASE_URL=server.base_url,
        PYTHONUNBUFFERED="1",
    )


class EndingServer(RawServer):
    """A ``RawServer`` that ends the handlers still running when the block ends (a trickling
    answer outlives the client that gave up on it), closing their connections."""

    def __exit__(self, *exc: object) -> None:
        async def end_handlers() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(end_handlers(), self._loop).result(10)
        super().__exit__(*exc)


def trickling_server() -> RawServer:
    """A server whose answer comes one byte every 0.2 s: each read is quick, the whole answer
    would take hours."""
    body = samples.answer(samples.PASSPORT) * 100

    async def trickle(head: bytes, writer: Any) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    return EndingServer(trickle)


# -- A: deadlines and bounded stops ----------------------------------------------------------------


def test_a_trickling_answer_ends_the_batch_at_the_total_timeout(tmp_path: Path) -> None:
    image = tmp_path / "scan.jpg"
    image.write_bytes(samples.JPEG)
    out = tmp_path / "out.jsonl"
    with trickling_server() as server:
        # The read timeout never trips (a byte comes every 0.2 s); without a whole-request
        # deadline this run would outlast the subprocess timeout of the helper.
        proc = run(
            "batch", str(image), "-o", str(out), "--timeout", "2", "--total-timeout", "3",
            env=raw_env(server),
        )  # fmt: skip
        requests = server.requests
    assert proc.returncode == 1, proc.stderr
    [record] = lines(out)
    assert record["ok"] is False
    assert record["error"]["type"] == "APITimeoutError"
    assert "--total-timeout=3" in record["error"]["message"]
    assert requests == 1  # the deadline covers retries too: none starts past it
    assert "APITimeoutError" in proc.stdout  # in the summary


def test_extract_of_a_trickling_answer_ends_at_the_total_timeout(tmp_path: Path) -> None:
    image = tmp_path / "scan.jpg"
    image.write_bytes(samples.JPEG)
    with trickling_server() as server:
        proc = run("extract", str(image), "--total-timeout", "2", env=raw_env(server))
    assert proc.returncode == 1
    assert "no answer within --total-timeout=2 s" in proc.stderr


def test_the_first_sigint_waits_a_bounded_grace_then_leaves_what_is_in_flight_for_resume(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 12)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    # Every answer is held far longer than any test: only the grace can end the run.
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=600)
    args = ["batch", str(manifest), "-o", str(out), "--concurrency", "4"]
    with start(*args, "--stop-grace", "1", env=env) as proc:
        assert cv_emulator.state.wait_for_count("requests", 4, 30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert b"Traceback" not in stderr
    assert b"--stop-grace 1 s: 4 inputs in flight left for --resume" in stderr
    assert b"Resume with: cvekyc batch" in stderr
    assert b"batch summary" in stdout
    records = lines(out)
    assert len(records) == 4
    assert {r["error"]["type"] for r in records} == {"Interrupted"}
    cv_emulator.set_faults(rate_stall=0.0)
    resumed = run(*args, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "re-sent: Interrupted  4" in resumed.stdout
    keys = ok_keys(lines(out))
    assert len(keys) == 12
    assert max(keys.values()) == 1


# -- B: merge never loses what it replaces ---------------------------------------------------------


def write_records(path: Path, keys: list[str], ok: bool = True) -> None:
    rows = [
        json.dumps({"key": k, "input": k, "sha256": None, "ok": ok, "result": None,
                    "error": None, "attempts": 1, "billed": ok, "padding": "x" * 200})
        for k in keys
    ]  # fmt: skip
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def test_merge_into_one_of_its_parts_is_refused_and_the_part_kept(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(a, [f"a{i}.jpg" for i in range(50)])
    write_records(b, [f"b{i}.jpg" for i in range(50)])
    before = a.read_bytes()
    os.link(a, tmp_path / "same-as-a.jsonl")  # another name for the same file
    for output in (str(a), f"{tmp_path}/./a.jsonl", str(tmp_path / "same-as-a.jsonl")):
        proc = run("merge", str(a), str(b), "-o", output)
        assert proc.returncode == 2, proc.stderr
        assert "is also a part" in proc.stderr
        assert a.read_bytes() == before


def test_a_merge_that_cannot_be_written_leaves_the_old_output_intact(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    for k in range(3):
        write_records(parts / f"{k}.jsonl", [f"{k}-{i}.jpg" for i in range(100)])
    out = tmp_path / "all.jsonl"
    first = run("merge", str(parts / "0.jsonl"), "-o", str(out))
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()

    def small_files() -> None:  # the file system refuses to grow any file past 20 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run(
        [*CLI, "merge", *(str(parts / f"{k}.jsonl") for k in range(3)), "-o", str(out)],
        capture_output=True, text=True, timeout=120, preexec_fn=small_files, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "it is left as it was" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "parts"]  # no leftovers


def test_merge_replaces_its_output_whole_and_owner_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(a, ["x.jpg", "y.jpg"], ok=False)
    write_records(b, ["x.jpg"])
    out = tmp_path / "all.jsonl"
    write_records(out, ["old.jpg"])
    out.chmod(0o644)
    proc = run("merge", str(a), str(b), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [(r["key"], r["ok"]) for r in lines(out)] == [("x.jpg", True), ("y.jpg", False)]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    proc = run("merge", str(a), "-o", str(notes))
    assert proc.returncode == 2
    assert "holds something other than cvekyc batch records" in proc.stderr
    assert notes.read_text(encoding="utf-8") == "my notes\n"


# -- C: resume trusts the bytes, not the name ------------------------------------------------------


def test_a_second_folder_of_the_same_name_is_sent_again_not_taken_as_done(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_images(tmp_path / "2024" / "scans", 5)
    later = tmp_path / "2025" / "scans"
    later.mkdir(parents=True)
    for i in range(5):  # the same names, other scans
        (later / f"scan-{i:05d}.jpg").write_bytes(samples.JPEG + b"2025" + bytes([i]))
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    first = run("batch", str(tmp_path / "2024" / "scans"), "-o", str(out), env=env)
    assert first.returncode == 0, first.stderr
    cv_emulator.reset()
    second = run("batch", str(later), "-o", str(out), "--resume", env=env)
    assert second.returncode == 0, second.stderr
    assert cv_emulator.stats()["requests"] == 5
    assert re.search(r"re-sent: changed since it was recorded\s+5\n", second.stdout)
    latest = {r["key"]: r for r in lines(out)}  # the latest record of a key wins
    for i in range(5):
        data = (later / f"scan-{i:05d}.jpg").read_bytes()
        record = latest[f"scans/scan-{i:05d}.jpg"]
        assert (record["sha256"], record["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    cv_emulator.reset()
    third = run("batch", str(later), "-o", str(out), "--resume", env=env)
    assert third.returncode == 0, third.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert "changed since" not in third.stdout


def test_a_file_replaced_in_place_is_sent_again_and_the_rest_skipped(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    paths = make_images(tmp_path / "imgs", 6)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    assert run("batch", str(manifest), "-o", str(out), env=env).returncode == 0
    same_size = paths[1].read_bytes()
    paths[1].write_bytes(same_size[:-1] + bytes([same_size[-1] ^ 0xFF]))  # one byte differs
    paths[4].write_bytes(samples.JPEG + b"a longer scan")
    cv_emulator.reset()
    again = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert cv_emulator.stats()["requests"] == 2
    assert re.search(r"re-sent: changed since it was recorded\s+2\n", again.stdout)
    assert re.search(r"skipped: already ok\s+4\n", again.stdout)
    sent_again = [r["key"] for r in lines(out)[6:]]
    assert sorted(sent_again) == ["imgs/scan-00001.jpg", "imgs/scan-00004.jpg"]


# -- D: the output, the disk, URLs, manifests, a closed stdout, large inputs -----------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_an_output_deleted_or_replaced_mid_run_stops_with_exit_3(
    cv_emulator: RunningEmulator, tmp_path: Path, how: str
) -> None:
    paths = make_images(tmp_path / "imgs", 200)
    manifest = manifest_of(tmp_path, paths)
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    cv_emulator.set_faults(latency=0.05)
    with start("batch", str(manifest), "-o", str(out), "--concurrency", "4", env=env) as proc:
        wait_for_lines(out, 5, proc)
        if how == "deleted":
            out.unlink()
        else:
            other = tmp_path / "other.jsonl"
            other.write_text("kept\n", encoding="utf-8")
            os.replace(other, out)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert b"was deleted or replaced during the run" in stderr
    assert b"Resume with: cvekyc batch" in stderr
    assert b"Traceback" not in stderr
    assert b"batch summary" in stdout
    assert cv_emulator.stats()["requests"] < 200  # it stopped taking inputs
    if how == "replaced":
        assert out.read_text(encoding="utf-8") == "kept\n"  # the newcomer is left alone


def test_a_batch_refuses_to_start_on_a_disk_short_of_space(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    info = os.statvfs(tmp_path)
    free = info.f_bavail * info.f_frsize
    if free > 2**40 - 2**30:
        pytest.skip("more than 1 TiB free: no --min-free-space can exceed it")
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out.jsonl"
    proc = run(
        "batch", str(tmp_path / "imgs"), "-o", str(out), "--min-free-space",
        str(free + 2**30), env=env_for(cv_emulator),
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "free on the disk of" in proc.stderr
    assert "nothing was sent" in proc.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert not out.exists()


def test_url_credentials_and_tokens_stay_out_of_records_and_messages(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    plain = cv_emulator.specimen_url("passport.jpg")
    signed = plain.replace("http://", "http://reader:pa55word@") + "?X-Amz-Signature=t0ken"
    manifest = tmp_path / "urls.txt"
    manifest.write_text(signed + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator)
    proc = run("batch", str(manifest), "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    [record] = lines(out)
    assert record["ok"] is True
    assert record["input"] == plain
    assert record["key"].startswith(plain + "#hmac=")
    shown = out.read_text(encoding="utf-8") + proc.stdout + proc.stderr
    assert "pa55word" not in shown
    assert "t0ken" not in shown
    # The keyed hash keeps the URL's identity: resume knows it, another token is another input.
    cv_emulator.reset()
    again = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert cv_emulator.stats()["requests"] == 0
    manifest.write_text(signed.replace("t0ken", "other") + "\n", encoding="utf-8")
    other = run("batch", str(manifest), "-o", str(out), "--resume", env=env)
    assert other.returncode == 0, other.stderr
    assert cv_emulator.stats()["requests"] == 1
    keys = [r["key"] for r in lines(out)]
    assert len(set(keys)) == 2
    assert all("other" not in k for k in keys)


def test_the_resume_command_never_repeats_a_urls_token() -> None:
    from cvekyc_async.cli.batch import resume_command as _resume_command

    argv = ["batch", "https://u:pw@x.test/a.jpg?sig=t0ken", "scan#1.jpg", "-o", "o.jsonl"]
    command = _resume_command(argv)
    assert "t0ken" not in command
    assert "pw" not in command
    assert "'https://x.test/a.jpg?...'" in command
    assert "scan#1.jpg" in command  # a file name is not a URL


@pytest.mark.parametrize(
    "entry", ["../secret.jpg", "imgs/../../secret.jpg", "{outside}", "~/secret.jpg"]
)
def test_manifest_entries_outside_its_folder_are_refused_before_sending(
    cv_emulator: RunningEmulator, tmp_path: Path, entry: str
) -> None:
    folder = tmp_path / "job"
    make_images(folder / "imgs", 1)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(samples.JPEG)
    entry = entry.format(outside=secret)
    manifest = folder / "manifest.csv"
    manifest.write_text(f"path\nimgs/scan-00000.jpg\n{entry}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    env = env_for(cv_emulator, HOME=str(tmp_path))
    proc = run("batch", str(manifest), "-o", str(out), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "manifest.csv:3: " in proc.stderr  # the line of the entry
    assert "outside the manifest's folder" in proc.stderr
    assert "--allow-outside" in proc.stderr
    assert cv_emulator.stats()["requests"] == 0
    assert not out.exists()
    allowed = run("batch", str(manifest), "-o", str(out), "--allow-outside", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert cv_emulator.stats()["requests"] == 2


@pytest.mark.parametrize("reader", ["| head -1", "| true", ">&-"])
def test_a_closed_standard_output_ends_the_batch_as_a_stop(
    cv_emulator: RunningEmulator, tmp_path: Path, reader: str
) -> None:
    make_images(tmp_path / "imgs", 30)
    command = shlex.join([*CLI, "batch", "imgs", "-o", "-", "--concurrency", "4"])
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} {reader}"],
        env=env_for(cv_emulator), cwd=tmp_path, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Exception ignored" not in proc.stderr
    assert "standard output" in proc.stderr
    if reader != ">&-":
        assert "standard output was closed" in proc.stderr
        assert "batch imgs -o results.jsonl --concurrency 4" in proc.stderr
    if reader == "| head -1":
        assert json.loads(proc.stdout)["key"].startswith("imgs/")


def test_large_inputs_are_read_and_hashed_whole(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    # Over the size read on the event loop: these go through a worker thread.
    folder = tmp_path / "big"
    folder.mkdir()
    rng = random.Random(7)
    sizes = {}
    for i in range(4):
        data = samples.JPEG + rng.randbytes(3 * 1024**2 + i)
        (folder / f"scan-{i}.jpg").write_bytes(data)
        sizes[f"big/scan-{i}.jpg"] = (hashlib.sha256(data).hexdigest(), len(data))
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(folder), "-o", str(out), "--concurrency", "4",
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {r["key"]: (r["sha256"], r["size"]) for r in lines(out)} == sizes
    assert cv_emulator.stats()["billed"] == 4


# -- standard streams, thumbnails, merges killed, URL path parameters ------------------------------


@pytest.mark.parametrize("stderr", ["full", "closed"])
def test_a_batch_goes_on_when_standard_error_cannot_be_written(
    cv_emulator: RunningEmulator, tmp_path: Path, stderr: str
) -> None:
    # Progress and messages are best effort: a full disk under a log, or a closed stream,
    # must not stop the run and lose what was paid for.
    make_images(tmp_path / "imgs", 40)
    out = tmp_path / "out.jsonl"
    args = [*CLI, "batch", str(tmp_path / "imgs"), "-o", str(out), "--concurrency", "4"]
    with open(os.devnull if stderr == "closed" else "/dev/full", "w") as target:
        proc = subprocess.run(
            args, stdout=subprocess.PIPE, text=True, timeout=120, check=False,
            env=env_for(cv_emulator), stderr=target if stderr == "full" else None,
            pass_fds=(), preexec_fn=(lambda: os.close(2)) if stderr == "closed" else None,
        )  # fmt: skip
    assert proc.returncode == 0
    records = lines(out)
    assert len(records) == 40
    assert all(r["ok"] for r in records)
    assert cv_emulator.stats()["requests"] == 40


def test_a_thumbnail_folder_that_cannot_be_made_is_refused_before_the_call(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    image = tmp_path / "card.jpg"
    image.write_bytes(samples.JPEG)
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x", encoding="utf-8")
    for thumb in (not_a_folder, not_a_folder / "inside"):
        proc = run("extract", str(image), "--thumb", str(thumb), env=env_for(cv_emulator))
        assert proc.returncode == 2, proc.stderr
        assert "cannot use --thumb" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert cv_emulator.stats()["requests"] == 0


def test_a_merge_ended_by_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    write_records(big, [f"card-{i:06d}.jpg" for i in range(60_000)])
    folder = tmp_path / "merged"
    folder.mkdir()
    out = folder / "all.jsonl"
    with subprocess.Popen(
        [*CLI, "merge", str(big), "-o", str(out)], stderr=subprocess.PIPE, text=True
    ) as proc:
        # Signalled once the new copy is being written (or, on a fast machine, after).
        while proc.poll() is None and not any(p.suffix == ".tmp" for p in folder.iterdir()):
            pass
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers in ([], ["all.jsonl"]), leftovers  # interrupted, or done before the signal
    if leftovers:
        assert len(lines(out)) == 60_000
    else:
        assert proc.returncode == 128 + signal.SIGTERM


def test_a_merge_removes_the_copy_a_killed_merge_left(tmp_path: Path) -> None:
    part = tmp_path / "part.jsonl"
    write_records(part, ["a.jpg", "b.jpg"])
    out = tmp_path / "all.jsonl"
    stale = tmp_path / ".all.jsonl.k1ll3d.tmp"  # as a SIGKILL mid-write leaves it
    stale.write_bytes(part.read_bytes()[:10])
    proc = run("merge", str(part), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "part.jsonl"]


def test_url_path_parameters_stay_out_of_records(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    plain = cv_emulator.specimen_url("passport.jpg")
    manifest = tmp_path / "urls.txt"
    manifest.write_text(plain + ";jsessionid=S3SS10N\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(manifest), "-o", str(out), env=env_for(cv_emulator))
    [record] = lines(out)
    assert record["input"] == plain
    assert "S3SS10N" not in out.read_text(encoding="utf-8") + proc.stdout + proc.stderr
