"""The ``cvekyc`` command: run the demo, serve the emulator."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from ._errors import CVError
from ._models import ExtractionResult

__all__ = ["main"]

_SHOWN_FIELDS = ("id", "name", "sur_name", "given_name", "dob", "issue_date", "due_date")


def _needs_emulator() -> None:
    try:
        import PIL  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "cvekyc: this command needs the emulator: pip install 'cvekyc-async[cli]'\n"
        )
        raise SystemExit(2) from None


def _describe(result: ExtractionResult) -> str:
    parts = []
    for card in result.cards:
        fields = [str(card.info.get(f)) for f in _SHOWN_FIELDS if card.info.get(f)]
        flag = "" if card.valid is not False else f" [flagged: {card.invalid_message}]"
        parts.append(f"{card.type}: {', '.join(fields[:4])}{flag}")
    return "; ".join(parts)


async def run_demo(out: TextIO = sys.stdout, *, concurrency: int = 8) -> int:
    """Start the emulator in process, read every bundled specimen, and print what was read."""
    from .emulator import run_emulator, specimens

    paths = sorted(specimens().values())
    outcomes: dict[Path, ExtractionResult | CVError] = {}
    started = time.perf_counter()
    async with run_emulator() as emu, emu.client(max_concurrency=concurrency) as client:
        out.write(f"emulator at {emu.base_url}; reading {len(paths)} specimens\n")

        async def read(path: Path) -> None:
            # PDFs and multi-document photos go to the OCR endpoint, single cards to eKYC.
            multi = path.suffix == ".pdf" or path.stem == "two_sides"
            try:
                call = client.ocr_card if multi else client.extract_card
                outcomes[path] = await call(path)
            except CVError as exc:
                outcomes[path] = exc

        async with anyio.create_task_group() as tg:
            for path in paths:
                tg.start_soon(read, path)
        stats = emu.stats()
    elapsed = time.perf_counter() - started
    width = max(len(p.name) for p in paths)
    for path in paths:
        outcome = outcomes[path]
        if isinstance(outcome, CVError):
            out.write(f"  {path.name:<{width}}  error: {outcome.message}\n")
        else:
            out.write(f"  {path.name:<{width}}  {_describe(outcome)}\n")
    ok = sum(not isinstance(o, CVError) for o in outcomes.values())
    out.write(
        f"{ok} read, {len(paths) - ok} failed, {stats['billed']} billed, "
        f"{stats['requests']} requests in {elapsed:.2f} s\n"
    )
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvekyc", description="Read Vietnamese ID cards and passports with the CV eKYC API."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="read the bundled specimens through a local emulator (no account needed)"
    )
    demo.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    sub.add_parser("emulator", help="serve the local API emulator", add_help=False).add_argument(
        "args", nargs=argparse.REMAINDER
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cvekyc`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        _needs_emulator()
        from .emulator.__main__ import main as emulator_main

        return emulator_main(args.args, prog="cvekyc emulator")
    _needs_emulator()
    if args.concurrency < 1:
        sys.stderr.write("cvekyc demo: --concurrency must be at least 1\n")
        return 2
    return anyio.run(functools.partial(run_demo, sys.stdout, concurrency=args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
