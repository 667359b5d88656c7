"""``cvekyc demo``: read the bundled specimens through a local emulator."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from .._batch import BatchResult
from .._models import ExtractionResult
from .options import EXIT_OK
from .progress import ProgressDisplay
from .summary import outcome, write_summary

__all__ = ["run_demo"]


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
    from ..emulator import run_emulator, specimens

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
    outcomes = Counter(outcome(r) for r in done)
    write_summary(out, outcomes, usage=usage, wall=wall, verdicts=verdicts)
    return EXIT_OK
