"""What ``cvekyc batch`` writes: one JSONL record per input, under one writer at a time, and how
``--resume`` and ``cvekyc merge`` read it back.

Each record carries the input's canonical key (see ``_jobs``) and the SHA-256 and size of the
bytes sent. The latest record of a key is the one that counts. On resume, inputs whose latest
record is ok are skipped, and so are failures that cannot change (bad input, no document, an
unreadable image) unless asked; every other failure is sent again. A skip holds only while the
input still has the bytes recorded: a changed one is sent again. An input whose bytes were
already read under another key is not sent (nor paid for) again.

The output is created readable by its owner only (it holds personal data), opened without
following a symlink, and locked (``flock``) for the whole run, so a second writer is refused.
Each line goes out in one ``write`` on an ``O_APPEND`` descriptor: a process killed at any moment
leaves at most one partial last line, which the next run cuts off.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from .._batch import BatchResult
from .._errors import APIError, APIStatusError, CVError
from ..checks import Assessment
from .jobs import Job, ManifestError, record_input
from .records import SCHEMA_VERSION, NotRecordsError, Results, complete_end, key_of

__all__ = [
    "FINAL_ERRORS",
    "INTERRUPTED",
    "LockedError",
    "MergeReport",
    "NotRegularError",
    "OutputGoneError",
    "ResultLog",
    "cli_words",
    "create_private",
    "error_record",
    "holds_records",
    "make_folders",
    "make_private",
    "merge",
    "named_among",
    "read_records",
    "replacing",
    "replacing_output",
    "result_record",
    "thumb_folder",
    "utc_now",
    "write_replacing",
]

#: Failures skipped on resume unless ``--retry-failed``: those that sending again cannot change
#: (bad input, no document, an unreadable image), and answers that arrived but could not be read
#: (the service may have billed them: sending again may pay twice).
FINAL_ERRORS = frozenset(
    {
        "InvalidInputError",
        "NoDocumentError",
        "InvalidImageError",
        "MalformedResponseError",
        "ResponseTooLargeError",
    }
)


#: The error type of an input whose call a forced stop cancelled: sent again on resume.
INTERRUPTED = "Interrupted"


class LockedError(Exception):
    """Another process is writing the output."""


class NotRegularError(OSError):
    """The path names something other than a regular file (a folder, a device, a FIFO)."""


class OutputGoneError(OSError):
    """The output's path no longer names the file the run opened: it was deleted, renamed or
    replaced during the run, so what is written would be lost."""


def utc_now() -> str:
    """The time now, UTC, as ISO 8601 to the millisecond (``2026-12-06T09:30:00.123Z``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each mode 0700."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):
            made.mkdir(mode=0o700)


def thumb_folder(folder: Path) -> None:
    """Make a folder for card images (mode 0700), or raise why it cannot be one."""
    make_folders(folder)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))


def create_private(path: Path, *, truncate: bool = False, append: bool = True) -> int:
    """Open ``path`` for writing: created mode 0600 (missing folders 0700), never through a
    symlink, never a FIFO, a device or a folder. An existing file keeps its mode: callers make
    it private (``make_private``) once they have decided to write. Returns the descriptor.

    Raises:
        NotRegularError: the path is not a regular file.
        OSError: it cannot be opened (``ELOOP`` for a symlink).
    """
    make_folders(path.parent)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if append:
        flags |= os.O_APPEND
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularError(errno.ELOOP, "a symlink (not followed)", str(path)) from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            raise NotRegularError(exc.errno, "not a regular file", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularError(errno.EINVAL, "not a regular file", str(path))
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private(fd: int) -> None:
    """Readable and writable by the owner only."""
    os.fchmod(fd, 0o600)


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock on the first byte
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            raise LockedError(str(path)) from None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError(str(path)) from None


# Library phrases that name Python options, in the words of the command line.
_CLI_WORDS = {
    "raise it with max_file_size=..., or turn on prepare to downscale images": (
        "raise it with --max-file-size, or add --prepare to downscale images"
    ),
    "or raise max_file_size if": "or raise --max-file-size if",
    "turn on prepare (prepare=True on the client or the call; cvekyc --prepare)": "add --prepare",
    "and turn on prepare (prepare=True; cvekyc --prepare)": "and add --prepare",
    "raise it with Prepare(max_input_size=...), or resize the file": "resize the file",
    "(Prepare(max_pixels=...))": "(send a smaller image)",
    "does not fit under max_file_size=": "does not fit under --max-file-size ",
    "AsyncCVClient(max_response_size=...)": "--max-response-size",
    "pass them to AsyncCVClient(...) or set": "give --api-key and --api-secret-file, or set",
    "max_per_second": "--max-per-second",
    "max_retries": "--max-retries",
    "total_timeout=": "--total-timeout=",
    "max_concurrency": "--concurrency",
    "use ocr_card() or extract_card()": "use --endpoint card or --endpoint ocr",
}


def cli_words(message: str) -> str:
    """A library message as the command line says it (flags, not Python options)."""
    for phrase, flag in _CLI_WORDS.items():
        message = message.replace(phrase, flag)
    return message


def error_record(error: CVError) -> dict[str, Any]:
    """An error as records show it: its class, message (in command-line words), codes."""
    record: dict[str, Any] = {"type": type(error).__name__, "message": cli_words(error.message)}
    if isinstance(error, APIError):
        record["error_code"] = error.error_code
    if isinstance(error, (APIError, APIStatusError)):
        record["status_code"] = error.status_code
    return record


def result_record(
    job: Job,
    result: BatchResult,
    assessment: Assessment | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """The JSONL record of one finished input, with the trust checks' verdict when it was read,
    and the SHA-256 and size of the bytes sent (``None`` for a URL)."""
    answer = None if result.result is None else result.result.to_dict()
    prepared = None if answer is None else answer.pop("prepared", None)
    record = {
        "key": job.key,
        "input": record_input(job.value),
        "sha256": sha256,
        "size": size,
        "ok": result.ok,
        "result": answer,
        "error": None if result.error is None else error_record(result.error),
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "billed": result.billed,
        "assessment": assessment,
        "request_id": _request_id(result),
        "service_request_id": _service_request_id(result),
    }
    if prepared:
        # What --prepare did to each image; sha256 and size stay those of the input as given.
        assert result.result is not None
        for entry, done in zip(prepared, result.result.prepared, strict=True):
            entry["done"] = done.describe()
        record["prepared"] = prepared
    return record


def _own_error(result: BatchResult) -> CVError | None:
    """The error of this input's own call: not the one that stopped the batch before this input
    was sent (it carries another call's ids)."""
    error = result.error
    if error is None or (result.attempts == 0 and error.attempts > 0):
        return None
    return error


def _request_id(result: BatchResult) -> str | None:
    """The call's id (sent as ``X-Request-ID``)."""
    if result.result is not None:
        return result.result.request_id
    error = _own_error(result)
    return None if error is None else error.request_id


def _service_request_id(result: BatchResult) -> str | None:
    """The service's own id of the request, when its answer carried one."""
    if result.result is not None:
        return result.result.service_request_id
    error = _own_error(result)
    return None if error is None else error.service_request_id


class _Head(msgspec.Struct):
    """What resuming reads of a record: never its result."""

    key: Any = None
    input: Any = None
    sha256: Any = None
    size: Any = None
    ok: Any = None
    error: Any = None
    attempts: Any = 0
    withdrawn: Any = None


_HEAD = msgspec.json.Decoder(_Head)


@dataclass(frozen=True, slots=True)
class _Latest:
    """What the latest record of a key says: whether it is done, whether to send it again and
    why, and the SHA-256 and size of the bytes it was made of (to tell a changed input)."""

    ok: bool
    resend: bool
    reason: str
    sha256: str | None = None
    size: int | None = None
    prepare_helps: bool = False  # refused with a message that says --prepare sends it


def _judge(head: _Head, retry_failed: bool) -> _Latest:
    sha256 = head.sha256 if isinstance(head.sha256, str) else None
    size = head.size if isinstance(head.size, int) and not isinstance(head.size, bool) else None
    if head.ok is True:
        return _Latest(True, False, "ok", sha256, size)
    error = head.error if isinstance(head.error, dict) else {}
    named = error.get("type")
    kind = named if isinstance(named, str) else "unknown"
    if head.attempts == 0 and kind not in FINAL_ERRORS:
        return _Latest(False, True, "never sent")
    if kind in FINAL_ERRORS and not retry_failed:
        message = error.get("message")
        helps = kind == "InvalidInputError" and isinstance(message, str) and "--prepare" in message
        return _Latest(False, False, kind, sha256, size, helps)
    return _Latest(False, True, kind)


def read_records(path: Path) -> Iterator[bytes]:
    """The complete lines of a JSONL output (a cut last line is left out)."""
    with path.open("rb") as fh:
        end = complete_end(fh)
        fh.seek(0)
        read = 0
        for line in fh:
            read += len(line)
            if read > end:
                break
            yield line


def _heads(path: Path) -> Iterator[tuple[str, _Head, bytes]]:
    """(key, head, line) of each readable record of an output, in order."""
    for line in read_records(path):
        try:
            head = _HEAD.decode(line)
        except (msgspec.MsgspecError, RecursionError):
            continue
        key = key_of(head)
        if key is not None:
            yield key, head, line


def _is_record(line: bytes) -> bool:
    try:
        head = _HEAD.decode(line)
    except (msgspec.MsgspecError, RecursionError):
        return False
    return key_of(head) is not None and isinstance(head.ok, bool)


def holds_records(fd: int) -> bool:
    """Whether the file's first line is one of our records (a manifest, a photo or any other
    file given as ``-o`` by mistake is never appended to, nor cut)."""
    return _is_record(os.pread(fd, 65536, 0).split(b"\n", 1)[0])


class ResultLog:
    """The JSONL output of a batch (``None`` for standard output), one line per finished input.

    Every record written is stamped with the record format's version (``schema``), the time
    it was written (``written``, UTC), the run's id (``run``) and the shard (``shard``).

    Args:
        path: the output file, or ``None`` to write to standard output (no lock, no resume).
        retry_failed: on resume, send again the failures that cannot change too.
        run: the id of this run (each invocation of the command is one).
        shard: the shard this run reads (``"K/N"``), if any.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        retry_failed: bool = False,
        run: str | None = None,
        shard: str | None = None,
    ) -> None:
        self.path = path
        self.retry_failed = retry_failed
        self.run = run
        self.shard = shard
        self._fd = -1
        self._encoder = msgspec.json.Encoder()
        self._latest: dict[str, _Latest] = {}
        self._ok_digests: dict[str, str] = {}
        self._created = False
        self.recorded = 0

    def open(self, *, resume: bool, overwrite: bool) -> bool:
        """Create or open the output, lock it, and read what it holds when resuming.

        Returns:
            Whether a last line cut short (by a kill during a write) was dropped: its input is
            sent again.

        Raises:
            LockedError: another process holds the output.
            ManifestError: the output holds something and neither resume nor overwrite was
                asked, or it holds something other than this command's records.
            OSError: the output cannot be opened (a symlink, a folder, no permission...).
        """
        if self.path is None:
            if resume:
                raise ManifestError("--resume needs an output file, not -o -")
            self._fd = sys.stdout.fileno()
            return False
        self._created = not os.path.lexists(self.path)
        fd = create_private(self.path)
        torn = False
        try:
            _lock(fd, self.path)
            size = os.fstat(fd).st_size
            if size and not holds_records(fd):
                raise ManifestError(
                    f"{self.path} holds something other than cvekyc batch records: "
                    "write to another file"
                )
            if size and not (resume or overwrite):
                raise ManifestError(
                    f"{self.path} already holds results: add --resume to continue it, or "
                    "--overwrite to start again"
                )
            make_private(fd)
            if overwrite and not resume:
                os.ftruncate(fd, 0)
            elif size:
                torn = self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return torn

    def _load(self, fd: int) -> bool:
        assert self.path is not None
        torn = False
        with os.fdopen(os.dup(fd), "r+b") as fh:
            end = complete_end(fh)
            size = fh.seek(0, os.SEEK_END)
            if end < size:
                fh.seek(end)
                if _is_record(fh.read()):
                    # A whole record whose newline is missing (written by another tool): kept.
                    fh.write(b"\n")
                else:  # a line cut short by a kill: its input goes again
                    fh.truncate(end)
                    torn = True
        # Streamed line by line, reading only each record's head: an output of millions of
        # results is resumed without holding it in memory.
        for key, head, _ in _heads(self.path):
            if isinstance(head.withdrawn, str):
                self._latest.pop(key, None)  # no input any more (see batch)
                continue
            latest = _judge(head, self.retry_failed)
            self._latest[key] = latest
            if latest.ok and isinstance(head.sha256, str):
                self._ok_digests.setdefault(head.sha256, key)
        return torn

    def decide(self, job: Job) -> _Latest | None:
        """What the output says of ``job``: ``None`` when it holds nothing of it."""
        return self._latest.get(job.key)

    def lone_sides(self) -> list[str]:
        """The keys of lone-side records (``folder/name\t``) the output held when resumed."""
        return [k for k in self._latest if k.endswith("\t") and k.count("\t") == 1]

    def known_digest(self, digest: str | None) -> str | None:
        """The key already read with these bytes, if any."""
        return None if digest is None else self._ok_digests.get(digest)

    def check_in_place(self) -> None:
        """Check that the output's path still names the file this run opened and locked.

        Raises:
            OutputGoneError: it was deleted, renamed away or replaced.
        """
        if self.path is None:
            return
        mine = os.fstat(self._fd)
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
            raise OutputGoneError(
                errno.ENOENT, "it was deleted or replaced during the run", str(self.path)
            )

    def write(self, line: dict[str, Any]) -> None:
        """Append one record, once the output is checked to be where it was.

        Raises:
            OutputGoneError: the output was deleted or replaced during the run.
            OSError: the write failed (disk full, file too large...).
        """
        self.check_in_place()
        stamped = {
            "schema": SCHEMA_VERSION,
            **line,
            "written": utc_now(),
            "run": self.run,
            "shard": self.shard,
        }
        data = self._encoder.encode(stamped) + b"\n"
        view = memoryview(data)
        start = os.fstat(self._fd).st_size if self.path is not None else 0
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            if self.path is not None and len(view) < len(data):
                # Part of the line went out: take it back, so the file ends on a whole line.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
            raise
        self.recorded += 1
        key, digest, size = line.get("key"), line.get("sha256"), line.get("size")
        if line.get("ok") and isinstance(key, str):
            self._latest[key] = _Latest(
                True,
                False,
                "ok",
                digest if isinstance(digest, str) else None,
                size if isinstance(size, int) else None,
            )
            if isinstance(digest, str):
                self._ok_digests.setdefault(digest, key)

    def close(self) -> None:
        if self._fd >= 0 and self.path is not None:
            os.close(self._fd)
        self._fd = -1

    def discard(self) -> None:
        """Close, and remove the output if this run created it and wrote nothing (the batch
        stopped before it began): no empty file is left behind."""
        created = self._created and self.recorded == 0 and self.path is not None
        if created:
            try:
                self.check_in_place()  # never remove a file that took its place
            except OSError:
                created = False
        self.close()
        if created and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


@dataclass
class MergeReport:
    """What ``merge`` did: keys written, how many of them ok, and inputs still missing."""

    written: int
    ok: int
    missing: list[str]


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def named_among(mine: os.stat_result, names: Iterable[str | Path]) -> str | None:
    """The first of ``names`` that names the file ``mine`` describes (by any path: a link, a
    relative spelling), if any; names that cannot be reached are passed over."""
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            if _same_file(Path(name).expanduser().stat(), mine):
                return str(name)
    return None


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file beside ``path`` (mode 0600) for the block to write; when the block ends, it is
    flushed to the disk and renamed over ``path`` in one step: a kill or a full disk at any
    moment leaves ``path`` as it was (and no half-written file in its place).

    Raises:
        OSError: the new file could not be written; it is removed, ``path`` is untouched (so is
            it when the block raises).
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    # The rename itself is on the disk only once the folder is.
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def write_replacing(path: Path, lines: Iterable[bytes]) -> None:
    """Write ``lines`` to a new file beside ``path`` and rename it over ``path`` (see
    ``replacing``).

    Raises:
        OSError: the new file could not be written; it is removed, ``path`` is untouched.
    """
    with replacing(path) as fh:
        for line in lines:
            fh.write(line)


def _remove_stale_copies(output: Path) -> None:
    """Remove new copies of ``output`` that a killed command left beside it (``replacing``'s
    temporary files, and scratch folders named the same way, hold card data). Called with
    ``output`` locked, so none is being written."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for stale in output.parent.glob(f".{glob.escape(output.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            info = stale.lstat()
            if uid is not None and info.st_uid != uid:
                continue
            if stat.S_ISREG(info.st_mode):
                stale.unlink()
            elif stat.S_ISDIR(info.st_mode):
                shutil.rmtree(stale)


@contextlib.contextmanager
def replacing_output(output: Path, check: Callable[[int], None]) -> Iterator[BinaryIO]:
    """Replace a command's output file with what the block writes (see ``replacing``).

    The output is opened first (created mode 0600 when missing, missing folders 0700; never a
    symlink, a folder or a device) and locked, so that a batch or another command writing it is
    refused; ``check`` is given its descriptor to refuse what it holds; copies of it that a
    killed command left are removed. When the block raises, an output this call created is
    removed again: a failed command leaves nothing behind.

    Raises:
        LockedError: another process holds the output.
        NotRegularError: the output is not a regular file (a symlink is not followed).
        OSError: the output cannot be opened, or the new file written (the old output is
            intact).
    """
    created = not os.path.lexists(output)
    fd = create_private(output, append=False)
    try:
        _lock(fd, output)
        check(fd)
        _remove_stale_copies(output)
        with replacing(output) as fh:
            yield fh
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == 0 and _same_file(os.fstat(fd), os.stat(output)):
                    output.unlink()
        raise
    finally:
        os.close(fd)


def merge(
    parts: Iterable[Path], output: Path, expected: Iterable[Job] | None = None
) -> MergeReport:
    """Combine batch outputs by key (see ``records.Results``): within one part the latest
    record counts; across parts an ok record wins over a failure, and the later part among
    equals. The parts are streamed (only an index of keys is held). With ``expected`` (the
    batch's inputs), the keys that none of the parts holds are reported missing.

    The output is written whole beside its place and renamed into it, so the file it replaces
    is intact until the new one is complete; an output that is one of the parts is refused.

    Raises:
        ManifestError: the output is one of the parts, or holds something other than records.
        LockedError: another process holds the output.
        OSError: a part or the output cannot be read or written (the old output is intact).
    """
    parts = list(parts)
    with contextlib.suppress(FileNotFoundError):
        part = named_among(os.stat(output), parts)
        if part is not None:
            raise ManifestError(f"-o {output} is also a part ({part}): merge into another file")
    try:
        results = Results(parts)
    except NotRecordsError as exc:
        raise ManifestError(f"{exc}: give the JSONL outputs of cvekyc batch") from None

    def check(fd: int) -> None:
        if os.fstat(fd).st_size and not holds_records(fd):
            raise ManifestError(
                f"{output} holds something other than cvekyc batch records: merge into another file"
            )

    # The output is never a symlink, a device, or a file that is not batch records, and a batch
    # writing it is refused.
    with replacing_output(output, check) as fh:
        for line in results.lines():
            fh.write(line)
    keys = results.keys()
    missing = [] if expected is None else [j.key for j in expected if j.key not in keys]
    return MergeReport(written=len(results), ok=results.ok, missing=missing)
