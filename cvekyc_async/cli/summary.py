"""The end-of-run figures of a batch or the demo."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from .._batch import BatchResult
from .._usage import Usage
from ..checks import Assessment
from .progress import format_duration

__all__ = ["assess", "outcome", "wall_time", "write_summary"]


def write_summary(
    out: TextIO,
    results: Counter[str],
    *,
    usage: Usage,
    wall: float,
    verdicts: Counter[str],
    plan: Counter[str] | None = None,
    not_started: int = 0,
    output: str | None = None,
    left_out: str | None = None,
    list_hint: bool = True,
    prepared: Counter[str] | None = None,
) -> None:
    """Write the end-of-run figures as a table: inputs by outcome, billed, time, verdicts,
    what was skipped or sent again and why, what a stop left unsent, the files of scanned
    folders that are no inputs, and the output."""
    ok = results.pop("ok", 0)
    failed = sum(results.values())
    done = ok + failed
    rows = [("finished", f"{done}"), ("ok", f"{ok}"), ("failed", f"{failed}")]
    rows += [(f"  {name}", f"{n}") for name, n in results.most_common()]
    rows += [
        ("billed", f"{usage.billed}"),
        ("retries", f"{usage.retries} ({usage.ambiguous_retries} possibly billed twice)"),
        ("wall time", f"{wall_time(wall)} ({done / wall if wall > 0 else 0:.0f}/s)"),
    ]
    shown = ", ".join(f"{v} {verdicts[v]}" for v in ("accept", "review", "reject"))
    rows.append(("verdicts", shown))
    for reason, n in sorted((plan or Counter()).items()):
        rows.append((reason, f"{n}"))
    if not_started:
        rows.append(("not started", f"{not_started} (the run stopped first; --resume sends them)"))
    if left_out is not None:
        hint = "; --list-left-out names them" if list_hint else ""
        rows.append(("left out", f"{left_out}{hint}"))
    if prepared is not None:
        did = ", ".join(
            f"{prepared[what]} {what}" for what in ("converted", "rotated", "downscaled")
        )
        rows.append(("prepared", f"{prepared['re-encoded']} images re-encoded ({did})"))
    if output is not None:
        rows.append(("records in", output))
    width = max(len(k) for k, _ in rows)
    out.write("batch summary\n")
    for key, value in rows:
        out.write(f"  {key:<{width}}  {value}\n")


def assess(result: BatchResult) -> Assessment | None:
    return result.result.assess() if result.result is not None else None


def wall_time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 60 else format_duration(seconds)


def outcome(result: BatchResult) -> str:
    return "ok" if result.error is None else type(result.error).__name__
