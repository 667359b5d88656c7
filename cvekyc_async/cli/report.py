"""``cvekyc report``: one self-contained HTML page of batch results, for a person to review.

The page holds everything it shows: no network, no file beside it, no external script, style
or font. A Content-Security-Policy in the page lets only its own style and its one script run
(by their hashes) and images only from ``data:`` URIs, so a page opened from a USB stick on an
offline laptop looks the same, and text from an answer can never become markup: every value is
escaped, and ``://`` is written ``&#58;//`` so that the file names no address at all.

Entries are rendered on the server side (the page reads as plain HTML); the script only hides
and shows them (filters by verdict and finding, a search by key and input), and attaches each
entry's card images when it comes near the screen: an image's data waits in a ``<template>``
until then, so 5,000 entries do not decode 5,000 images on load.

Records are streamed (``records.Results``): one pass counts, then one pass per group writes
its entries (review first, then reject, failed, not assessed, accept), into a file created
mode 0600 beside the output and renamed into place when it is complete.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import datetime as dt
import hashlib
import html
import io
import json
import os
import re
import stat
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .._inputs import sniff_format
from .joblog import LockedError, NotRegularError, named_among, replacing_output
from .options import EXIT_OK, EXIT_WRITE, UsageError, batch_outputs, terminate_as_interrupt
from .records import NotRecordsError, Results, cards_of

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_LOW_CONFIDENCE",
    "GROUPS",
    "ReportOptions",
    "ReportReadError",
    "add_report_parser",
    "group_of",
    "page",
    "run_report",
]

#: Images of more pixels are not shown: decoding one costs memory in proportion (a 48 MP phone
#: photo is under it; Pillow's own limit, about 89 MP, lets a small PNG take a gigabyte).
_MAX_PIXELS = 50_000_000

#: Longest side of an image in the page, in pixels.
DEFAULT_IMAGE_SIZE = 480
#: Confidences below this are marked (the trust checks flag the same, ``confidence.low``).
DEFAULT_LOW_CONFIDENCE = 0.8
#: The order of the page: what a person must decide first.
GROUPS = ("review", "reject", "failed", "none", "accept")
_GROUP_NAMES = {
    "review": "Review",
    "reject": "Reject",
    "failed": "Failed",
    "none": "Not assessed",
    "accept": "Accept",
}
# Files larger than this are not read for an image (the service takes 10 MiB by default).
_MAX_IMAGE_FILE = 64 * 1024**2
_JPEG_QUALITY = 75
# How many re-encoded images are kept: a same_as record shows the bytes of another.
_CACHED_IMAGES = 32
# What marks a page as ours: an existing file at -o without it is not replaced.
_GENERATOR = '<meta name="generator" content="cvekyc report">'
# Fields not shown as rows: the image itself, and what the confidence column and the
# extract command leave out (boxes, administrative codes).
_HIDDEN = ("_confidence", "_box", "_code")
_NO_PILLOW = "no image: Pillow is not installed (pip install 'cvekyc-async[cli]')"


class ReportReadError(Exception):
    """A batch output could not be read while the page was written."""


@dataclass(frozen=True)
class ReportOptions:
    """What goes into the page.

    Args:
        images: show card images (thumbnails, the service's crops, or the input itself).
        image_size: longest side of each image, in pixels.
        low_confidence: confidences below this are marked.
    """

    images: bool = True
    image_size: int = DEFAULT_IMAGE_SIZE
    low_confidence: float = DEFAULT_LOW_CONFIDENCE


# -- text ----------------------------------------------------------------------------------------


#: Unicode's direction controls: in an answer they could turn the page's own text around
#: them (an ID number shown reversed, a file name that reads as another); shown as their code.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _esc(value: object) -> str:
    """Text for the page: escaped (quotes too, so it may stand in an attribute), with no
    ``scheme://`` left in it, so the file names no address even as text (it shows the same),
    and direction controls shown as ``[U+202E]``."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    text = _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    return html.escape(text, quote=True).replace("://", "&#58;//")


def _shown_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if 0.0 <= number <= 1.0 else None  # a confidence lies between 0 and 1


def _written(record: dict[str, Any]) -> dt.datetime | None:
    text = record.get("written")
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"


def group_of(record: dict[str, Any]) -> str:
    """Where a record stands in the page: its verdict, ``failed``, or ``none`` (read, but
    without a verdict)."""
    if record.get("ok") is not True:
        return "failed"
    assessment = record.get("assessment")
    verdict = assessment.get("verdict") if isinstance(assessment, dict) else None
    return verdict if verdict in ("accept", "review", "reject") else "none"


def _findings(record: dict[str, Any]) -> list[dict[str, Any]]:
    assessment = record.get("assessment")
    found = assessment.get("findings") if isinstance(assessment, dict) else None
    return [f for f in found if isinstance(f, dict)] if isinstance(found, list) else []


def _code_word(code: object) -> str:
    """A finding's code as one word (the filter splits entries' codes on spaces)."""
    return "_".join(str(code).split()) or "_"


def _inputs(record: dict[str, Any]) -> list[str]:
    value = record.get("input")
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def _key(record: dict[str, Any]) -> str:
    key = record.get("key")
    return key if isinstance(key, str) else "\t".join(_inputs(record))


def _low_fields(record: dict[str, Any], threshold: float) -> bool:
    for card in cards_of(record):
        info = card.get("info")
        if isinstance(info, dict):
            for name, value in info.items():
                confidence = _confidence(value) if name.endswith("_confidence") else None
                if confidence is not None and confidence < threshold:
                    return True
    return False


# -- counts --------------------------------------------------------------------------------------


@dataclass
class _Counts:
    """The page's summary, counted over the records that count."""

    inputs: int = 0
    ok: int = 0
    billed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    groups: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    low: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def add(self, record: dict[str, Any], threshold: float) -> None:
        self.inputs += 1
        group = group_of(record)
        self.groups[group] += 1
        if record.get("ok") is True:
            self.ok += 1
        else:
            error = record.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            self.failed[kind if isinstance(kind, str) else "unknown"] += 1
        if record.get("billed") is True:
            self.billed += 1
        for code in {_code_word(f.get("code")) for f in _findings(record)}:
            self.codes[code] += 1
        if _low_fields(record, threshold):
            self.low += 1
        when = _written(record)
        if when is not None:
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)


# -- images --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Picture:
    uri: str
    width: int
    height: int


class _Images:
    """Card images as ``data:`` URIs: decoded with Pillow (its decompression-bomb limit
    enforced), turned upright, made at most ``size`` pixels on the long side and encoded as
    JPEG. Whatever cannot be read is "no image", with the reason, and the page goes on."""

    def __init__(self, size: int) -> None:
        self.size = size
        try:
            from PIL import Image, ImageOps
        except ImportError:
            self._pil: Any = None
        else:
            self._pil = (Image, ImageOps)
        self._cache: collections.OrderedDict[bytes, _Picture | str] = collections.OrderedDict()

    def from_bytes(self, data: bytes) -> _Picture | str:
        """The image, or why there is none."""
        if self._pil is None:
            return _NO_PILLOW
        fmt = sniff_format(data[:16])
        if fmt == "pdf":
            return "no image: a PDF"
        if fmt is None:
            return "no image: not an image file"
        digest = hashlib.sha256(data).digest()
        held = self._cache.get(digest)
        if held is None:
            held = self._encode(data)
            self._cache[digest] = held
            if len(self._cache) > _CACHED_IMAGES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(digest)
        return held

    def _encode(self, data: bytes) -> _Picture | str:
        image_module, image_ops = self._pil
        try:
            with warnings.catch_warnings():
                # Pillow warns past MAX_IMAGE_PIXELS and refuses past twice that: refuse both.
                warnings.simplefilter("error", image_module.DecompressionBombWarning)
                with image_module.open(
                    io.BytesIO(data), formats=("JPEG", "PNG", "WEBP", "BMP", "TIFF")
                ) as img:
                    width, height = img.size
                    if width * height > _MAX_PIXELS:
                        return "no image: too many pixels"
                    img.draft("RGB", (self.size, self.size))  # JPEG: decode at a smaller scale
                    # Made small first, then turned and converted: no full-size copy is made.
                    img.thumbnail((self.size, self.size), reducing_gap=2.0)
                    picture = image_ops.exif_transpose(img)
                    if picture.mode not in ("RGB", "L"):
                        picture = picture.convert("RGB")
                    out = io.BytesIO()
                    picture.save(out, "JPEG", quality=_JPEG_QUALITY)
                    width, height = picture.size
        except (image_module.DecompressionBombWarning, image_module.DecompressionBombError):
            return "no image: too many pixels"
        except Exception:  # any decoder's failure on any bytes: that image only is left out
            return "no image: it could not be decoded"
        uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
        return _Picture(uri, width, height)

    def from_base64(self, text: str) -> _Picture | str:
        data = text.partition(",")[2] if text.startswith("data:") else text
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return "no image: the service's crop is not base64"
        return self.from_bytes(raw)

    def from_file(self, name: str, sha256: str | None = None) -> _Picture | str:
        """The image in the file ``name`` (``sha256``: the digest recorded when it was sent;
        a file that no longer holds those bytes is not shown as what was read)."""
        if self._pil is None:
            return _NO_PILLOW
        data = _read_regular(Path(name))
        if isinstance(data, str):
            return data
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            return "no image: the file has changed since it was read"
        return self.from_bytes(data)


def _read_regular(path: Path) -> bytes | str:
    """A regular file's bytes, or why it was not read: never a FIFO or a device (opened
    without blocking and checked before a byte is read), never a file over the size cap."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return f"no image: {exc.strerror or 'cannot be read'}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "no image: not a regular file"
        if info.st_size > _MAX_IMAGE_FILE:
            return "no image: the file is too large"
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(_MAX_IMAGE_FILE + 1)[:_MAX_IMAGE_FILE]
    except OSError as exc:
        return f"no image: {exc.strerror or 'cannot be read'}"
    finally:
        os.close(fd)


# -- the page ------------------------------------------------------------------------------------

_STYLE = """
:root{color-scheme:light;--fg:#1b1b1b;--muted:#555;--line:#d0d0d0;--focus:#0b57d0}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:#fafafa}
.wrap{max-width:1100px;margin:0 auto;padding:0 16px 48px}
h1{font-size:1.5rem;margin:16px 0 8px}
h2{font-size:1.1rem;margin:0;overflow-wrap:anywhere}
h3{font-size:1rem;margin:12px 0 6px}
.skip{position:absolute;left:-9999px}
.skip:focus{left:16px;top:8px;background:#fff;padding:6px 10px;z-index:2}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.notice{border:2px solid #b3261e;background:#fdecea;padding:10px 14px;margin:12px 0;
border-radius:6px}
.summary dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:8px 0}
.summary dt{font-weight:600}
.summary dd{margin:0}
.summary ul{margin:2px 0;padding-left:18px}
form.filters{position:sticky;top:0;z-index:1;display:flex;flex-wrap:wrap;gap:8px 16px;
align-items:end;background:#fff;border-bottom:1px solid var(--line);padding:10px 0;margin:12px 0}
form.filters label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted)}
form.filters label.check{flex-direction:row;align-items:center;gap:6px;color:var(--fg)}
form.filters select,form.filters input[type=search],form.filters button{font:inherit;
padding:4px 6px;min-height:32px}
form.filters input[type=search]{min-width:16rem}
#shown{font-weight:600;margin-left:auto}
article.entry{background:#fff;border:1px solid var(--line);border-left:6px solid var(--line);
border-radius:6px;padding:12px 14px;margin:12px 0;content-visibility:auto;
contain-intrinsic-size:auto 420px}
article.entry[hidden]{display:none}
article.review{border-left-color:#b26a00}
article.reject{border-left-color:#b3261e}
article.failed{border-left-color:#444}
article.accept{border-left-color:#1e7d32}
.head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.badge{font-weight:700;font-size:.8rem;text-transform:uppercase;padding:2px 8px;
border-radius:10px;color:#fff;background:#666;white-space:nowrap}
.badge.review{background:#8a5200}.badge.reject{background:#b3261e}
.badge.failed{background:#333}.badge.accept{background:#1e7d32}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;
color:var(--muted);font-size:.9rem}
dl.meta dd{margin:0;overflow-wrap:anywhere}
ul.findings{margin:4px 0;padding-left:20px}
ul.findings li{margin:2px 0}
.sev{font-weight:700}
.sev.reject{color:#b3261e}.sev.review{color:#8a5200}
.rule{color:var(--muted)}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:12px 24px}
section.card{flex:1 1 100%;min-width:0}
.body{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:flex-start}
.body table{flex:1 1 320px;width:auto}
.pics{display:flex;flex-wrap:wrap;gap:8px}
figure.pic{margin:0;width:min(480px,100%)}
.frame{width:100%;aspect-ratio:3/2;background:#eee;display:flex;align-items:center;
justify-content:center}
.frame img{max-width:100%;max-height:100%;object-fit:contain}
figcaption,.noimg{color:var(--muted);font-size:.85rem}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;border-bottom:1px solid #eee;padding:3px 6px;vertical-align:top;
overflow-wrap:anywhere}
th{font-weight:600}
.conf{white-space:nowrap;width:1%}
tr.low td{background:#fff4e5}
.lowmark{font-weight:700;color:#8a5200}
.error{border-left:4px solid #444;padding-left:10px}
"""

_SCRIPT = """
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var entries = document.querySelectorAll("article.entry");
  var shown = document.getElementById("shown");
  var total = entries.length;
  function apply() {
    var verdict = form.elements.verdict.value;
    var code = form.elements.code.value;
    var query = form.elements.q.value.trim().toLowerCase();
    var low = form.elements.low.checked;
    var count = 0;
    for (var i = 0; i < total; i++) {
      var entry = entries[i];
      var show = (!verdict || entry.dataset.verdict === verdict) &&
        (!code || (" " + entry.dataset.codes + " ").indexOf(" " + code + " ") >= 0) &&
        (!query || entry.dataset.search.indexOf(query) >= 0) &&
        (!low || entry.dataset.low === "1");
      entry.hidden = !show;
      if (show) { count++; }
    }
    shown.textContent = count + " of " + total + " shown";
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  form.addEventListener("reset", function () { setTimeout(apply, 0); });
  form.hidden = false;
  apply();
  function attach(entry) {
    var held = entry.querySelectorAll("template.pic");
    for (var i = 0; i < held.length; i++) {
      held[i].replaceWith(held[i].content);
    }
  }
  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (seen) {
      seen.forEach(function (item) {
        if (item.isIntersecting) {
          observer.unobserve(item.target);
          attach(item.target);
        }
      });
    }, { rootMargin: "800px 0px" });
    entries.forEach(function (entry) {
      if (entry.querySelector("template.pic")) { observer.observe(entry); }
    });
  } else {
    entries.forEach(attach);
  }
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: No source at all but the page's own style and script (by hash) and images in the page.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; img-src data:; style-src {_hash(_STYLE)}; "
    f"script-src {_hash(_SCRIPT)}; base-uri 'none'; form-action 'none'"
)


class _Page:
    """The page, written a piece at a time."""

    def __init__(self, results: Results, options: ReportOptions) -> None:
        self.results = results
        self.options = options
        self.images = _Images(options.image_size) if options.images else None
        self.counts = _Counts()
        self._serial = 0

    def _records(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self.results.records()
        except OSError as exc:
            raise ReportReadError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None

    def pieces(self) -> Iterator[str]:
        for record in self._records():
            self.counts.add(record, self.options.low_confidence)
        yield self._head()
        yield self._summary()
        yield self._filters()
        yield '<main id="entries" aria-label="Entries">\n'
        for group in GROUPS:
            if not self.counts.groups[group]:
                continue
            for record in self._records():
                if group_of(record) == group:
                    yield self._entry(record, group)
        yield "</main>\n</div>\n<script>" + _SCRIPT + "</script>\n</body>\n</html>\n"

    # -- head and summary

    def _head(self) -> str:
        n = self.counts.inputs
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            '<meta name="robots" content="noindex, nofollow">\n'
            f"{_GENERATOR}\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>cvekyc report: {n} input{'s' if n != 1 else ''}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n"
            '<a class="skip" href="#entries">Skip to the entries</a>\n<div class="wrap">\n'
            "<header>\n<h1>Batch results</h1>\n"
            '<p class="notice" id="personal-data" role="note"><strong>Personal data.</strong> '
            "This file holds names, ID numbers, dates of birth, addresses"
            f"{' and images' if self.options.images else ''} of identity documents. Keep it "
            "where only the people who must review it can read it (it was created readable "
            "by its owner only), do not send it by e-mail or chat, and delete it when the "
            "review is done.</p>\n"
            + (
                "<noscript><p>Scripts are off: the filters and the card images need the "
                "page's own script (it reaches nothing outside the page).</p></noscript>\n"
                if self.options.images
                else "<noscript><p>Scripts are off: the filters need the page's own "
                "script.</p></noscript>\n"
            )
            + "</header>\n"
        )

    def _summary(self) -> str:
        c = self.counts
        rows: list[tuple[str, str, str]] = [
            ("inputs", "Inputs", f"{c.inputs}"),
            ("ok", "Read", f"{c.ok}"),
        ]
        failed = sum(c.failed.values())
        detail = "".join(
            f"<li>{_esc(kind)}: {n}</li>" for kind, n in sorted(c.failed.items(), key=_by_count)
        )
        rows.append(("failed", "Failed", f"{failed}" + (f"<ul>{detail}</ul>" if detail else "")))
        verdicts = ", ".join(
            f'<span id="sum-{g}">{_GROUP_NAMES[g].lower()} {c.groups[g]}</span>'
            for g in ("review", "reject", "accept")
        )
        if c.groups["none"]:
            verdicts += f', <span id="sum-none">not assessed {c.groups["none"]}</span>'
        rows.append(("verdicts", "Verdicts", verdicts))
        rows.append(("billed", "Billed", f"{c.billed}"))
        if c.first is not None and c.last is not None:
            span = (
                f"{_utc(c.first)} to {_utc(c.last)} ({_span((c.last - c.first).total_seconds())})"
            )
        else:
            span = "not recorded (these records carry no time of writing)"
        rows.append(("span", "Written", span))
        rows.append(
            (
                "low",
                "Low confidence",
                f"below {self.options.low_confidence:g}: {c.low} input{'s' if c.low != 1 else ''}",
            )
        )
        sources = ", ".join(f"<code>{_esc(p)}</code>" for p in self.results.parts)
        read = f"{self.results.read} records read"
        if self.results.unreadable:
            read += f", {self.results.unreadable} lines that are not records left out"
        rows.append(("sources", "From", f"{sources} ({read})"))
        made = dt.datetime.now(dt.timezone.utc)
        rows.append(("made", "Made", _utc(made)))
        body = "".join(f'<dt>{name}</dt><dd id="sum-{k}">{value}</dd>' for k, name, value in rows)
        return (
            '<section class="summary" aria-labelledby="summary-h">\n'
            f'<h2 id="summary-h">Summary</h2>\n<dl>{body}</dl>\n</section>\n'
        )

    def _filters(self) -> str:
        c = self.counts
        verdicts = "".join(
            f'<option value="{g}">{_GROUP_NAMES[g].lower()} ({c.groups[g]})</option>'
            for g in GROUPS
            if c.groups[g]
        )
        codes = "".join(
            f'<option value="{_esc(code)}">{_esc(code)} ({n})</option>'
            for code, n in sorted(c.codes.items())
        )
        return (
            '<form class="filters" id="filters" role="search" aria-label="Filter the entries" '
            "hidden>\n"
            '<label for="f-verdict">Verdict <select id="f-verdict" name="verdict">'
            f'<option value="">all ({c.inputs})</option>{verdicts}</select></label>\n'
            '<label for="f-code">Finding <select id="f-code" name="code">'
            f'<option value="">any</option>{codes}</select></label>\n'
            '<label for="f-q">Key or input <input id="f-q" name="q" type="search" '
            'autocomplete="off" spellcheck="false"></label>\n'
            '<label class="check" for="f-low"><input id="f-low" name="low" type="checkbox"> '
            "with a low confidence</label>\n"
            '<button type="reset">Show all</button>\n'
            '<output id="shown" for="f-verdict f-code f-q f-low" aria-live="polite"></output>\n'
            "</form>\n"
        )

    # -- entries

    def _entry(self, record: dict[str, Any], group: str) -> str:
        self._serial += 1
        n = self._serial
        key = _key(record)
        inputs = _inputs(record)
        findings = _findings(record)
        codes = " ".join(sorted({_code_word(f.get("code")) for f in findings}))
        search = " ".join([key, *inputs]).lower()
        low = _low_fields(record, self.options.low_confidence)
        out = [
            f'<article class="entry {group}" data-verdict="{group}" data-codes="{_esc(codes)}" '
            f'data-search="{_esc(search)}" data-low="{int(low)}" aria-labelledby="k{n}">\n'
            f'<div class="head"><span class="badge {group}">{_GROUP_NAMES[group]}</span>'
            f'<h2 id="k{n}">{_esc(key)}</h2></div>\n',
            self._meta(record, inputs),
        ]
        if findings:
            out.append(_findings_html(findings))
        if group == "failed":
            out.append(_error_html(record))
        cards = cards_of(record)
        pictures_shown = False
        card_html = []
        for index, card in enumerate(cards):
            html_, shown = self._card(record, card, index, len(cards))
            pictures_shown = pictures_shown or shown
            card_html.append(html_)
        if self.images is not None and not pictures_shown:
            out.append(self._input_pictures(record, inputs))
        if card_html:
            out.append('<div class="cards">' + "".join(card_html) + "</div>\n")
        out.append("</article>\n")
        return "".join(out)

    def _meta(self, record: dict[str, Any], inputs: list[str]) -> str:
        rows: list[tuple[str, str]] = []
        value = record.get("input")
        if isinstance(value, list) and len(inputs) == 2:
            rows += [("Front", _esc(inputs[0])), ("Back", _esc(inputs[1]))]
        else:
            rows += [("Input", _esc(x)) for x in inputs]
        same = record.get("same_as")
        if isinstance(same, str):
            rows.append(("Same bytes as", f"{_esc(same)} (not paid for again)"))
        billed = record.get("billed")
        attempts = record.get("attempts")
        elapsed = record.get("elapsed")
        call = "billed" if billed is True else "not billed"
        if isinstance(attempts, int) and not isinstance(attempts, bool):
            call += f", {attempts} attempt{'s' if attempts != 1 else ''}"
        if _confidence(elapsed) is not None:
            call += f", {_esc(f'{elapsed:.2f}')} s"
        rows.append(("Call", call))
        when = _written(record)
        if when is not None:
            rows.append(("Written", _utc(when)))
        for name, label in (
            ("run", "Run"),
            ("shard", "Shard"),
            ("request_id", "Request"),
            ("service_request_id", "Service's request"),
        ):
            got = record.get(name)
            if isinstance(got, (str, int)) and not isinstance(got, bool):
                rows.append((label, f"<code>{_esc(got)}</code>"))
        return (
            '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>\n"
        )

    def _card(
        self, record: dict[str, Any], card: dict[str, Any], index: int, total: int
    ) -> tuple[str, bool]:
        kind = card.get("type")
        title = f"Card {index + 1} of {total}: " if total > 1 else ""
        title += f"<code>{_esc(kind)}</code>" if isinstance(kind, str) else "card"
        valid = card.get("valid")
        if valid is True:
            title += " — valid"
        elif valid is False:
            message = card.get("invalid_message")
            code = card.get("invalid_code")
            title += " — flagged by the service"
            if isinstance(message, str) and message:
                title += f": {_esc(message)}"
            if isinstance(code, int) and not isinstance(code, bool):
                title += f" (warning {code})"
        out = [f'<section class="card"><h3>{title}</h3>\n<div class="body">']
        shown = False
        if self.images is not None:
            picture, caption = self._card_picture(record, card, index)
            if isinstance(picture, _Picture):
                shown = True
                out.append(_figure(picture, f"Card {index + 1}", caption))
            elif picture is not None:
                out.append(f'<p class="noimg">{_esc(picture)}</p>\n')
        info = card.get("info")
        out.append(self._fields(info if isinstance(info, dict) else {}))
        out.append("</div></section>\n")
        return "".join(out), shown

    def _card_picture(
        self, record: dict[str, Any], card: dict[str, Any], index: int
    ) -> tuple[_Picture | str | None, str]:
        """The card's image, from the saved thumbnail or the service's crop; ``None`` when
        there is neither (the input itself is shown instead)."""
        assert self.images is not None
        reasons = []
        thumbnails = record.get("thumbnails")
        if isinstance(thumbnails, list) and index < len(thumbnails):
            name = thumbnails[index]
            if isinstance(name, str) and name:
                # A file `cvekyc batch --thumbnails` saved is named by its bytes' SHA-256: one
                # that no longer holds them (another run wrote there) is not shown.
                stem = Path(name).stem
                named = stem if re.fullmatch(r"[0-9a-f]{64}", stem) else None
                got = self.images.from_file(name, named)
                if isinstance(got, _Picture):
                    return got, "the saved thumbnail"
                reasons.append(f"thumbnail: {got}")
        info = card.get("info")
        crop = info.get("image") if isinstance(info, dict) else None
        if isinstance(crop, str) and crop:
            got = self.images.from_base64(crop)
            if isinstance(got, _Picture):
                return got, "the service's crop"
            reasons.append(f"crop: {got}")
        return ("; ".join(reasons) or None), ""

    def _input_pictures(self, record: dict[str, Any], inputs: list[str]) -> str:
        assert self.images is not None
        sha256 = record.get("sha256")
        digests = sha256.split("+") if isinstance(sha256, str) else []
        sides = ("front", "back") if len(inputs) == 2 else ("input",)
        out = []
        for i, name in enumerate(inputs):
            label = sides[i] if i < len(sides) else "input"
            if "://" in name:
                out.append(f'<p class="noimg">{label}: no image: a URL (not fetched)</p>\n')
                continue
            digest = digests[i] if len(digests) == len(inputs) else None
            got = self.images.from_file(name, digest)
            if isinstance(got, _Picture):
                out.append(_figure(got, f"The {label} image", f"the {label} as sent"))
            else:
                out.append(f'<p class="noimg">{label}: {_esc(got)}</p>\n')
        return '<div class="pics">' + "".join(out) + "</div>\n" if out else ""

    def _fields(self, info: dict[str, Any]) -> str:
        threshold = self.options.low_confidence
        names = [
            k for k in info if k != "image" and not k.endswith(_HIDDEN) and info[k] is not None
        ]
        # A confidence whose field was not sent (the passport's mrz) still gets a row.
        names += [
            k.removesuffix("_confidence")
            for k in info
            if k.endswith("_confidence") and k.removesuffix("_confidence") not in info
        ]
        if not names:
            return '<p class="noimg">no fields read</p>\n'
        rows = []
        for name in names:
            value = info.get(name)
            confidence = _confidence(info.get(f"{name}_confidence"))
            low = confidence is not None and confidence < threshold
            shown = "" if value is None else _esc(_shown_value(value))
            if confidence is None:
                conf = ""
            elif low:
                conf = f'{confidence:.2f} <span class="lowmark">low</span>'
            else:
                conf = f"{confidence:.2f}"
            row = '<tr class="low">' if low else "<tr>"
            rows.append(
                f'{row}<th scope="row">{_esc(name)}</th>'
                f'<td>{shown}</td><td class="conf">{conf}</td></tr>'
            )
        return (
            '<table><thead><tr><th scope="col">Field</th><th scope="col">Value</th>'
            '<th scope="col" class="conf">Confidence</th></tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table>\n"
        )


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def _figure(picture: _Picture, alt: str, caption: str) -> str:
    # The image waits in a template until its entry nears the screen (the page's script).
    return (
        f'<figure class="pic"><div class="frame"><template class="pic"><img src="{picture.uri}" '
        f'alt="{_esc(alt)}" width="{picture.width}" height="{picture.height}" '
        'decoding="async"></template></div>'
        f"<figcaption>{_esc(caption)}</figcaption></figure>\n"
    )


def _findings_html(findings: list[dict[str, Any]]) -> str:
    items = []
    for finding in findings:
        severity = finding.get("severity")
        sev = severity if severity in ("review", "reject") else "review"
        parts = [
            f'<span class="sev {sev}">{_GROUP_NAMES[sev]}</span>',
            f"<code>{_esc(finding.get('code', ''))}</code>",
            _esc(finding.get("message", "")),
        ]
        fields = finding.get("fields")
        if isinstance(fields, list) and fields:
            parts.append("(fields: " + ", ".join(_esc(f) for f in fields) + ")")
        rule = finding.get("rule")
        if isinstance(rule, str) and rule:
            parts.append(f'<span class="rule">— rule: {_esc(rule)}</span>')
        items.append("<li>" + " ".join(parts) + "</li>")
    return '<h3>Findings</h3>\n<ul class="findings">' + "".join(items) + "</ul>\n"


def _error_html(record: dict[str, Any]) -> str:
    error = record.get("error")
    error = error if isinstance(error, dict) else {}
    kind = error.get("type")
    message = error.get("message")
    details = []
    code = error.get("error_code")
    if isinstance(code, int) and not isinstance(code, bool):
        details.append(f"error code {code}")
    status = error.get("status_code")
    if isinstance(status, int) and not isinstance(status, bool):
        details.append(f"HTTP status {status}")
    return (
        '<div class="error"><h3>Failed: '
        f"<code>{_esc(kind if isinstance(kind, str) else 'unknown')}</code></h3>"
        + (f"<p>{_esc(message)}</p>" if isinstance(message, str) and message else "")
        + (f"<p>{', '.join(details)}</p>" if details else "")
        + "</div>\n"
    )


def page(results: Results, options: ReportOptions | None = None) -> Iterator[bytes]:
    """The page of ``results``, a piece at a time (UTF-8).

    Raises:
        ReportReadError: a batch output could not be read along the way.
    """
    for piece in _Page(results, options or ReportOptions()).pieces():
        yield piece.encode("utf-8")


# -- the command ---------------------------------------------------------------------------------


def add_report_parser(sub: Any) -> None:
    """Add ``report`` to the command's subparsers."""
    r = sub.add_parser(
        "report",
        help="write one self-contained HTML page of batch results, for people to review",
        description="Write one HTML page of batch outputs (shards, reruns: the record that "
        "counts per input): a summary, then each input with its card images, fields and "
        "confidences, findings and verdict, review first. The page needs nothing outside "
        "itself (it opens offline) and holds personal data: it is created mode 0600.",
    )
    r.add_argument("parts", nargs="+", metavar="RESULTS", help="JSONL outputs of cvekyc batch")
    r.add_argument("-o", "--output", required=True, help="the HTML page to write (mode 0600)")
    r.add_argument(
        "--no-images",
        dest="images",
        action="store_false",
        help="text only: no card images in the page",
    )
    r.add_argument(
        "--image-size",
        type=_image_size,
        default=DEFAULT_IMAGE_SIZE,
        metavar="PX",
        help=f"longest side of each image (default {DEFAULT_IMAGE_SIZE})",
    )
    r.add_argument(
        "--low-confidence",
        type=_threshold,
        default=DEFAULT_LOW_CONFIDENCE,
        metavar="X",
        help=f"mark confidences below X, from 0 to 1 (default {DEFAULT_LOW_CONFIDENCE:g})",
    )


def _image_size(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 32 <= int(text) <= 4096:
        raise argparse.ArgumentTypeError(f"must be from 32 to 4096 pixels, not {text!r}")
    return int(text)


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text!r}")
    return value


def _check_output(output: Path, parts: Sequence[Path]) -> None:
    """Refuse an output that is one of the parts, a symlink, not a regular file, or a file
    that holds something other than a page of this command."""
    try:
        info = os.lstat(output)
    except OSError:
        return  # nothing there, or nothing that can be reached: writing says why
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"{output} is a symlink (not followed): write to another file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{output} is not a regular file: write to another file")
    part = named_among(info, parts)
    if part is not None:
        raise UsageError(f"-o {output} is also a batch output ({part}): write elsewhere")
    if info.st_size:
        try:
            with output.open("rb") as fh:
                head = fh.read(2048)
        except OSError as exc:
            raise UsageError(f"cannot read {output}: {exc.strerror or exc}") from None
        if _GENERATOR.encode() not in head:
            raise UsageError(
                f"{output} holds something other than a cvekyc report: write to another file, "
                "or remove it first"
            )


def run_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    parts = batch_outputs(args.parts)
    output = Path(args.output)
    if args.output == "-":
        raise UsageError("the report goes to a file (-o report.html), created mode 0600")
    _check_output(output, parts)
    try:
        results = Results(parts)
    except NotRecordsError as exc:
        raise UsageError(f"{exc}: give the JSONL outputs of cvekyc batch") from None
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
    options = ReportOptions(
        images=args.images, image_size=args.image_size, low_confidence=args.low_confidence
    )
    if options.images and not _has_pillow():
        err.write(
            f"cvekyc report: {_NO_PILLOW.removeprefix('no image: ')}: the page has no images\n"
        )

    def check(fd: int) -> None:
        # Checked again on the locked file: what is there now is what is replaced.
        if os.fstat(fd).st_size and _GENERATOR.encode() not in os.pread(fd, 2048, 0):
            raise UsageError(
                f"{output} holds something other than a cvekyc report: write to another file, "
                "or remove it first"
            )

    try:
        with terminate_as_interrupt(), replacing_output(output, check) as fh:
            for piece in page(results, options):
                fh.write(piece)
    except LockedError:
        raise UsageError(f"{output} is being written by another cvekyc command") from None
    except NotRegularError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    except ReportReadError as exc:
        raise UsageError(f"{exc}; {output} is left as it was") from None
    except OSError as exc:
        reason = exc.strerror or exc
        err.write(f"cvekyc report: cannot write {output}: {reason}; it is left as it was\n")
        return EXIT_WRITE
    size = output.stat().st_size
    out.write(
        f"report of {len(results)} inputs ({results.ok} ok) written to {output} "
        f"({_megabytes(size)})\n"
    )
    return EXIT_OK


def _has_pillow() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.0f} KiB"
