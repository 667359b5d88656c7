"""``cvekyc batch``: read many inputs, one JSONL record per input, resumable."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import shlex
import signal
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import msgspec

from .._batch import DEFAULT_FATAL_ERRORS, BatchResult, extract_as_completed
from .._constants import DEFAULT_MAX_FILE_SIZE, ENV_API_KEY
from .joblog import (
    INTERRUPTED,
    LockedError,
    OutputGoneError,
    ResultLog,
    make_folders,
    named_among,
    result_record,
    thumb_folder,
    utc_now,
    write_replacing,
)
from .jobs import (
    Fingerprint,
    Job,
    LeftOut,
    ManifestError,
    PairRule,
    Shard,
    card_group,
    carries_secrets,
    discover,
    key_hash,
    load,
    printable,
    record_input,
    safe_url,
    shown,
    still_as_sent,
    url_secret,
)
from .options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, EXIT_WRITE, UsageError, make_client
from .progress import ProgressDisplay
from .summary import assess, outcome, write_summary

__all__ = ["hmac_key_of", "resume_command", "run_batch"]


class _Stop:
    """Why no more inputs are taken: the first SIGINT or SIGTERM, or a failed write. Those in
    flight are finished (and recorded when the file allows), unless ``forced``: a second signal,
    or the grace after the first one ran out, cancelled them."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.write_error: OSError | None = None
        self.unrecorded = 0
        self.forced: str | None = None


async def _watch_signals(stop: _Stop, now: anyio.CancelScope, err: TextIO, grace: float) -> None:
    async def cancel_after_grace() -> None:
        await anyio.sleep(grace)
        stop.forced = f"the answers in flight did not arrive within --stop-grace {grace:g} s"
        now.cancel()

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async with anyio.create_task_group() as timer:
            async for signum in received:
                if stop.signal is None:
                    stop.signal = signum
                    err.write(
                        "\ncvekyc batch: stopping: no new inputs; the answers in flight (they are "
                        f"billed) have {grace:g} s to arrive and be recorded, then they are left "
                        "for --resume; press Ctrl-C again to stop at once\n"
                    )
                    err.flush()
                    timer.start_soon(cancel_after_grace)
                else:
                    stop.forced = "stopped at once by a second signal"
                    now.cancel()
                    timer.cancel_scope.cancel()
                    return


def _refused_record(job: Job) -> dict[str, Any]:
    """The record of an input found unsendable before any request (``job.problem``)."""
    return {
        "key": job.key,
        "input": record_input(job.value),
        "sha256": None,
        "size": None,
        "ok": False,
        "result": None,
        "error": {"type": "InvalidInputError", "message": job.problem},
        "attempts": 0,
        "elapsed": 0.0,
        "billed": False,
        "assessment": None,
    }


def _withdrawn_record(lone: str, pair: str) -> dict[str, Any]:
    """The record that withdraws a lone side's error once its card's pair was sent (its other
    side was added since, or a second copy of a side removed): ``export``, ``report`` and
    ``merge`` then drop that key."""
    return {
        "key": lone,
        "input": None,
        "sha256": None,
        "size": None,
        "ok": False,
        "result": None,
        "error": None,
        "withdrawn": pair,
        "attempts": 0,
        "elapsed": 0.0,
        "billed": False,
        "assessment": None,
    }


def _interrupted_record(job: Job, sent: Fingerprint | None) -> dict[str, Any]:
    """The record of an input whose call was cancelled by a forced stop: not done, so
    ``--resume`` sends it again. Whether the service read (and billed) it is unknown."""
    return {
        "key": job.key,
        "input": record_input(job.value),
        "sha256": None if sent is None else sent.sha256,
        "size": None if sent is None else sent.size,
        "ok": False,
        "result": None,
        "error": {
            "type": INTERRUPTED,
            "message": "the run stopped before this input's answer was read (the service may "
            "have read and billed it); --resume sends it again",
        },
        "attempts": None,
        "elapsed": 0.0,
        "billed": False,
        "assessment": None,
    }


# Options whose values must not be repeated in a message (the resume command is printed).
_SECRET_OPTIONS = ("--api-secret", "--api-key")


def resume_command(argv: Sequence[str]) -> str:
    words: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in ("--overwrite", "--resume"):
            continue
        if word in _SECRET_OPTIONS:
            skip = True
            continue
        if word.startswith(tuple(f"{o}=" for o in _SECRET_OPTIONS)):
            continue
        # A URL's credentials and query are never repeated: the user gives them again.
        words.append(safe_url(word) + "?..." if carries_secrets(word) else word)
    return shlex.join(["cvekyc", *words, "--resume"])


def _to_file_command(argv: Sequence[str]) -> str:
    """The command again, writing to a file instead of standard output."""
    words = list(argv)
    for n, word in enumerate(words):
        if word in ("-o", "--output") and n + 1 < len(words) and words[n + 1] == "-":
            words[n + 1] = "results.jsonl"
        elif word in ("-o-", "--output=-"):
            words[n] = "--output=results.jsonl"
    return resume_command(words).removesuffix(" --resume")


def _same_file_as_an_input(output: Path, sources: Sequence[str]) -> str | None:
    """The argument that names the output's own file (a manifest, an image), if any."""
    try:
        return named_among(output.stat(), sources)
    except OSError:
        return None


def _output_of(args: argparse.Namespace) -> Path | None:
    """The batch's output file (``None`` for standard output), checked before anything."""
    if args.output == "-":
        return None
    if args.output.endswith(("/", os.sep)) or Path(args.output).is_dir():
        raise UsageError(f"-o {args.output} names a folder: give the file to write")
    output = Path(args.output)
    clash = _same_file_as_an_input(output, args.paths)
    if clash is not None:
        raise UsageError(f"-o {output} is also an input ({clash}): write to another file")
    return output


#: Inputs up to this size are read and hashed on the event loop: a thread costs more than that.
_INLINE_LOAD = 256 * 1024
_PREPARED = ("converted", "rotated", "downscaled", "re-encoded")


#: Bytes of inputs read and not yet answered, at most (one bigger input goes alone): with
#: --prepare a photo of 30 MB is read whole, and 64 of them in flight would hold 2 GB.
_HELD_BYTES = 256 * 1024 * 1024


class _Held:
    """The bytes of inputs read for sending whose answers have not come: the batch waits
    before reading one more that would take them over ``limit``. One task takes (the
    producer, which pulls one input at a time), others give back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._given = anyio.Event()

    async def take(self, size: int) -> None:
        while self.used and self.used + size > self.limit:
            await self._given.wait()
            self._given = anyio.Event()
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size
        self._given.set()


def _size_on_disk(job: Job) -> int:
    values = job.value if isinstance(job.value, tuple) else (job.value,)
    size = 0
    for value in values:
        if isinstance(value, str) and "://" not in value:
            with contextlib.suppress(OSError, ValueError):
                size += os.stat(value).st_size
    return size


async def _load(job: Job, max_file_size: int, size: int) -> tuple[Any, Fingerprint | None]:
    """``load`` the input, in a worker thread when it is large (``size`` bytes on disk):
    hashing 10 MB takes about 20 ms, a stall for every call in flight. The batch pulls one
    input at a time, so one load runs at once, and what is loaded is held only while its call
    is in flight (bounded by the concurrency and by ``_HELD_BYTES``)."""
    if size <= _INLINE_LOAD:
        return load(job, max_file_size)
    return await anyio.to_thread.run_sync(load, job, max_file_size)


def hmac_key_of(args: argparse.Namespace) -> bytes | None:
    """The HMAC key URL inputs with credentials or a query are named by: derived from the API
    key, so every shard and run of one account agrees (``None`` without one)."""
    api_key = getattr(args, "api_key", None) or os.environ.get(ENV_API_KEY)
    return url_secret(api_key) if api_key else None


def _free_space(output: Path) -> int | None:
    """Bytes free to this user on the output's disk (``None`` where it cannot be told)."""
    try:
        info = os.statvfs(output.parent if str(output.parent) else ".")
    except (OSError, AttributeError):  # no statvfs on Windows
        return None
    return info.f_bavail * info.f_frsize


def _mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MiB"


def _value_id(value: Any) -> str:
    """The input a key stands for, to tell two inputs that share a key apart."""
    values = value if isinstance(value, tuple) else (value,)
    return "\t".join(v if "://" in v else os.path.abspath(v) for v in values)


def _same_as_record(
    job: Job, sent: Fingerprint, first: str, ok: bool, error: Any
) -> dict[str, Any]:
    return {
        "key": job.key,
        "input": record_input(job.value),
        "sha256": sent.sha256,
        "size": sent.size,
        "ok": ok,
        "same_as": first,
        "result": None,
        "error": error,
        "attempts": 0,
        "elapsed": 0.0,
        "billed": False,
        "assessment": None,
    }


#: Why an input is not sent: its bytes were read under another key.
_SHARED = "not sent: same bytes as another input, already read"

#: Why an input recorded as done is sent again: its bytes are not those recorded.
_CHANGED = "re-sent: changed since it was recorded"


class _InputsChanged(Exception):
    """The inputs read differently the second time (a manifest changed during the run)."""


async def run_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    pairs = args.endpoint == "cards"
    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pair_rule = _pair_rule_of(args)
    output = _output_of(args)
    summary_path = _summary_path_of(args, output)
    # With -o -, standard output carries the records; with --summary-json -, the figures.
    report = err if output is None or summary_path == "-" else out
    thumbnails: Path | None = args.thumbnails
    if thumbnails is not None:
        inside = _folder_holding(thumbnails, args.paths)
        if inside is not None:
            raise UsageError(
                f"--thumbnails {thumbnails} lies in the input folder {inside}: its images would "
                "be read as inputs by the next run; give a folder outside the inputs"
            )
        # Card images are personal data: a folder of the owner's only, made (or refused)
        # before anything is paid for.
        try:
            await anyio.to_thread.run_sync(thumb_folder, thumbnails)
        except OSError as exc:
            raise UsageError(
                f"cannot use --thumbnails {thumbnails}: {exc.strerror or exc}"
            ) from None
    client = make_client(args, err)
    # With --prepare, a file over the upload cap is read (and hashed) all the same: what is
    # sent is made to fit.
    max_file_size = args.max_file_size or DEFAULT_MAX_FILE_SIZE
    if client.prepare is not None:
        max_file_size = max(max_file_size, client.prepare.max_input_size)
    url_hmac_key = hmac_key_of(args)
    run_id = secrets.token_hex(8)
    log = ResultLog(
        output,
        retry_failed=args.retry_failed,
        run=run_id,
        shard=None if shard is None else f"{shard.index}/{shard.count}",
    )
    started_at = utc_now()
    try:
        torn = log.open(resume=args.resume, overwrite=args.overwrite)
    except LockedError:
        raise UsageError(
            f"{output} is being written by another cvekyc batch: let it finish, or write "
            "to another file"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None

    # Keys whose recorded bytes are no longer what the input holds (another folder of the
    # same name, a file replaced in place): found by the first pass, sent again by the second.
    changed: set[str] = set()

    left_out = LeftOut()
    # The lone sides the output holds, by card: withdrawn once their card's pair is sent.
    lone_sides: dict[str, list[str]] = {}
    if pair_rule is not None:
        for lone in log.lone_sides():
            found = pair_rule.side_of(Path(lone[:-1]))
            if found is not None:
                lone_sides.setdefault(card_group(lone[:-1], found[0]), []).append(lone)

    def planned(check: bool = False) -> Iterator[tuple[Job, str | None]]:
        """Each input once, with what to do: ``None`` to send it, else why it is skipped.
        With ``check`` (the first pass), a recorded input is compared with its bytes (size,
        then SHA-256), and the files of scanned folders that are not inputs are counted."""
        seen: dict[int, str] = {}
        for job in discover(
            args.paths,
            pairs=pairs,
            url_hmac_key=url_hmac_key,
            allow_outside=args.allow_outside,
            delimiter=args.delimiter,
            left_out=left_out if check else None,
            pair_rule=pair_rule,
        ):
            # The sides of one card stay in one shard, alone or paired.
            if shard is not None and (job.group or job.key) not in shard:
                continue
            hashed = key_hash(job.key)
            if hashed in seen:
                if seen[hashed] != _value_id(job.value):
                    raise ManifestError(
                        f"two different inputs have the key {shown(job.key)!r}: give them in one "
                        "manifest, or in folders of different names, so that each has its own"
                    )
                yield job, "skipped: listed twice"
                continue
            seen[hashed] = _value_id(job.value)
            latest = log.decide(job)
            if latest is not None and not latest.resend and latest.sha256 is not None:
                if check and not still_as_sent(job.value, latest.sha256, latest.size):
                    changed.add(job.key)
                if job.key in changed:
                    yield job, _CHANGED
                    continue
            if latest is None:
                yield job, None
            elif latest.ok:
                yield job, "skipped: already ok"
            elif latest.prepare_helps and client.prepare is not None:
                # Refused for what --prepare fixes (a HEIC photo, a file over the cap).
                yield job, "re-sent: refused before, --prepare sends it now"
            elif not latest.resend:
                yield job, f"skipped: {latest.reason} (--retry-failed sends it)"
            else:
                yield job, f"re-sent: {latest.reason}"

    plan: Counter[str] = Counter()

    def first_pass() -> tuple[int, int]:
        total = skipped = 0
        for _, why in planned(check=True):
            sending = why is None or why.startswith("re-sent")
            total += sending
            skipped += not sending
            if why is not None:
                plan[why] += 1
        return total, skipped

    try:
        # A first pass reads and checks every input before anything is sent (in a thread: on
        # resume it hashes what it skips).
        total, skipped = await anyio.to_thread.run_sync(first_pass)
    except (ManifestError, UsageError):
        log.discard()
        raise
    if output is not None:
        free = _free_space(output)
        if free is not None and free < args.min_free_space:
            log.discard()
            err.write(
                f"cvekyc batch: only {_mib(free)} free on the disk of {output}, under "
                f"--min-free-space {_mib(args.min_free_space)}: free some space (or lower "
                "--min-free-space); nothing was sent\n"
            )
            return EXIT_WRITE
    if torn:
        err.write(
            f"cvekyc batch: the last line of {output} was cut short (a run was killed while "
            "writing it): that input is sent again\n"
        )

    stop = _Stop()
    pending: dict[int, tuple[Job, Fingerprint | None]] = {}
    held = _Held(_HELD_BYTES)
    holding: dict[int, int] = {}  # bytes read for each input in flight
    # Inputs whose bytes are in flight under another key: recorded when that one ends, so
    # that the same scan is never paid for twice, even at once.
    in_flight: dict[str, str] = {}
    waiting: dict[str, list[Job]] = {}
    problems: list[str] = []

    async def inputs() -> AsyncIterator[Any]:
        index = 0
        try:
            for job, why in planned():
                if stop.signal is not None or stop.write_error is not None:
                    return
                if why is not None and not why.startswith("re-sent"):
                    continue
                try:
                    # Nothing more is sent (and paid for) once the output is gone.
                    log.check_in_place()
                except OSError as exc:
                    stop.write_error = exc
                    return
                if job.problem is not None:
                    # Found before sending (a pair with a side missing): recorded, never sent.
                    if not _write(_refused_record(job)):
                        return
                    outcomes["InvalidInputError"] += 1
                    refused[0] += 1
                    continue
                size = _size_on_disk(job)
                await held.take(size)
                value, sent = await _load(job, max_file_size, size)
                if sent is not None:
                    same = log.known_digest(sent.sha256)
                    if same is not None and same != job.key:
                        # These bytes were read already under another name: not paid again.
                        held.give(size)
                        if not _write(_same_as_record(job, sent, same, True, None)):
                            return
                        plan[_SHARED] += 1
                        continue
                    if sent.sha256 in in_flight:
                        held.give(size)
                        waiting.setdefault(sent.sha256, []).append(job)
                        plan[_SHARED] += 1
                        continue
                    in_flight[sent.sha256] = job.key
                holding[index] = size
                pending[index] = (job, sent)
                index += 1
                yield value
        except (ManifestError, OSError) as exc:
            # The inputs no longer read as they did in the first pass: no more are taken.
            problems.append(f"the inputs changed during the run: {exc}")

    def _write(record: dict[str, Any]) -> bool:
        if stop.write_error is not None:
            stop.unrecorded += bool(record.get("billed"))
            return False
        try:
            log.write(record)
        except OSError as exc:
            stop.write_error = exc
            stop.unrecorded += bool(record.get("billed"))
            return False
        return True

    display = ProgressDisplay(err, total=total + skipped, offset=skipped)
    outcomes: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    unsent = [0]  # inputs recorded without being sent, after a fatal error
    preparing: Counter[str] = Counter()  # what --prepare did, image by image
    refused = [0]  # inputs recorded as errors found before sending

    def take(result: BatchResult) -> None:
        job, sent = pending.pop(result.index)
        held.give(holding.pop(result.index, 0))
        if result.result is not None:
            for done in result.result.prepared:
                for what in ("converted", "rotated", "downscaled"):
                    preparing[what] += getattr(done, what)
                preparing["re-encoded"] += done.changed
        assessment = assess(result)
        record = result_record(
            job,
            result,
            assessment,
            None if sent is None else sent.sha256,
            None if sent is None else sent.size,
        )
        if thumbnails is not None:
            _keep_thumbnails(record, result, thumbnails, err)
        if _write(record):
            if job.group is not None and job.problem is None:
                for lone in lone_sides.pop(job.group, []):
                    _write(_withdrawn_record(lone, job.key))
            outcomes[outcome(result)] += 1
            if result.attempts == 0:
                if isinstance(result.error, DEFAULT_FATAL_ERRORS):
                    # A fatal error (quota, credentials) ends the inputs behind it unsent.
                    unsent[0] += 1
                else:
                    # Refused before sending (a bad file, one that cannot be prepared).
                    refused[0] += 1
            if assessment is not None:
                verdicts[assessment.verdict] += 1
        if sent is not None:
            in_flight.pop(sent.sha256, None)
            error = record["error"]
            for other in waiting.pop(sent.sha256, []):
                _write(_same_as_record(other, sent, job.key, result.ok, error))

    started = time.perf_counter()
    try:
        with anyio.CancelScope() as at_once:
            async with anyio.create_task_group() as watcher:
                if threading.current_thread() is threading.main_thread():
                    watcher.start_soon(_watch_signals, stop, at_once, err, args.stop_grace)
                async with (
                    client,
                    # The batch's own stream, not the client's view of it: what arrived before a
                    # forced stop is drained from it without waiting.
                    extract_as_completed(
                        client,
                        inputs(),
                        endpoint=args.endpoint,
                        concurrency=client.max_concurrency,
                        progress=display.update,
                        fatal_errors=DEFAULT_FATAL_ERRORS,
                        get_thumb=thumbnails is not None,
                    ) as results,
                ):
                    # After a failed write, no input is taken, and the answers in flight (they
                    # are billed) are still read and offered to the file, which may take them.
                    try:
                        async for result in results:
                            take(result)
                    finally:
                        # A forced stop: answers that arrived before it are still recorded.
                        with contextlib.suppress(
                            anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError
                        ):
                            while True:
                                take(results.receive_nowait())
                watcher.cancel_scope.cancel()
    finally:
        # What a forced stop cancelled is recorded as not done: --resume sends it again.
        for job, sent in pending.values():
            if _write(_interrupted_record(job, sent)):
                outcomes[INTERRUPTED] += 1
        pending.clear()
        display.finish()
        if log.recorded == 0:
            log.discard()  # nothing recorded: no empty output left behind
        else:
            log.close()
    wall = time.perf_counter() - started
    shared = plan[_SHARED]
    # Not started: left unsent by a stop, or recorded unsent after a fatal error.
    not_started = max(0, total - sum(outcomes.values()) - shared) + unsent[0]
    write_summary(
        report,
        Counter(outcomes),
        usage=client.usage,
        wall=wall,
        verdicts=verdicts,
        plan=plan,
        not_started=not_started,
        output=None if output is None or log.recorded == 0 else str(output),
        left_out=left_out.summary() if left_out else None,
        list_hint=not args.list_left_out,
        prepared=preparing if client.prepare is not None else None,
    )
    if args.list_left_out:
        for path, kind in left_out.paths:
            report.write(f"left out: {printable(path)} ({kind})\n")
        if len(left_out) > len(left_out.paths):
            report.write(f"left out: {len(left_out) - len(left_out.paths)} more not listed\n")

    def conclude() -> tuple[int, str | None]:
        """The exit status, and why the run stopped early (``None`` when it did not)."""
        resume = f"Resume with: {resume_command(args.argv)}"
        if stop.write_error is not None:
            lost = (
                f"; {stop.unrecorded} billed answers in flight could not be recorded"
                if stop.unrecorded
                else ""
            )
            if isinstance(stop.write_error, OutputGoneError):
                err.write(
                    f"cvekyc batch: stopped: {output} was deleted or replaced during the run, so "
                    f"nothing more is written to it{lost}. {resume}\n"
                )
                return EXIT_WRITE, "output gone"
            if output is None:
                # Records on standard output cannot be resumed: the way on is a file that can.
                closed = isinstance(stop.write_error, BrokenPipeError)
                err.write(
                    "cvekyc batch: stopped: "
                    + ("standard output was closed" if closed else "cannot write standard output")
                    + f" after {log.recorded} records{lost}. Standard output cannot be resumed; "
                    f"to go on, write to a file (and --resume it): {_to_file_command(args.argv)}\n"
                )
                return EXIT_WRITE, "cannot write standard output"
            err.write(
                f"cvekyc batch: stopped: cannot write {output}: "
                f"{stop.write_error.strerror or stop.write_error}{lost}; what is recorded is "
                f"intact. {resume}\n"
            )
            return EXIT_WRITE, "cannot write the output"
        for problem in problems:
            err.write(f"cvekyc batch: stopped: {problem}. {resume}\n")
        if problems:
            return EXIT_USAGE, "inputs changed"
        if stop.signal is not None or at_once.cancel_called:
            if output is not None:
                cut = (
                    f" ({stop.forced}: {outcomes[INTERRUPTED]} inputs in flight left for --resume)"
                    if stop.forced and outcomes[INTERRUPTED]
                    else ""
                )
                err.write(f"cvekyc batch: interrupted{cut}. {resume}\n")
            signum = stop.signal or signal.SIGINT
            return 128 + signum, f"signal: {signal.Signals(signum).name}"
        fatal = [
            name
            for name in (
                "QuotaExceededError",
                "AuthenticationError",
                "PermissionDeniedError",
                "NotFoundError",
            )
            if outcomes[name]
        ]
        if fatal and output is not None:
            err.write(
                f"cvekyc batch: stopped sending after {fatal[0]} (see the summary); fix the cause, "
                f"then {resume[0].lower()}{resume[1:]}\n"
            )
        failed = sum(outcomes.values()) > outcomes["ok"]
        return (EXIT_FAILED if failed else EXIT_OK), (f"fatal: {fatal[0]}" if fatal else None)

    status, stopped = conclude()
    if output is not None and log.recorded and stopped is None:
        _next_steps(report, output, verdicts)
    if summary_path is not None:
        figures = {
            "schema": 1,
            "run": run_id,
            "output": "-" if output is None else str(output),
            "shard": log.shard,
            "endpoint": args.endpoint,
            "started": started_at,
            "ended": utc_now(),
            "wall_seconds": round(wall, 3),
            "exit_status": status,
            "stopped": stopped,
            # inputs = sent + refused + shared + not_started + the skipped counts
            "inputs": total + skipped,
            "sent": sum(outcomes.values()) - unsent[0] - refused[0],
            "refused": refused[0],
            "shared": shared,
            "not_started": not_started,
            "recorded": log.recorded,
            "outcomes": dict(sorted(outcomes.items())),
            "ok": outcomes["ok"],
            "failed": sum(n for name, n in outcomes.items() if name != "ok"),
            "verdicts": {v: verdicts[v] for v in ("accept", "review", "reject")},
            "billed": client.usage.billed,
            "retries": client.usage.retries,
            "possibly_billed_twice": client.usage.ambiguous_retries,
            "skipped": {why: n for why, n in sorted(plan.items()) if why.startswith("skipped")},
            "resent": {why: n for why, n in sorted(plan.items()) if why.startswith("re-sent")},
            # Files of scanned folders that are no inputs (not counted in inputs).
            "left_out": {"files": len(left_out), "kinds": dict(left_out.kinds.most_common())},
            # Images --prepare changed, by what was done (one image may count in several).
            "prepared": None
            if client.prepare is None
            else {what: preparing[what] for what in _PREPARED},
            "resume_command": None if output is None else resume_command(args.argv),
        }
        if not _write_summary_json(summary_path, figures, out, err) and status < EXIT_USAGE:
            status = EXIT_WRITE
    return status


def _pair_rule_of(args: argparse.Namespace) -> PairRule | None:
    """How folders' files pair up (``--pairs``), checked before anything."""
    if args.pairs is None:
        return None
    if args.endpoint != "cards":
        raise UsageError("--pairs sends fronts and backs together: add --endpoint cards")
    try:
        return PairRule.parse(args.pairs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _summary_path_of(args: argparse.Namespace, output: Path | None) -> Path | str | None:
    """Where ``--summary-json`` goes (``"-"``: standard output), checked before anything."""
    given: str | None = args.summary_json
    if given is None:
        return None
    if given == "-":
        if output is None:
            raise UsageError(
                "--summary-json - needs standard output, which -o - already gives the records: "
                "write the records or the summary to a file"
            )
        return "-"
    path = Path(given)
    if given.endswith(("/", os.sep)) or path.is_dir():
        raise UsageError(f"--summary-json {given} names a folder: give the file to write")
    if output is not None and (
        path.resolve() == output.resolve() or _same_file_as_an_input(path, [str(output)])
    ):
        raise UsageError(f"--summary-json {given} is the output itself: give another file")
    if _same_file_as_an_input(path, args.paths) is not None:
        raise UsageError(f"--summary-json {given} is also an input: give another file")
    if path.exists() and not _is_summary(path):
        raise UsageError(
            f"--summary-json {given} holds something other than a batch summary: give "
            "another file (it is replaced only when it is one)"
        )
    try:
        # Found unwritable now, not after every answer has been paid for.
        make_folders(path.parent)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write --summary-json {given}: {exc.strerror or exc}") from None
    return path


def _is_summary(path: Path) -> bool:
    """Whether ``path`` holds a summary an earlier run wrote (one a new run may replace)."""
    try:
        with path.open("rb") as fh:
            figures = msgspec.json.decode(fh.read(1024 * 1024))
    except (OSError, msgspec.MsgspecError, RecursionError):
        return False
    return isinstance(figures, dict) and {"run", "outcomes", "exit_status"} <= figures.keys()


def _write_summary_json(
    where: Path | str, figures: dict[str, Any], out: TextIO, err: TextIO
) -> bool:
    """Write the run's figures as JSON; whether it could be written."""
    data = msgspec.json.format(msgspec.json.encode(figures), indent=2) + b"\n"
    try:
        if where == "-":
            out.write(data.decode())
            out.flush()
        else:
            path = Path(where)
            make_folders(path.parent)
            write_replacing(path, [data])
    except OSError as exc:
        err.write(f"cvekyc batch: cannot write --summary-json {where}: {exc.strerror or exc}\n")
        return False
    return True


def _keep_thumbnails(
    record: dict[str, Any], result: BatchResult, folder: Path, err: TextIO
) -> None:
    """Save the card crops of an answer in ``folder`` and keep their paths in the record, in
    place of the images themselves (``None`` for a card without one, or one that could not be
    saved).

    Each file is named by the SHA-256 of its bytes (never by the input's name, which may name
    a person), so a name always stands for the same image: two runs sharing a folder cannot put
    one person's card under another's record, and a reader can check it. It is written whole
    beside its place (mode 0600) and renamed into it."""
    if result.result is None or not isinstance(record.get("result"), dict):
        return
    saved: list[str | None] = []
    for card, shown_card in zip(result.result.cards, record["result"]["cards"], strict=False):
        info = shown_card.get("info")
        if isinstance(info, dict):
            info.pop("image", None)
        path = None
        try:
            data = card.info.image_bytes()
            if data:
                target = folder / f"{hashlib.sha256(data).hexdigest()}.jpg"
                if not _holds(target, data):
                    write_replacing(target, [data])
                path = str(target.absolute())
        except (ValueError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            err.write(f"cvekyc batch: a thumbnail was not saved: {reason}\n")
        saved.append(path)
    record["thumbnails"] = saved


def _holds(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file holding exactly ``data``."""
    try:
        info = path.lstat()
        return (
            stat.S_ISREG(info.st_mode) and info.st_size == len(data) and (path.read_bytes() == data)
        )
    except OSError:
        return False


def _folder_holding(folder: Path, sources: Sequence[str]) -> str | None:
    """The input folder that ``folder`` is, or lies in, if any."""
    mine = folder.absolute().resolve()
    for source in sources:
        if "://" in source:
            continue
        with contextlib.suppress(OSError, ValueError):
            theirs = Path(source).expanduser().absolute().resolve()
            if theirs.is_dir() and (mine == theirs or theirs in mine.parents):
                return source
    return None


def _next_steps(report: TextIO, output: Path, verdicts: Counter[str]) -> None:
    """The commands that turn the records into something people act on."""
    name = shlex.quote(str(output))
    # Beside the output, under its name less a records suffix (never the output itself).
    stem = output.stem if output.suffix.lower() in (".jsonl", ".json", ".ndjson") else output.name

    def beside(suffix: str) -> str:
        return shlex.quote(str(output.with_name(stem + suffix)))

    steps = []
    if verdicts["review"]:
        steps.append(f"cvekyc export {name} --verdict review -o {beside('-review.csv')}")
    steps.append(f"cvekyc export {name} -o {beside('.xlsx')}")
    steps.append(f"cvekyc report {name} -o {beside('.html')}")
    report.write("next:\n" + "".join(f"  {step}\n" for step in steps))
