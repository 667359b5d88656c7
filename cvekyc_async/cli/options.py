"""What every command shares: exit statuses, the service options, and the client they build."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._adaptive import AdaptiveConcurrency
from .._client import AsyncCVClient
from .._constants import DEFAULT_MAX_CONCURRENCY, ENV_API_KEY, ENV_API_SECRET
from .._errors import ConfigurationError
from .._prepare import DEFAULT_MAX_SIDE, Prepare
from .joblog import (
    cli_words,
)

__all__ = [
    "DEFAULT_MIN_FREE_SPACE",
    "DEFAULT_STOP_GRACE",
    "DEFAULT_TOTAL_TIMEOUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WRITE",
    "Terminated",
    "UsageError",
    "add_client_options",
    "batch_outputs",
    "make_client",
    "parse_concurrency",
    "parse_seconds",
    "parse_size",
    "terminate_as_interrupt",
]


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: the command exits 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the block as Ctrl-C does, so that what it was writing is cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- shared options ------------------------------------------------------------------------------


def add_client_options(p: argparse.ArgumentParser, *, batch: bool) -> None:
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
        "--timeout", type=parse_seconds, help="read timeout in seconds, for each read (default 60)"
    )
    g.add_argument(
        "--total-timeout",
        type=parse_seconds,
        default=DEFAULT_TOTAL_TIMEOUT,
        metavar="SECONDS",
        help="most time one input may take, every retry included "
        f"(default {DEFAULT_TOTAL_TIMEOUT:g})",
    )
    g.add_argument("--max-retries", type=int, help="retries of transient failures (default 2)")
    g.add_argument(
        "--max-file-size",
        type=parse_size,
        metavar="SIZE",
        help="largest upload, e.g. 20M (default 10M)",
    )
    g.add_argument(
        "--max-response-size",
        type=parse_size,
        metavar="SIZE",
        help="largest answer read, e.g. 64M (default 32M)",
    )
    g = p.add_argument_group("images")
    g.add_argument(
        "--prepare",
        action="store_true",
        help="prepare images before sending: HEIC and AVIF photos converted to JPEG, turned "
        "upright by their EXIF orientation, downscaled to --max-side and under --max-file-size "
        "(needs the images extra: pip install 'cvekyc-async[images]')",
    )
    g.add_argument(
        "--max-side",
        type=int,
        metavar="PX",
        help=f"with --prepare, the long side images are downscaled to (default {DEFAULT_MAX_SIDE})",
    )
    if batch:
        g.add_argument(
            "--concurrency",
            type=parse_concurrency,
            default=DEFAULT_MAX_CONCURRENCY,
            metavar="N|auto",
            help=f"requests in flight (default {DEFAULT_MAX_CONCURRENCY}); auto (or auto:N, "
            "at most N, default 64) finds the level the service takes",
        )
        g.add_argument(
            "--max-per-second", type=parse_seconds, help="most requests started per second"
        )
        g.add_argument(
            "--stop-grace",
            type=parse_seconds,
            default=DEFAULT_STOP_GRACE,
            metavar="SECONDS",
            help="after the first Ctrl-C, how long the answers in flight may take before they "
            f"are cancelled and left for --resume (default {DEFAULT_STOP_GRACE:g})",
        )


def make_client(args: argparse.Namespace, err: TextIO) -> AsyncCVClient:
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
    kwargs["prepare"] = prepare_of(args)
    try:
        return AsyncCVClient(args.api_key, secret, **kwargs)
    except ConfigurationError as exc:
        raise UsageError(cli_words(exc.message)) from None


def prepare_of(args: argparse.Namespace) -> Prepare | None:
    """What ``--prepare`` and ``--max-side`` ask for (``None``: send inputs as given)."""
    max_side = getattr(args, "max_side", None)
    if not getattr(args, "prepare", False):
        if max_side is not None:
            raise UsageError("--max-side takes effect with --prepare: add --prepare")
        return None
    try:
        return Prepare() if max_side is None else Prepare(max_side=max_side)
    except ConfigurationError as exc:
        raise UsageError(exc.message.replace("Prepare(max_side=...)", "--max-side")) from None


def parse_size(text: str) -> int:
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


def parse_concurrency(text: str) -> int | AdaptiveConcurrency:
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


def parse_seconds(text: str) -> float:
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


def batch_outputs(names: Sequence[str]) -> list[Path]:
    """The batch outputs a command reads, each checked to be an existing regular file."""
    parts = [Path(name) for name in names]
    for part in parts:
        if not part.exists():
            raise UsageError(f"{part}: no such file")
        if not part.is_file():
            raise UsageError(f"{part}: not a regular file (give the JSONL outputs of batches)")
    return parts
