"""The ``cvekyc`` command: extract one card, run a batch, serve the emulator, run the demo.

Exit status: 0 when everything was read, 1 when some input failed, 2 for a usage error (bad
arguments, unreadable manifest, missing credentials, an output another batch is writing), 3 when
the output could not be written, 128 + the signal's number when stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import anyio
import msgspec

from ._adaptive import AdaptiveConcurrency
from ._batch import DEFAULT_FATAL_ERRORS, BatchResult, extract_as_completed
from ._client import AsyncCVClient
from ._constants import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_FILE_SIZE, ENV_API_KEY, ENV_API_SECRET
from ._errors import ConfigurationError, CVError, InvalidInputError
from ._joblog import (
    INTERRUPTED,
    LockedError,
    NotRegularError,
    OutputGoneError,
    ResultLog,
    cli_words,
    error_record,
    make_folders,
    merge,
    result_record,
)
from ._jobs import (
    Fingerprint,
    Job,
    ManifestError,
    Shard,
    carries_secrets,
    discover,
    key_hash,
    load,
    record_input,
    safe_url,
    shown,
    still_as_sent,
    url_secret,
)
from ._models import Card, ExtractionResult
from ._progress import ProgressDisplay, format_duration
from ._runner import run as run_loop
from ._usage import Usage
from .checks import Assessment

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WRITE = 0, 1, 2, 3

#: Seconds one input may take, every attempt and wait included: an answer that trickles in a
#: byte at a time never trips the read timeout (it bounds each read), but it trips this.
DEFAULT_TOTAL_TIMEOUT = 300.0
#: Free space the output's disk must have for a batch to start: a full disk found only at the
#: first write would have paid for the answers in flight.
DEFAULT_MIN_FREE_SPACE = 64 * 1024**2
#: Seconds the first Ctrl-C (or SIGTERM) waits for the answers in flight before it cancels them.
DEFAULT_STOP_GRACE = 10.0


class UsageError(Exception):
    """Bad arguments: reported on stderr with exit status 2."""


# -- shared options ------------------------------------------------------------------------------


def _add_client_options(p: argparse.ArgumentParser, *, batch: bool) -> None:
    g = p.add_argument_group("service")
    g.add_argument("--base-url", help="service root (default: $CVEKYC_BASE_URL or the vendor's)")
    g.add_argument("--api-key", help=f"API key (default: ${ENV_API_KEY})")
    g.add_argument(
        "--api-secret-file",
        type=Path,
        help=f"file holding the API secret (default: ${ENV_API_SECRET})",
    )
    g.add_argument(
        "--api-secret", help="the API secret itself: visible to other users, prefer the above"
    )
    g.add_argument(
        "--timeout", type=_seconds, help="read timeout in seconds, for each read (default 60)"
    )
    g.add_argument(
        "--total-timeout",
        type=_seconds,
        default=DEFAULT_TOTAL_TIMEOUT,
        metavar="SECONDS",
        help="most time one input may take, every retry included "
        f"(default {DEFAULT_TOTAL_TIMEOUT:g})",
    )
    g.add_argument("--max-retries", type=int, help="retries of transient failures (default 2)")
    g.add_argument(
        "--max-file-size", type=_size, metavar="SIZE", help="largest upload, e.g. 20M (default 10M)"
    )
    g.add_argument(
        "--max-response-size",
        type=_size,
        metavar="SIZE",
        help="largest answer read, e.g. 64M (default 32M)",
    )
    if batch:
        g.add_argument(
            "--concurrency",
            type=_concurrency,
            default=DEFAULT_MAX_CONCURRENCY,
            metavar="N|auto",
            help=f"requests in flight (default {DEFAULT_MAX_CONCURRENCY}); auto (or auto:N, "
            "at most N, default 64) finds the level the service takes",
        )
        g.add_argument("--max-per-second", type=_seconds, help="most requests started per second")
        g.add_argument(
            "--stop-grace",
            type=_seconds,
            default=DEFAULT_STOP_GRACE,
            metavar="SECONDS",
            help="after the first Ctrl-C, how long the answers in flight may take before they "
            f"are cancelled and left for --resume (default {DEFAULT_STOP_GRACE:g})",
        )


def _client(args: argparse.Namespace, err: TextIO) -> AsyncCVClient:
    secret = None
    if args.api_secret_file is not None:
        try:
            secret = args.api_secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --api-secret-file: {exc.strerror}") from None
    elif args.api_secret is not None:
        err.write(
            "cvekyc: warning: a secret on the command line can be seen by other users and "
            f"lands in shell history; use ${ENV_API_SECRET} or --api-secret-file\n"
        )
        secret = args.api_secret
    kwargs: dict[str, Any] = {
        "base_url": args.base_url,
        "max_retries": args.max_retries,
        "total_timeout": args.total_timeout,
    }
    if args.timeout is not None:
        kwargs["timeout"] = _timeout(args.timeout)
    if getattr(args, "concurrency", None) is not None:
        kwargs["max_concurrency"] = args.concurrency
    if getattr(args, "max_per_second", None) is not None:
        kwargs["max_per_second"] = args.max_per_second
    for option in ("max_file_size", "max_response_size"):
        if getattr(args, option, None) is not None:
            kwargs[option] = getattr(args, option)
    try:
        return AsyncCVClient(args.api_key, secret, **kwargs)
    except ConfigurationError as exc:
        raise UsageError(cli_words(exc.message)) from None


def _size(text: str) -> int:
    """A size in bytes, with an optional K, M or G (binary) suffix."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    try:
        amount = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 20M)") from None
    if not math.isfinite(amount) or amount * factor > 2**40:
        raise argparse.ArgumentTypeError(f"not a size this command takes: {text!r} (at most 1T)")
    value = int(amount * factor)
    if value < 1:
        raise argparse.ArgumentTypeError("a size must be positive")
    return value


def _concurrency(text: str) -> int | AdaptiveConcurrency:
    """``N`` requests in flight, or ``auto`` (``auto:N``: at most N) to let the client find
    the level the service takes."""
    word, colon, ceiling = text.strip().lower().partition(":")
    if word == "auto":
        if not colon:
            return AdaptiveConcurrency()
        if not (ceiling.isascii() and ceiling.isdigit()) or not 1 <= int(ceiling) <= 10_000:
            raise argparse.ArgumentTypeError(
                f"auto:N takes a ceiling from 1 to 10000, not {ceiling!r}"
            )
        top = int(ceiling)
        return AdaptiveConcurrency(initial=min(4, top), ceiling=top)
    if colon or not (word.isascii() and word.isdigit()) or not 1 <= int(word) <= 10_000:
        raise argparse.ArgumentTypeError(
            f"must be a number of requests from 1 to 10000, or auto, not {text.strip()!r}"
        )
    return int(word)


def _seconds(text: str) -> float:
    """A positive, finite number (seconds, or requests per second)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _timeout(read: float) -> Any:
    import httpx

    if read <= 0:
        raise UsageError("--timeout must be positive")
    return httpx.Timeout(connect=5.0, read=read, write=30.0, pool=10.0)


# -- extract -------------------------------------------------------------------------------------

_HIDDEN = ("_confidence", "_box", "_code")


def _file_part(text: str, allowed: str = r"[^A-Za-z0-9_.-]") -> str:
    """``text`` fit for a file name: other characters become ``_``, at most 64 of them."""
    return re.sub(allowed, "_", text)[:64].lstrip(".") or "input"


def _card_table(card: Card) -> list[str]:
    status = {True: "valid", False: f"flagged: {card.invalid_message}", None: ""}[card.valid]
    lines = [f"{card.type}  {status}".rstrip()]
    fields = card.info.to_dict()
    shown = [k for k in fields if k != "image" and not k.endswith(_HIDDEN)]
    width = max((len(k) for k in shown), default=0)
    for key in shown:
        confidence = fields.get(f"{key}_confidence")
        suffix = f"  ({confidence:.2f})" if isinstance(confidence, (int, float)) else ""
        lines.append(f"  {key:<{width}}  {fields[key]}{suffix}")
    return lines


def _without_images(result: ExtractionResult) -> dict[str, Any]:
    data = result.to_dict()
    for card in data["cards"]:
        card["info"].pop("image", None)
    return data


def _thumb_folder(folder: Path) -> None:
    """Make the thumbnails' folder (mode 0700), or raise why it cannot be one."""
    make_folders(folder)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))


async def _extract(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    endpoint = args.endpoint or ("cards" if args.back else "card")
    if args.back and endpoint != "cards":
        raise UsageError("a BACK image goes with --endpoint cards")
    if endpoint == "cards" and not args.back:
        raise UsageError("--endpoint cards needs both IMAGE and BACK")
    thumb_dir: Path | None = args.thumb
    if thumb_dir is not None:
        # Card images are personal data: folders of the owner's only. Made (or refused) before
        # the call is paid for.
        try:
            await anyio.to_thread.run_sync(_thumb_folder, thumb_dir)
        except OSError as exc:
            raise UsageError(f"cannot use --thumb {thumb_dir}: {exc.strerror or exc}") from None
    async with _client(args, err) as client:
        try:
            if endpoint == "cards":
                result = await client.extract_cards(
                    args.image, args.back, get_thumb=bool(thumb_dir)
                )
            elif endpoint == "ocr":
                result = await client.ocr_card(args.image, get_thumb=bool(thumb_dir))
            else:
                result = await client.extract_card(args.image, get_thumb=bool(thumb_dir))
        except InvalidInputError as exc:
            raise UsageError(cli_words(str(exc))) from None
        except CVError as exc:
            if args.json:
                out.write(msgspec.json.encode({"error": error_record(exc)}).decode() + "\n")
            err.write(f"cvekyc: {cli_words(str(exc))}\n")
            return EXIT_FAILED
    saved = []
    if thumb_dir is not None:
        stem = "image" if "://" in args.image else _file_part(Path(args.image).stem)
        for n, card in enumerate(result.cards, 1):
            # The service names the type: it never steers the path, and only a documented
            # type names the file (any other text could carry a name or a number).
            kind = card.type if card.type in _DOCUMENTED_TYPES else "card"
            try:
                if card.info.image_bytes():
                    saved.append(str(card.info.save_image(thumb_dir / f"{stem}-{n}-{kind}.jpg")))
            except (ValueError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                err.write(f"cvekyc: thumbnail of card {n} not saved: {reason}\n")
    assessment = result.assess()
    if args.json:
        data = _without_images(result)
        data["thumbnails"] = saved
        data["assessment"] = msgspec.to_builtins(assessment)
        out.write(msgspec.json.encode(data).decode() + "\n")
    else:
        for card in result.cards:
            out.write("\n".join(_card_table(card)) + "\n")
        for path in saved:
            out.write(f"thumbnail saved: {path}\n")
        out.write(f"verdict: {assessment.verdict}\n")
        for finding in assessment.findings:
            out.write(f"  {finding.severity}: {finding.message} [{finding.code}]\n")
    return EXIT_OK


# -- batch ---------------------------------------------------------------------------------------


def _summary(
    out: TextIO,
    results: Counter[str],
    *,
    usage: Usage,
    wall: float,
    verdicts: Counter[str],
    plan: Counter[str] | None = None,
) -> None:
    ok = results.pop("ok", 0)
    failed = sum(results.values())
    done = ok + failed
    rows = [("inputs", f"{done}"), ("ok", f"{ok}"), ("failed", f"{failed}")]
    rows += [(f"  {name}", f"{n}") for name, n in results.most_common()]
    rows += [
        ("billed", f"{usage.billed}"),
        ("retries", f"{usage.retries} ({usage.ambiguous_retries} possibly billed twice)"),
        ("wall time", f"{_wall(wall)} ({done / wall if wall > 0 else 0:.0f}/s)"),
    ]
    shown = ", ".join(f"{v} {verdicts[v]}" for v in ("accept", "review", "reject"))
    rows.append(("verdicts", shown))
    for reason, n in sorted((plan or Counter()).items()):
        rows.append((reason, f"{n}"))
    width = max(len(k) for k, _ in rows)
    out.write("batch summary\n")
    for key, value in rows:
        out.write(f"  {key:<{width}}  {value}\n")


# The card types the API documents (API notes, "type" values).
_DOCUMENTED_TYPES = frozenset(
    {
        "9_id_card_front",
        "9_id_card_back",
        "12_id_card_front",
        "12_id_card_back",
        "chip_id_card_front",
        "chip_id_card_back",
        "chip_id_card_2024_front",
        "chip_id_card_2024_back",
        "passport",
        "driving_license",
        "vehicle_registration_front",
        "vehicle_registration_back",
    }
)


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


def _resume_command(argv: Sequence[str]) -> str:
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
    return _resume_command(words).removesuffix(" --resume")


def _same_file_as_an_input(output: Path, sources: Sequence[str]) -> str | None:
    """The argument that names the output's own file (a manifest, an image), if any."""
    try:
        mine = output.stat()
    except OSError:
        return None
    for source in sources:
        with contextlib.suppress(OSError, ValueError):
            theirs = Path(source).expanduser().stat()
            if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
                return source
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


async def _load(job: Job, max_file_size: int) -> tuple[Any, Fingerprint | None]:
    """``load`` the input, in a worker thread when it is large: hashing 10 MB takes about 20 ms,
    a stall for every call in flight. The batch pulls one input at a time, so one load runs at
    once, and what is loaded is held only while its call is in flight (bounded by the
    concurrency)."""
    values = job.value if isinstance(job.value, tuple) else (job.value,)
    size = 0
    for value in values:
        if isinstance(value, str) and "://" not in value:
            with contextlib.suppress(OSError, ValueError):
                size += os.stat(value).st_size
    if size <= _INLINE_LOAD:
        return load(job, max_file_size)
    return await anyio.to_thread.run_sync(load, job, max_file_size)


def _url_hmac_key(args: argparse.Namespace) -> bytes | None:
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


#: Why an input recorded as done is sent again: its bytes are not those recorded.
_CHANGED = "re-sent: changed since it was recorded"


class _InputsChanged(Exception):
    """The inputs read differently the second time (a manifest changed during the run)."""


async def _batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    pairs = args.endpoint == "cards"
    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    output = _output_of(args)
    report = err if output is None else out  # with -o -, stdout carries the records
    client = _client(args, err)
    max_file_size = args.max_file_size or DEFAULT_MAX_FILE_SIZE
    url_hmac_key = _url_hmac_key(args)
    log = ResultLog(output, retry_failed=args.retry_failed)
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

    def planned(check: bool = False) -> Iterator[tuple[Job, str | None]]:
        """Each input once, with what to do: ``None`` to send it, else why it is skipped.
        With ``check``, a recorded input is compared with its bytes (size, then SHA-256)."""
        seen: dict[int, str] = {}
        for job in discover(
            args.paths,
            pairs=pairs,
            url_hmac_key=url_hmac_key,
            allow_outside=args.allow_outside,
        ):
            if shard is not None and job.key not in shard:
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
                value, sent = await _load(job, max_file_size)
                if sent is not None:
                    same = log.known_digest(sent.sha256)
                    if same is not None and same != job.key:
                        # These bytes were read already under another name: not paid again.
                        if not _write(_same_as_record(job, sent, same, True, None)):
                            return
                        plan["not sent: same bytes as another input, already read"] += 1
                        continue
                    if sent.sha256 in in_flight:
                        waiting.setdefault(sent.sha256, []).append(job)
                        plan["not sent: same bytes as another input, already read"] += 1
                        continue
                    in_flight[sent.sha256] = job.key
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

    def take(result: BatchResult) -> None:
        job, sent = pending.pop(result.index)
        assessment = _assess(result)
        record = result_record(
            job,
            result,
            assessment,
            None if sent is None else sent.sha256,
            None if sent is None else sent.size,
        )
        if _write(record):
            outcomes[_outcome(result)] += 1
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
    _summary(
        report,
        outcomes,
        usage=client.usage,
        wall=time.perf_counter() - started,
        verdicts=verdicts,
        plan=plan,
    )
    resume = f"Resume with: {_resume_command(args.argv)}"
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
            return EXIT_WRITE
        if output is None:
            # Records on standard output cannot be resumed: the way on is a file that can.
            closed = isinstance(stop.write_error, BrokenPipeError)
            err.write(
                "cvekyc batch: stopped: "
                + ("standard output was closed" if closed else "cannot write standard output")
                + f" after {log.recorded} records{lost}. Standard output cannot be resumed; "
                f"to go on, write to a file (and --resume it): {_to_file_command(args.argv)}\n"
            )
            return EXIT_WRITE
        err.write(
            f"cvekyc batch: stopped: cannot write {output}: "
            f"{stop.write_error.strerror or stop.write_error}{lost}; what is recorded is intact."
            f" {resume}\n"
        )
        return EXIT_WRITE
    for problem in problems:
        err.write(f"cvekyc batch: stopped: {problem}. {resume}\n")
    if problems:
        return EXIT_USAGE
    if stop.signal is not None or at_once.cancel_called:
        if output is not None:
            cut = (
                f" ({stop.forced}: {outcomes[INTERRUPTED]} inputs in flight left for --resume)"
                if stop.forced and outcomes[INTERRUPTED]
                else ""
            )
            err.write(f"cvekyc batch: interrupted{cut}. {resume}\n")
        return 128 + (stop.signal or signal.SIGINT)
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
    return EXIT_FAILED if sum(outcomes.values()) > outcomes["ok"] else EXIT_OK


def _assess(result: BatchResult) -> Assessment | None:
    return result.result.assess() if result.result is not None else None


def _wall(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 60 else format_duration(seconds)


def _outcome(result: BatchResult) -> str:
    return "ok" if result.error is None else type(result.error).__name__


# -- merge ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the block as Ctrl-C does, so that what it was writing is cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    expected = None
    if args.inputs:
        expected = list(
            discover(
                args.inputs,
                pairs=args.endpoint == "cards",
                url_hmac_key=_url_hmac_key(args),
                allow_outside=args.allow_outside,
            )
        )
    parts = [Path(p) for p in args.parts]
    for part in parts:
        if not part.exists():
            raise UsageError(f"{part}: no such file")
        if not part.is_file():
            raise UsageError(f"{part}: not a regular file (give the JSONL outputs of batches)")
    try:
        with _terminate_as_interrupt():
            report = merge(parts, Path(args.output), expected)
    except LockedError:
        raise UsageError(f"{args.output} is being written by another cvekyc command") from None
    except NotRegularError as exc:
        raise UsageError(f"cannot merge into {args.output}: {exc.strerror or exc}") from None
    except OSError as exc:
        name = exc.filename if isinstance(exc.filename, str) else args.output
        if name in {str(part) for part in parts}:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        err.write(
            f"cvekyc merge: cannot write {args.output}: {exc.strerror or exc}; "
            "it is left as it was\n"
        )
        return EXIT_WRITE
    out.write(f"merged {report.written} inputs ({report.ok} ok) into {args.output}\n")
    if report.missing:
        out.write(f"missing {len(report.missing)} inputs:\n")
        for key in report.missing:
            out.write(f"  {shown(key)}\n")
        return EXIT_FAILED
    return EXIT_OK


# -- demo ----------------------------------------------------------------------------------------

_SHOWN_FIELDS = ("id", "name", "sur_name", "given_name", "dob", "issue_date", "due_date")


def _describe(result: ExtractionResult) -> str:
    parts = []
    for card in result.cards:
        fields = [str(card.info.get(f)) for f in _SHOWN_FIELDS if card.info.get(f)]
        flag = "" if card.valid is not False else f" [flagged: {card.invalid_message}]"
        parts.append(f"{card.type}: {', '.join(fields[:4])}{flag}")
    return "; ".join(parts)


async def run_demo(out: TextIO, err: TextIO, *, concurrency: int = 8) -> int:
    """Start the emulator in process and read every bundled specimen through a batch."""
    from .emulator import run_emulator, specimens

    paths = sorted(specimens().values())
    done: list[BatchResult] = []
    async with run_emulator() as emu, emu.client(max_concurrency=concurrency) as client:
        out.write(f"emulator at {emu.base_url}; reading {len(paths)} specimens\n")
        out.flush()
        display = ProgressDisplay(err, total=len(paths), interval=0.5)
        started = time.perf_counter()
        # The OCR endpoint reads every document in an image or PDF, single cards included.
        async with client.extract_as_completed(
            paths, endpoint="ocr", progress=display.update
        ) as results:
            async for result in results:
                done.append(result)
        display.finish()
        wall = time.perf_counter() - started
        usage = client.usage
    width = max(len(p.name) for p in paths)
    verdicts: Counter[str] = Counter()
    for result in sorted(done, key=lambda r: r.index):
        name = Path(result.input).name
        if result.result is None:
            message = result.error.message if result.error else "?"
            out.write(f"  {name:<{width}}  error: {message}\n")
        else:
            verdict = result.result.assess().verdict
            verdicts[verdict] += 1
            out.write(f"  {name:<{width}}  {_describe(result.result)} -> {verdict}\n")
    outcomes = Counter(_outcome(r) for r in done)
    _summary(out, outcomes, usage=usage, wall=wall, verdicts=verdicts)
    return EXIT_OK


# -- parser and entry point ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvekyc",
        description="Read Vietnamese ID cards and passports with the Computer Vision eKYC API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser("extract", help="read one card (or both sides of one) and print it")
    ex.add_argument("image", help="image or PDF path, or an http(s) URL")
    ex.add_argument("back", nargs="?", help="the back side (implies --endpoint cards)")
    ex.add_argument("--endpoint", choices=["card", "cards", "ocr"], help="default: card")
    ex.add_argument("--thumb", type=Path, metavar="DIR", help="save cropped card images here")
    ex.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_client_options(ex, batch=False)

    b = sub.add_parser(
        "batch",
        help="read many inputs, writing one JSONL line per input",
        description="Read files, directories (recursively, images and PDFs by content), URLs "
        "or manifests (.csv / .jsonl of paths or URLs; front/back columns for --endpoint "
        "cards). Each result is appended to OUTPUT as it ends; --resume continues a batch that "
        "was stopped, without sending what is already recorded.",
    )
    b.add_argument("paths", nargs="+", metavar="PATH", help="files, directories, URLs, manifests")
    b.add_argument(
        "-o", "--output", required=True, help="JSONL file of results (mode 0600), or - for stdout"
    )
    b.add_argument("--endpoint", choices=["card", "cards", "ocr"], default="card")
    b.add_argument(
        "--resume",
        action="store_true",
        help="continue OUTPUT: skip what is read, send again what failed and could succeed now",
    )
    b.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume, also send again failures that cannot change (bad input, errors 1, 3)",
    )
    b.add_argument("--overwrite", action="store_true", help="start OUTPUT again")
    b.add_argument(
        "--allow-outside",
        action="store_true",
        help="let manifests name files outside their own folder (../, absolute paths, ~)",
    )
    b.add_argument(
        "--min-free-space",
        type=_size,
        default=DEFAULT_MIN_FREE_SPACE,
        metavar="SIZE",
        help="refuse to start when OUTPUT's disk has less free space (default 64M)",
    )
    b.add_argument(
        "--shard",
        metavar="K/N",
        help="only the K-th of N stable parts (1 <= K <= N), or auto from a Kubernetes Indexed "
        "Job, a Slurm array or an AWS Batch array",
    )
    _add_client_options(b, batch=True)

    m = sub.add_parser(
        "merge",
        help="combine batch outputs (shards, reruns) into one, an ok record per input",
        description="Combine batch outputs by input key: an ok record wins over a failure, "
        "the latest among equals. With --inputs, list the inputs no part holds.",
    )
    m.add_argument("parts", nargs="+", metavar="PART", help="JSONL outputs of cvekyc batch")
    m.add_argument("-o", "--output", required=True, help="the combined JSONL (mode 0600)")
    m.add_argument(
        "--inputs",
        nargs="+",
        metavar="PATH",
        help="the batch's inputs (files, directories, URLs, manifests), to list what is missing",
    )
    m.add_argument("--endpoint", choices=["card", "cards", "ocr"], default="card")
    m.add_argument(
        "--allow-outside",
        action="store_true",
        help="let manifests given to --inputs name files outside their own folder",
    )

    demo = sub.add_parser(
        "demo", help="read the bundled specimens through a local emulator (no account needed)"
    )
    demo.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")

    sub.add_parser("emulator", help="serve the local API emulator", add_help=False).add_argument(
        "args", nargs=argparse.REMAINDER
    )
    return parser


def _is_open(stream: TextIO | None) -> bool:
    """Whether ``stream`` has an open descriptor (Python sets ``sys.stdout`` to ``None`` when
    the command starts with it closed)."""
    try:
        os.fstat(stream.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _needs_emulator() -> None:
    try:
        import PIL  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(
            "this command needs the emulator: pip install 'cvekyc-async[cli]'"
        ) from None


class _BestEffort:
    """Standard error as the command writes to it: messages and progress are best effort.
    A stream that cannot be written (closed by its reader, a full disk, closed at start) is
    given up on, and the run goes on: the records are what matters, not the progress line."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._give_up()
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._give_up()

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _give_up(self) -> None:
        stream, self._stream = self._stream, None
        # Python flushes the stream again at exit: what it holds goes nowhere instead.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())  # type: ignore[union-attr]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _fill_closed_descriptors() -> None:
    """Put /dev/null where standard input or error is closed: a socket the event loop opens
    would otherwise take that number, and uvloop aborts on it."""
    for fd in (0, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cvekyc`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _fill_closed_descriptors()
    out, err = sys.stdout, cast(TextIO, _BestEffort(sys.stderr))
    if argv[:1] == ["emulator"]:
        # Its options belong to the emulator's own parser.
        try:
            _needs_emulator()
        except UsageError as exc:
            err.write(f"cvekyc emulator: {exc}\n")
            return EXIT_USAGE
        from .emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:], prog="cvekyc emulator")
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command == "merge":
            return _merge(args, out, err)
        if args.command == "demo":
            _needs_emulator()
            if args.concurrency < 1:
                raise UsageError("--concurrency must be at least 1")
            return run_loop(functools.partial(run_demo, out, err, concurrency=args.concurrency))
        command = _extract if args.command == "extract" else _batch
        if args.command == "batch" and args.output == "-" and not _is_open(out):
            err.write("cvekyc batch: -o - but standard output is closed; nothing was sent\n")
            return EXIT_WRITE
        return run_loop(command, args, out, err)
    except BrokenPipeError:
        # Standard output was closed under a write outside the batch's own records (a reader
        # such as `head` went away): end quietly, and keep Python from failing to flush it.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        err.write(f"cvekyc {args.command}: stopped: standard output was closed\n")
        return EXIT_WRITE
    except (UsageError, ManifestError) as exc:
        err.write(f"cvekyc {args.command}: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("cvekyc: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
