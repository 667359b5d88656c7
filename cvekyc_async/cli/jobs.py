"""What ``cvekyc batch`` reads: inputs from paths, directories, URLs and manifests, their keys,
and shards.

Every input has a canonical key that names it in the output, in the shard split, on resume and in
``cvekyc merge``, and that does not depend on the current directory, on how a manifest was named
or on where a folder is mounted:

- a file listed in a manifest: its path relative to the manifest's folder (``imgs/a.jpg``); an
  entry that leaves the folder (``..``, an absolute path, ``~``) is refused unless allowed;
- a file found in a directory argument: the directory's own name, then the path inside it
  (``scans/2024/a.jpg``), so two machines that mount ``scans`` in different places agree;
- a file named on the command line: its file name;
- a URL: the URL; one with credentials, a query or a fragment (a signed URL's token): the URL
  without them and an HMAC-SHA256 of the whole URL, keyed by a hash of the API key;
- a pair (``--endpoint cards``): ``front<TAB>back``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import itertools
import os
import posixpath
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from .._inputs import ImageSource, describe_input, photo_format, sniff_format
from .._redact import describe_head

__all__ = [
    "DELIMITERS",
    "SINGLE_COLUMNS",
    "Fingerprint",
    "Job",
    "LeftOut",
    "ManifestError",
    "PairRule",
    "Shard",
    "card_group",
    "carries_secrets",
    "discover",
    "fingerprint",
    "key_hash",
    "load",
    "printable",
    "record_input",
    "safe_url",
    "shown",
    "still_as_sent",
    "url_key",
    "url_secret",
]

_MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson", ".xlsx"}
#: Column names a manifest may name its input by (``front`` and ``back`` for pairs).
SINGLE_COLUMNS = ("path", "url", "image", "img", "input", "file")
_IMAGE_FORMATS = {"jpeg", "png", "pdf", "webp", "bmp", "tiff"}
# HEIC and AVIF photos are inputs too: sent when --prepare converts them, else recorded as an
# error that says so (never silently left out).
_IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".pdf", ".webp", ".bmp", ".tif", ".tiff",
    ".heic", ".heif", ".hif", ".avif",
}  # fmt: skip
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# A scheme without "//" (mailto:, javascript:, file:/x, http:/x); one letter is a drive (C:).
_BARE_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")
_SHARD_RE = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,8})", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]{1,9}", re.ASCII)
_JSON_LINE = msgspec.json.Decoder()


class ManifestError(ValueError):
    """A path or manifest cannot be read as inputs (a usage error: exit status 2)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One input of a batch: its canonical key, and the value sent (a path or URL, or a pair)."""

    key: str
    value: Any
    #: Why it cannot be sent, found before anything is (a pair with a side missing): it is
    #: recorded as an ``InvalidInputError`` without a request.
    problem: str | None = None
    #: The card a scanned folder's front and back files belong to (``--pairs``), shared by the
    #: pair and by a side found alone: they fall in one shard, and a pair, once sent, withdraws
    #: the records of its card's lone sides (see ``card_group``).
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` (from 1) of ``count`` equal parts of a batch, split by key hash."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> Shard:
        """Read ``K/N``, or ``auto``: from a Kubernetes Indexed Job (``JOB_COMPLETION_INDEX``
        with ``CVEKYC_SHARD_COUNT`` or ``JOB_COMPLETIONS``), a Slurm array
        (``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``, from ``SLURM_ARRAY_TASK_MIN``)
        or an AWS Batch array job (``AWS_BATCH_JOB_ARRAY_INDEX`` with ``CVEKYC_SHARD_COUNT``).

        Raises:
            ValueError: the text is not ``K/N`` with 1 <= K <= N, or ``auto`` finds no scheduler.
        """
        if text == "auto":
            return cls._auto(os.environ if environ is None else environ)
        m = _SHARD_RE.fullmatch(text)
        if m is None:
            raise ValueError(f"--shard takes K/N, such as 1/4, or auto, not {text!r}")
        shard = cls(int(m.group(1)), int(m.group(2)))
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"--shard {text}: K must be from 1 to N")
        return shard

    @classmethod
    def _auto(cls, env: Mapping[str, str]) -> Shard:
        count = env.get("CVEKYC_SHARD_COUNT")
        if "JOB_COMPLETION_INDEX" in env:  # Kubernetes Indexed Job: the index is from 0
            index = _env_number(env, "JOB_COMPLETION_INDEX")
            total = count or env.get("JOB_COMPLETIONS")
        elif "SLURM_ARRAY_TASK_ID" in env:
            # --array=MIN-MAX[:STEP]: part (ID - MIN) / STEP. A list (--array=1,5,9) has no such
            # rule: it is refused, since parts would be skipped.
            task = _env_number(env, "SLURM_ARRAY_TASK_ID")
            first = _env_number(env, "SLURM_ARRAY_TASK_MIN", 0)
            step = _env_number(env, "SLURM_ARRAY_TASK_STEP", 1)
            total = count or env.get("SLURM_ARRAY_TASK_COUNT")
            if step < 1 or (task - first) % step:
                raise ValueError(
                    "--shard auto: this Slurm array is not MIN-MAX[:STEP]; give --shard K/N"
                )
            if "SLURM_ARRAY_TASK_MAX" in env and total and _NUMBER_RE.fullmatch(total):
                last = _env_number(env, "SLURM_ARRAY_TASK_MAX")
                if (last - first) // step + 1 != int(total):
                    raise ValueError(
                        "--shard auto: this Slurm array is a list, not MIN-MAX[:STEP] "
                        "(its count does not match its range); give --shard K/N"
                    )
            index = (task - first) // step
        elif "AWS_BATCH_JOB_ARRAY_INDEX" in env:  # from 0
            index = _env_number(env, "AWS_BATCH_JOB_ARRAY_INDEX")
            total = count
        else:
            raise ValueError(
                "--shard auto found no array job: it reads JOB_COMPLETION_INDEX (Kubernetes), "
                "SLURM_ARRAY_TASK_ID (Slurm) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch)"
            )
        if not total:
            raise ValueError(
                "--shard auto needs the number of parts: set CVEKYC_SHARD_COUNT "
                "(or JOB_COMPLETIONS / SLURM_ARRAY_TASK_COUNT)"
            )
        if not _NUMBER_RE.fullmatch(total) or int(total) < 1:
            raise ValueError(f"--shard auto: the number of parts must be a number, not {total!r}")
        shard = cls(index + 1, int(total))
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"--shard auto: part {shard.index} is outside {total} parts")
        return shard

    def __contains__(self, key: str) -> bool:
        return key_hash(key) % self.count == self.index - 1


def _env_number(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    if default is not None and name not in env:
        return default
    value = env[name].strip()
    if not _NUMBER_RE.fullmatch(value):
        raise ValueError(f"--shard auto: {name} must be a number, not {value!r}")
    return int(value)


def key_hash(key: str) -> int:
    """A stable 64-bit hash of an input key (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def shown(text: str) -> str:
    """An input or key as messages show it: a URL without its query (signed URLs carry
    credentials there), anything else as it is."""
    return describe_input(text) if "://" in text else text


def printable(text: str) -> str:
    """A file name as a terminal may show it: control and direction characters escaped (a
    name may hold an escape sequence, or a line break that forges a line of output)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _check_url(text: str, where: str) -> bool:
    """Whether ``text`` is a URL; one of a scheme the service does not download is refused."""
    m = _SCHEME_RE.match(text)
    where = shown(where)
    if m is None:
        bare = _BARE_SCHEME_RE.match(text)
        if bare is not None and not os.path.lexists(text):
            raise ManifestError(
                f"{where}: {bare.group(1)}: inputs are not supported: give a file, or an "
                "http(s):// URL the service can download"
            )
        return False
    if m.group(1).lower() not in ("http", "https"):
        raise ManifestError(
            f"{where}: {m.group(1)}:// URLs are not supported: the service downloads http(s) only"
        )
    return True


def _posix(text: str) -> str:
    return posixpath.normpath(text.replace(os.sep, "/"))


@dataclass(frozen=True, slots=True)
class _Reading:
    """How inputs are read: as pairs or not, the key URLs with secrets are named by, and
    whether a manifest may name files outside its folder."""

    pairs: bool
    url_key: bytes | None
    allow_outside: bool
    delimiter: str | None = None  # a CSV manifest's, or None to find it


def _manifest_entry(text: str, base: Path, where: str, how: _Reading) -> tuple[str, str]:
    """(key, value) of a manifest entry: a URL, or a path relative to the manifest's folder
    (one that leaves it, by ``..``, an absolute path or ``~``, only with ``allow_outside``)."""
    _check_text(text, where)
    if _check_url(text, where):
        return url_key(text, how.url_key, where), text
    path = Path(text).expanduser()
    inside = _inside(base, text)
    if not inside and not how.allow_outside:
        raise ManifestError(
            f"{where}: {text!r} is outside the manifest's folder ({base}); entries are paths "
            "inside it, unless --allow-outside is given"
        )
    if not path.is_absolute():
        return _posix(text), str(base / path)
    try:
        return path.resolve().relative_to(base.resolve()).as_posix(), str(path)
    except ValueError:
        return _posix(str(path)), str(path)  # outside the manifest's folder: as written


def _inside(base: Path, text: str) -> bool:
    """Whether a manifest entry names a path inside the manifest's folder, by its text alone
    (links in the folder are the owner's, not the manifest's, to choose)."""
    if text.startswith("~"):
        return False
    folder = os.path.abspath(base)
    target = os.path.normpath(os.path.join(folder, text))
    return os.path.commonpath([folder, target]) == folder


def _has_secrets(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    return bool(
        parts.username or parts.password or parts.query or parts.fragment or ";" in parts.path
    )


_PATH_PARAMS = re.compile(r";[^/]*")


def safe_url(url: str) -> str:
    """A URL as records and messages may show it: scheme, host, port and path, without
    credentials, path parameters (``;jsessionid=``), query or fragment (signed URLs and
    sessions carry their tokens there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<a URL that cannot be read>"
    if ":" in host:
        host = f"[{host}]"
    path = _PATH_PARAMS.sub("", parts.path)
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{path}"


def url_key(url: str, secret: bytes | None, where: str = "") -> str:
    """The key of a URL input: the URL itself, or, when it carries credentials, a query or a
    fragment, the URL without them and an HMAC-SHA256 of the whole URL under ``secret``: the
    same URL has the same key on every run and machine of one account, and the key shows no
    token.

    Raises:
        ManifestError: such a URL without a ``secret`` to name it by.
    """
    if not _has_secrets(url):
        return url
    if secret is None:
        raise ManifestError(
            f"{where or safe_url(url)}: a URL with credentials or a query is named by a keyed "
            "hash of it under the API key: set CVEKYC_API_KEY"
        )
    mac = hmac.new(secret, url.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"{safe_url(url)}#hmac={mac.hexdigest()[:32]}"


def url_secret(api_key: str) -> bytes:
    """The HMAC key URL inputs are named by: a hash of the account's API key (not its
    secret), so every machine and run of one account names a URL alike."""
    return hashlib.sha256(b"cvekyc url key\x00" + api_key.encode("utf-8")).digest()


def record_input(value: Any) -> Any:
    """An input's value as a record shows it: a pair as a list, URLs without credentials,
    query or fragment."""
    values = [
        safe_url(v) if isinstance(v, str) and carries_secrets(v) else v
        for v in (value if isinstance(value, tuple) else (value,))
    ]
    return values if isinstance(value, tuple) else values[0]


def carries_secrets(text: str) -> bool:
    """Whether ``text`` is a URL with credentials, a query or a fragment."""
    return _SCHEME_RE.match(text) is not None and _has_secrets(text)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ManifestError(f"{where}: a NUL character in the entry")


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _sniffs_as_image(path: Path) -> bool:
    # Regular files only, opened without blocking: a FIFO or a device is never read.
    if not _is_regular(path):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        head = os.read(fd, 64)
        return sniff_format(head) in _IMAGE_FORMATS or photo_format(head) is not None
    except OSError:
        return False
    finally:
        os.close(fd)


#: Files an operating system leaves in folders: left out as such, never read.
_SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
#: Folders of thumbnails, trash and metadata that systems and NAS boxes keep beside photos
#: (their JPEGs are copies: sending them pays for each card again); hidden folders too.
_SYSTEM_FOLDERS = frozenset(
    {"@eadir", "__macosx", "$recycle.bin", "#recycle", "system volume information", "#snapshot"}
)

#: Paths of left-out files kept for ``--list-left-out`` (the counts go on past it).
LEFT_OUT_LISTED = 10_000


class LeftOut:
    """The files a scanned folder holds that are not inputs, counted by kind, so that every
    file is accounted for."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.paths: list[tuple[str, str]] = []

    def add(self, path: Path, kind: str) -> None:
        self.kinds[kind] += 1
        if len(self.paths) < LEFT_OUT_LISTED:
            self.paths.append((str(path), kind))

    def __len__(self) -> int:
        return sum(self.kinds.values())

    def summary(self) -> str:
        """``N files (kind: n, ...)``, the commonest kind first."""
        kinds = ", ".join(f"{kind}: {n}" for kind, n in self.kinds.most_common())
        return f"{len(self)} file{'s' if len(self) != 1 else ''} ({kinds})"


def _is_system_file(path: Path) -> bool:
    # ``._IMG_0001.JPG`` is macOS's AppleDouble record of IMG_0001.JPG, not a photo.
    name = path.name.lower()
    return name in _SYSTEM_FILES or name.startswith("._")


def _kind_of(path: Path) -> str:
    """What a file that is not an input is, in a few words, from its name and first bytes
    (never quoted: the file may hold anything)."""
    if _is_system_file(path):
        return "system file"
    suffix = path.suffix.lower()
    if suffix in _MANIFEST_SUFFIXES or suffix == ".txt":
        return "list or manifest"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    try:
        head = os.read(fd, 16)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    finally:
        os.close(fd)
    if not head:
        return "empty file"
    kind = describe_head(head)
    return kind.removeprefix("a ").removeprefix("an ")


def _walk(root: Path, left_out: LeftOut | None = None) -> Iterator[tuple[str, Path]]:
    """Every regular file under ``root`` that is an image by name or by content. One with an
    image's name is an input even when it cannot be read (it then ends as an error record, not
    silently left out); a folder that cannot be listed stops the batch before it starts. The
    other files are counted in ``left_out``."""
    name = root.resolve().name or "root"

    def refuse(error: OSError) -> None:
        raise ManifestError(
            f"{error.filename}: cannot list this folder ({error.strerror or error})"
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=refuse):
        dirnames.sort()
        for folder in list(dirnames):
            path = Path(dirpath) / folder
            if path.is_symlink():
                # Not followed (a link can lead outside the folder, or round in a loop).
                if left_out is not None:
                    left_out.add(path, "linked folder, not followed")
            elif folder.startswith(".") or folder.lower() in _SYSTEM_FOLDERS:
                if left_out is not None:
                    for inner, _, files in os.walk(path):
                        for file in files:
                            left_out.add(Path(inner) / file, "in a system or hidden folder")
            else:
                continue
            dirnames.remove(folder)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            suffix = path.suffix.lower()
            if not _is_regular(path):
                if left_out is not None:
                    left_out.add(path, "not a regular file")
                continue
            if (
                suffix not in _MANIFEST_SUFFIXES
                and suffix != ".txt"
                and not _is_system_file(path)
                and (suffix in _IMAGE_SUFFIXES or _sniffs_as_image(path))
            ):
                yield f"{name}/{path.relative_to(root).as_posix()}", path
            elif left_out is not None:
                left_out.add(path, _kind_of(path))


#: What the side at the end of a file name is called (folded: lower case, no diacritics).
_SIDES = {
    "front": "front", "truoc": "front", "mat truoc": "front", "mt": "front", "1": "front",
    "back": "back", "sau": "back", "mat sau": "back", "ms": "back", "2": "back",
}  # fmt: skip
_AUTO_PAIR = re.compile(
    r"(?P<key>.*?)[ .\-]*\b(?P<side>mat truoc|mat sau|front|back|truoc|sau|mt|ms|1|2)"
)


@dataclass(frozen=True, slots=True)
class PairRule:
    """How files in a folder pair up as the front and back of one card.

    ``auto`` reads the side at the end of the file's name (before its suffix), in any case and
    with or without diacritics: ``_front``/``_back``, ``_truoc``/``_sau``, ``_mat_truoc``/
    ``_mat_sau``, ``_mt``/``_ms``, ``_1``/``_2``. Otherwise a regular expression with the named
    groups ``key`` and ``side`` is matched against the whole name without its suffix; the side
    is one of those words."""

    pattern: re.Pattern[str]
    auto: bool

    @classmethod
    def parse(cls, text: str) -> PairRule:
        """``auto``, or a regular expression with the groups ``key`` and ``side``.

        Raises:
            ValueError: the expression does not compile or lacks a group.
        """
        if text == "auto":
            return cls(_AUTO_PAIR, True)
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ValueError(f"--pairs {text!r} is not a regular expression ({exc})") from None
        missing = {"key", "side"} - set(pattern.groupindex)
        if missing:
            raise ValueError(
                f"--pairs {text!r} needs the named groups (?P<key>...) and (?P<side>...)"
            )
        return cls(pattern, False)

    def side_of(self, path: Path) -> tuple[str, str] | None:
        """(the card's key, ``front`` or ``back``) a file's name says, or ``None``.

        The side word is read in any case, with or without diacritics; the card's key only
        in any case: "Lê Thị Hà" and "Lê Thị Hạ" are two people.
        """
        stem = unicodedata.normalize(
            "NFC", path.name[: -len(path.suffix)] if path.suffix else path.name
        )
        found = self.pattern.fullmatch(_fold(stem) if self.auto else stem)
        if found is None:
            return None
        side = _SIDES.get(_fold(found.group("side") or ""))
        key = found.group("key") or ""
        if self.auto:
            key = _unfolded_prefix(stem, key)
        key = " ".join(key.replace("_", " ").casefold().split())
        return None if side is None or not key else (key, side)


def _unfolded_prefix(text: str, folded: str) -> str:
    """The shortest start of ``text`` that folds (``_fold``) to ``folded``: the card's key as
    its name writes it, diacritics and all."""
    if not folded:
        return ""  # the name is only a side word: no card key in it
    for end in range(1, len(text) + 1):
        if _fold(text[:end]) == folded:
            return text[:end]
    return text


def card_group(key: str, card: str) -> str:
    """The group of a side whose key (``folder/name``) and card key are given: its folder
    and card, computed alike from a file found now and from a key an output holds."""
    return f"{posixpath.dirname(key)}/\t{card}"


def _paired(root: Path, rule: PairRule, left_out: LeftOut | None) -> Iterator[Job]:
    """The front and back pairs of a scanned folder: files paired by the card's key their
    names say, within one folder. A side whose other is missing, or a side given twice, is a
    job with a problem (recorded as an error, never sent as a single); a file whose name says
    no side is left out."""
    groups: dict[tuple[str, str], dict[str, list[tuple[str, Path]]]] = {}
    for key, path in _walk(root, left_out):
        found = rule.side_of(path)
        if found is None:
            if left_out is not None:
                left_out.add(path, "no front or back in its name")
            continue
        card, side = found
        group = card_group(key, card)
        sides = groups.setdefault((str(path.parent), group), {"front": [], "back": []})
        sides[side].append((key, path))
    for (_, group), sides in groups.items():
        fronts, backs = sides["front"], sides["back"]
        if len(fronts) == 1 and len(backs) == 1:
            (fk, fp), (bk, bp) = fronts[0], backs[0]
            yield Job(f"{fk}\t{bk}", (str(fp), str(bp)), group=group)
            continue
        for side, files in (("front", fronts), ("back", backs)):
            other = "back" if side == "front" else "front"
            others = backs if side == "front" else fronts
            for key, path in files:
                if len(files) > 1:
                    problem = (
                        f"{len(files)} files are the {side} of one card "
                        f"({', '.join(p.name for _, p in files)}): keep one"
                    )
                elif others:
                    problem = (
                        f"its {other} is given by {len(others)} files "
                        f"({', '.join(p.name for _, p in others)}): keep one"
                    )
                else:
                    words = (
                        "_back, _sau, _ms or _2" if other == "back" else "_front, _truoc, _mt or _1"
                    )
                    named = f" (a name ending in {words})" if rule.auto else ""
                    problem = f"the {other} side is missing: no file in its folder names it{named}"
                yield Job(f"{key}\t", (str(path),), problem, group)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """A manifest's lines, decoded as UTF-8 (a BOM allowed), numbered from 1; lines may end in
    LF, CRLF or CR."""
    try:
        with path.open("rb") as fh:
            n = 0
            for raw in fh:
                for piece in raw.rstrip(b"\r\n").split(b"\r") if b"\r" in raw else [raw]:
                    n += 1
                    try:
                        text = piece.decode("utf-8-sig" if n == 1 else "utf-8")
                    except UnicodeDecodeError:
                        raise ManifestError(
                            f"{path}:{n}: not UTF-8 text (save the manifest as UTF-8)"
                        ) from None
                    yield n, text
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _row_job(row: Mapping[str, Any], how: _Reading, base: Path, where: str) -> Job:
    pairs = how.pairs
    lowered = {
        _column_of(str(k)) or str(k).strip().lower(): v for k, v in row.items() if k is not None
    }
    if pairs:
        front, back = lowered.get("front"), lowered.get("back")
        if not isinstance(front, str) or not isinstance(back, str) or not front or not back:
            raise ManifestError(f"{where}: --endpoint cards needs 'front' and 'back' columns")
        fk, fv = _manifest_entry(front.strip(), base, where, how)
        bk, bv = _manifest_entry(back.strip(), base, where, how)
        return Job(f"{fk}\t{bk}", (fv, bv))
    for column in SINGLE_COLUMNS:
        value = lowered.get(column)
        if isinstance(value, str) and value.strip():
            key, sent = _manifest_entry(value.strip(), base, where, how)
            return Job(key, sent)
    raise ManifestError(f"{where}: no path or url ({', '.join(SINGLE_COLUMNS)})")


def _looks_like_input(cell: str, base: Path) -> bool:
    cell = cell.strip()
    if _SCHEME_RE.match(cell):
        return True
    path = Path(cell).expanduser()
    return path.suffix.lower() in _IMAGE_SUFFIXES or (base / path).is_file()


#: Headers a manifest may name its columns by in Vietnamese, folded (see ``_fold``).
_HEADER_WORDS = {"duong dan": "path", "mat truoc": "front", "mat sau": "back"}
#: Delimiters a CSV manifest may use: Excel writes ``;`` where the decimal mark is ``,``
#: (Vietnamese settings among them), and tab where a sheet is exported or pasted as TSV.
DELIMITERS = (",", ";", "\t")


def _fold(text: str) -> str:
    """A header as compared: lower case, without diacritics, blanks and ``_`` as one space."""
    text = text.replace("Đ", "D").replace("đ", "d")
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return " ".join(bare.replace("_", " ").lower().split())


def _column_of(header: str) -> str | None:
    """The column a header names, if it names one this command reads."""
    folded = _fold(header)
    if folded in SINGLE_COLUMNS or folded in ("front", "back"):
        return folded
    return _HEADER_WORDS.get(folded)


def _sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV manifest, from its first lines: the one under which the first
    row names a known column, else the one that splits the first rows alike into the most
    cells, else ``,``."""
    lines = sample.splitlines()[:20]
    best, best_cells = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows:
            continue
        if any(_column_of(c) for c in rows[0]):
            return delimiter
        cells = len(rows[0])
        if cells > best_cells and all(len(r) == cells for r in rows[1:5]):
            best, best_cells = delimiter, cells
    return best


def _first_undecodable_line(path: Path) -> int:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                return n
    return 1


def _csv_rows(path: Path, delimiter: str | None) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each row of a CSV manifest, read by the ``csv`` module over the
    whole file: a quoted cell may hold line breaks, and the file may start with a BOM."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            if delimiter is None:
                delimiter = _sniff_delimiter(fh.read(65536))
                fh.seek(0)
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            while True:
                start = reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise ManifestError(f"{path}:{start}: not a CSV row ({exc})") from None
                yield start, cells
    except UnicodeDecodeError:
        line = _first_undecodable_line(path)
        raise ManifestError(f"{path}:{line}: not UTF-8 text (save the manifest as UTF-8)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text) of an ``.xlsx`` manifest's active sheet (the one Excel
    opens on), streamed.

    A formula is read by the value the file saved for it; a file whose formulas have none
    (written by a program that does not compute them) is refused by row, not read as blanks.
    """
    try:
        import openpyxl  # type: ignore[import-untyped]
    except ImportError:
        raise ManifestError(
            f"{path}: an .xlsx manifest is read with openpyxl: pip install 'cvekyc-async[export]'"
            " (or save the sheet as CSV)"
        ) from None
    books = []
    try:
        for data_only in (True, False):
            books.append(openpyxl.load_workbook(path, read_only=True, data_only=data_only))
    except Exception as exc:  # any of the library's errors on any bytes: named, never quoted
        for book in books:
            book.close()
        raise ManifestError(f"{path}: not a sheet openpyxl reads ({type(exc).__name__})") from None
    n = 0
    readers: list[Any] = []
    try:
        sheets = [_sheet_of(book) for book in books]
        if sheets[0] is None or sheets[1] is None:
            raise ManifestError(f"{path}: the workbook holds no worksheet")
        readers = [sheet.iter_rows(values_only=True) for sheet in sheets]
        rows = zip(*readers, strict=False)
        found = False
        for n, (values, formulas) in enumerate(rows, 1):
            cells = [_cell_text(v) for v in values]
            for value, formula in zip(values, formulas, strict=False):
                if value is None and isinstance(formula, str) and formula.startswith("="):
                    raise ManifestError(
                        f"{path}: row {n}: a formula with no saved value (the file was written "
                        "by a program that does not compute formulas): open and save it in "
                        "Excel, or save the sheet as CSV"
                    )
            found = found or any(cells)
            yield n, cells
        if not found:
            raise ManifestError(f"{path}: the sheet {sheets[0].title!r} holds no rows")
    except ManifestError:
        raise
    except Exception as exc:  # damaged XML inside the file, found while streaming it
        raise ManifestError(
            f"{path}: row {n + 1} cannot be read ({type(exc).__name__}): a damaged sheet"
        ) from None
    finally:
        # The row readers first: each holds the file open until it is closed.
        for reader in readers:
            reader.close()
        for book in books:
            book.close()


def _sheet_of(book: Any) -> Any:
    """The sheet Excel opens on, when it is a worksheet (not a chart), else the first one."""
    active = book.active
    if active is not None and hasattr(active, "iter_rows"):
        return active
    return book.worksheets[0] if book.worksheets else None


def _cell_text(value: Any) -> str:
    """A sheet's cell as a manifest reads it: a whole number without ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _csv_jobs(path: Path, how: _Reading) -> Iterator[Job]:
    yield from _table_jobs(path, _csv_rows(path, how.delimiter), how)


def _table_jobs(
    path: Path, rows_read: Iterable[tuple[int, list[str]]], how: _Reading
) -> Iterator[Job]:
    """The jobs of a table's rows (a CSV or a sheet): by the columns its header names, or, with
    no header, the first column (the first two for pairs)."""
    pairs = how.pairs
    rows = ((n, cells) for n, cells in rows_read if "".join(cells).strip())
    first_row = next(rows, None)
    if first_row is None:
        return
    first_n, first = first_row
    header = [_column_of(c) or c.strip().lower() for c in first]
    known = set(SINGLE_COLUMNS) | {"front", "back"}
    named = [h for h in header if h in known]
    if named:
        twice = sorted({h for h in named if named.count(h) > 1})
        if twice:
            raise ManifestError(
                f"{path}:{first_n}: the header names the column {', '.join(twice)} twice: "
                "keep one, so that each row has one input"
            )
        read = 0
        for n, cells in rows:
            read += 1
            if any(c.strip() for c in cells[len(header) :]):
                # An input holding the delimiter, unquoted: read whole, or not at all.
                raise ManifestError(
                    f"{path}:{n}: {len(cells)} cells under a header of {len(header)}: quote a "
                    "value that holds the delimiter"
                )
            row = dict(zip(header, cells, strict=False))
            given = [c for c in SINGLE_COLUMNS if row.get(c, "").strip()]
            if not pairs and len(given) > 1:
                raise ManifestError(
                    f"{path}:{n}: the row gives both {given[0]} and {given[1]}: give one input "
                    "per row"
                )
            yield _row_job(row, how, path.parent, f"{path}:{n}")
        if not read:
            # A header and nothing under it: most likely the wrong file or an unsaved sheet,
            # not a batch of nothing.
            raise ManifestError(
                f"{path}:{first_n}: a header and no row under it: nothing to read (add the "
                "inputs below the header, or leave this file out)"
            )
        return
    # No header: only when the first row is itself an input (a path or a URL), else the
    # header names no column we know.
    if not first or not all(_looks_like_input(c, path.parent) for c in first[: 2 if pairs else 1]):
        expected = "front, back" if pairs else ", ".join(SINGLE_COLUMNS)
        raise ManifestError(
            f"{path}:{first_n}: no column this command reads; name one of: {expected} (or in "
            "Vietnamese: đường dẫn, mặt trước, mặt sau), or list the inputs without a header"
        )
    for n, cells in itertools.chain([first_row], rows):
        if pairs:
            if len(cells) < 2:
                raise ManifestError(f"{path}:{n}: a pair needs two columns")
            row = {"front": cells[0], "back": cells[1]}
        else:
            row = {"path": cells[0]}
        yield _row_job(row, how, path.parent, f"{path}:{n}")


def _text_jobs(path: Path, how: _Reading) -> Iterator[Job]:
    pairs = how.pairs
    """A ``.txt`` manifest: one input per line, no header, no quoting."""
    if pairs:
        raise ManifestError(f"{path}: --endpoint cards takes pairs from a .csv or .jsonl manifest")
    for n, text in _lines(path):
        if text.strip():
            yield _row_job({"path": text.strip()}, how, path.parent, f"{path}:{n}")


def _jsonl_jobs(path: Path, how: _Reading) -> Iterator[Job]:
    pairs = how.pairs
    for n, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = _JSON_LINE.decode(line)
        except (msgspec.DecodeError, RecursionError):
            raise ManifestError(f"{where}: not JSON") from None
        if isinstance(obj, str):
            obj = {"path": obj}
        elif isinstance(obj, list) and pairs and len(obj) == 2:
            obj = {"front": obj[0], "back": obj[1]}
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: expected a string or an object")
        yield _row_job(obj, how, path.parent, where)


def discover(
    sources: Iterable[str],
    *,
    pairs: bool,
    url_hmac_key: bytes | None = None,
    allow_outside: bool = False,
    delimiter: str | None = None,
    left_out: LeftOut | None = None,
    pair_rule: PairRule | None = None,
) -> Iterator[Job]:
    """The jobs named by command-line arguments, lazily, in order.

    Args:
        sources: files, directories (searched recursively for images and PDFs by name and by
            content), URLs, and manifests (``.csv``, ``.jsonl``, ``.txt`` with one input per
            line).
        pairs: whether inputs are (front, back) pairs (``--endpoint cards``): they can only
            come from manifests.
        url_hmac_key: the HMAC key of URLs that carry credentials or a query (see ``url_key``).
        allow_outside: whether a manifest may name files outside its folder.
        delimiter: the delimiter of CSV manifests (``None``: found among ``,`` ``;`` tab).
        left_out: counts the files of scanned folders that are not inputs.
        pair_rule: how the files of scanned folders pair up as fronts and backs (with
            ``pairs``; see ``PairRule``).

    Raises:
        ManifestError: an argument that does not exist or cannot be read, or a manifest line
            that cannot be read or names a file outside the manifest's folder.
    """
    how = _Reading(pairs, url_hmac_key, allow_outside, delimiter)
    for source in sources:
        _check_text(source, source)
        if _check_url(source, source):
            if pairs:
                raise ManifestError(f"{source}: --endpoint cards takes pairs from a manifest")
            yield Job(url_key(source, url_hmac_key), source)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            if pairs and pair_rule is None:
                raise ManifestError(
                    f"{source}: --endpoint cards takes pairs from a manifest, or from a folder "
                    "with --pairs auto (front and back matched by name)"
                )
            if pair_rule is not None:
                yield from _paired(path, pair_rule, left_out)
            else:
                for key, found in _walk(path, left_out):
                    yield Job(key, str(found))
            continue
        if not path.exists():
            raise ManifestError(f"{source}: no such file or directory")
        if not _is_regular(path):
            raise ManifestError(f"{source}: not a regular file (a FIFO or a device is not read)")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            yield from _csv_jobs(path, how)
        elif suffix == ".xlsx":
            yield from _table_jobs(path, _xlsx_rows(path), how)
        elif suffix in (".jsonl", ".ndjson"):
            yield from _jsonl_jobs(path, how)
        elif suffix == ".txt":
            yield from _text_jobs(path, how)
        elif pairs:
            raise ManifestError(f"{source}: --endpoint cards takes pairs from a manifest")
        else:
            yield Job(path.name, str(path))


# -- what an input's bytes are -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What was sent for an input: the SHA-256 of its bytes (``a+b`` for a pair) and their
    size in bytes (summed for a pair)."""

    sha256: str
    size: int


_CHUNK = 1 << 20


def _files(value: Any) -> tuple[str, ...] | None:
    """The files an input's value names; ``None`` when a URL is among them."""
    values = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, str) and "://" not in v for v in values):
        return None
    return values


def _size_of(files: tuple[str, ...]) -> int | None:
    total = 0
    for name in files:
        try:
            info = os.stat(name)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size
    return total


def _sha256_of(name: str) -> str:
    digest = hashlib.sha256()
    with open(name, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(value: Any) -> Fingerprint | None:
    """The fingerprint of an input's files as they are now, read in chunks; ``None`` for a
    URL, or a file that cannot be read."""
    files = _files(value)
    size = None if files is None else _size_of(files)
    if files is None or size is None:
        return None
    try:
        return Fingerprint("+".join(_sha256_of(name) for name in files), size)
    except (OSError, ValueError):
        return None


def still_as_sent(value: Any, sha256: str, size: int | None) -> bool:
    """Whether an input's files still hold the bytes a record was made of: the sizes are
    compared first, and the files hashed only when they match (``size`` is ``None`` in records
    written before sizes were). An input that cannot be read now keeps its record."""
    files = _files(value)
    now = None if files is None else _size_of(files)
    if now is None:
        return True
    if size is not None and now != size:
        return False
    current = fingerprint(value)
    return current is None or current.sha256 == sha256


def load(job: Job, max_file_size: int) -> tuple[Any, Fingerprint | None]:
    """What to send for ``job``, and the fingerprint of its bytes (``None`` for URLs, or when
    a file cannot be read or is over the size limit: then the path itself is sent, and the
    client says what is wrong without reading it)."""
    values = job.value if isinstance(job.value, tuple) else (job.value,)
    loaded: list[Any] = []
    digests: list[str] = []
    size = 0
    for value in values:
        if isinstance(value, str) and "://" in value:
            loaded.append(value)
            continue
        try:
            path = Path(value)
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_file_size:
                return job.value, None
            data = path.read_bytes()
            source = ImageSource.from_bytes(data, filename=path.name)
        except Exception:
            return job.value, None
        loaded.append(source)
        digests.append(hashlib.sha256(data).hexdigest())
        size += len(data)
    sent = Fingerprint("+".join(digests), size) if len(digests) == len(values) else None
    return (tuple(loaded) if isinstance(job.value, tuple) else loaded[0]), sent
