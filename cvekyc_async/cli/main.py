"""The ``cvekyc`` command: extract one card, run a batch, serve the emulator, run the demo.

Exit status: 0 when everything was read, 1 when some input failed, 2 for a usage error (bad
arguments, unreadable manifest, missing credentials, an output another batch is writing), 3 when
the output could not be written, 128 + the signal's number when stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from .. import __version__
from .._runner import run as run_loop
from .batch import run_batch
from .demo import run_demo
from .export import add_export_parser, run_export
from .extract import run_extract
from .jobs import (
    DELIMITERS,
    ManifestError,
)
from .merge import run_merge
from .options import (
    DEFAULT_MIN_FREE_SPACE,
    EXIT_USAGE,
    EXIT_WRITE,
    Terminated,
    UsageError,
    add_client_options,
    parse_size,
    terminate_as_interrupt,
)
from .report import add_report_parser, run_report

__all__ = ["build_parser", "main"]


def parse_delimiter(text: str) -> str:
    """A CSV manifest's delimiter: ``,``, ``;`` or a tab (``tab`` or ``\\t`` also name it)."""
    delimiter = {"tab": "\t", "\\t": "\t"}.get(text.lower(), text)
    if delimiter not in DELIMITERS:
        raise argparse.ArgumentTypeError(f"a delimiter is , ; or tab, not {text!r}")
    return delimiter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvekyc",
        description="Read Vietnamese ID cards and passports with the Computer Vision eKYC API.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser("extract", help="read one card (or both sides of one) and print it")
    ex.add_argument("image", help="image or PDF path, or an http(s) URL")
    ex.add_argument("back", nargs="?", help="the back side (implies --endpoint cards)")
    ex.add_argument("--endpoint", choices=["card", "cards", "ocr"], help="default: card")
    ex.add_argument("--thumb", type=Path, metavar="DIR", help="save cropped card images here")
    ex.add_argument("--json", action="store_true", help="print the answer as JSON")
    add_client_options(ex, batch=False)

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
    b.add_argument(
        "--endpoint",
        choices=["card", "cards", "ocr"],
        default="card",
        help="card: one side per input (default); cards: front and back pairs; ocr: every "
        "document in an image or PDF",
    )
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
        "--pairs",
        metavar="auto|REGEX",
        help="with --endpoint cards, pair the files of folders as fronts and backs by name: "
        "auto reads _front/_back, _truoc/_sau, _mt/_ms, _1/_2 at the end of the name; or a "
        "regular expression with the groups (?P<key>...) and (?P<side>...)",
    )
    b.add_argument(
        "--list-left-out",
        action="store_true",
        help="after the summary, name each file of the scanned folders that is no input, "
        "and what it is",
    )
    b.add_argument(
        "--delimiter",
        type=parse_delimiter,
        help="the delimiter of CSV manifests: , ; or tab (default: found from the file)",
    )
    b.add_argument(
        "--allow-outside",
        action="store_true",
        help="let manifests name files outside their own folder (../, absolute paths, ~)",
    )
    b.add_argument(
        "--min-free-space",
        type=parse_size,
        default=DEFAULT_MIN_FREE_SPACE,
        metavar="SIZE",
        help="refuse to start when OUTPUT's disk has less free space (default 64M)",
    )
    b.add_argument(
        "--thumbnails",
        type=Path,
        metavar="DIR",
        help="ask for the service's crop of each card and save it in DIR (mode 0700), for "
        "cvekyc report; the records name the files",
    )
    b.add_argument(
        "--summary-json",
        metavar="PATH",
        help="write the run's figures (counts by outcome, error class and verdict, billed, "
        "time, the resume command) as JSON to PATH, or - for standard output",
    )
    b.add_argument(
        "--shard",
        metavar="K/N",
        help="only the K-th of N stable parts (1 <= K <= N), or auto from a Kubernetes Indexed "
        "Job, a Slurm array or an AWS Batch array",
    )
    add_client_options(b, batch=True)

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
    m.add_argument(
        "--endpoint",
        choices=["card", "cards", "ocr"],
        default="card",
        help="the endpoint the parts were run with, to read --inputs as they were (default card)",
    )
    m.add_argument(
        "--delimiter",
        type=parse_delimiter,
        help="the delimiter of CSV manifests given to --inputs (default: found from the file)",
    )
    m.add_argument(
        "--allow-outside",
        action="store_true",
        help="let manifests given to --inputs name files outside their own folder",
    )

    add_export_parser(sub)
    add_report_parser(sub)

    demo = sub.add_parser(
        "demo", help="read the bundled specimens through a local emulator (no account needed)"
    )
    demo.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")

    sub.add_parser("emulator", help="serve the local API emulator", add_help=False).add_argument(
        "args", nargs=argparse.REMAINDER, help="the emulator's own options (see cvekyc emulator -h)"
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
    # Pillow warns of damaged EXIF while preparing an image; the record says what matters.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    out, err = sys.stdout, cast(TextIO, _BestEffort(sys.stderr))
    if argv[:1] == ["emulator"]:
        # Its options belong to the emulator's own parser.
        try:
            _needs_emulator()
        except UsageError as exc:
            err.write(f"cvekyc emulator: {exc}\n")
            return EXIT_USAGE
        from ..emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:], prog="cvekyc emulator")
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command in ("merge", "export", "report"):
            # SIGTERM stops them as Ctrl-C does, reading or writing: what they were writing
            # is removed, and they exit 143.
            run = {"merge": run_merge, "export": run_export, "report": run_report}[args.command]
            with terminate_as_interrupt():
                return run(args, out, err)
        if args.command == "demo":
            _needs_emulator()
            if args.concurrency < 1:
                raise UsageError("--concurrency must be at least 1")
            return run_loop(functools.partial(run_demo, out, err, concurrency=args.concurrency))
        command = run_extract if args.command == "extract" else run_batch
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
    except KeyboardInterrupt as exc:
        err.write("cvekyc: interrupted\n")
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
