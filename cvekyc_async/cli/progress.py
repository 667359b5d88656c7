"""Progress display for the command line: a live bar on a terminal (rich, redrawn on a timer,
fit to the width, with a smoothed rate and ETA), plain lines elsewhere."""

from __future__ import annotations

import time
from typing import Any, TextIO

from .._batch import BatchProgress

__all__ = ["ProgressDisplay", "format_duration"]

_BAR = 24


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` style, for ETAs and wall times."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressDisplay:
    """Shows a batch's progress on ``stream``.

    On a terminal: one line redrawn in place at most ten times a second, with a bar, the count,
    the rate, the ETA, failures and billed answers. Elsewhere (a pipe, a log file, CI): the same
    figures as a plain line every ``interval`` seconds, so logs stay readable.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int | None,
        tty: bool | None = None,
        interval: float = 5.0,
        offset: int = 0,
    ) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty() if tty is None else tty
        self.interval = 0.1 if self.tty else interval
        self.offset = offset  # inputs done in an earlier run (--resume), shown in the count
        self._last = float("-inf")
        self._latest: BatchProgress | None = None
        self._rich: Any = None
        if self.tty:
            self._rich = _rich_progress(stream, total, offset)

    def _line(self, p: BatchProgress) -> str:
        done = p.done + self.offset
        rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
        parts = []
        if self.total:
            share = min(1.0, done / self.total)
            if self.tty:
                filled = int(share * _BAR)
                parts.append("[" + "#" * filled + "." * (_BAR - filled) + "]")
            parts.append(f"{done}/{self.total} {share:4.0%}")
            left = self.total - done
            eta = format_duration(left / rate) if rate > 0 else "?"
            parts.append(f"{rate:.0f}/s ETA {eta}")
        else:
            parts.append(f"{done} done, {rate:.0f}/s")
        parts.append(f"failed {p.failed}")
        parts.append(f"billed {p.billed}")
        if p.concurrency:
            parts.append(f"in flight <= {p.concurrency}")
        return "  ".join(parts)

    def update(self, progress: BatchProgress) -> None:
        """Take the latest figures; draw them if enough time has passed."""
        self._latest = progress
        if self._rich is not None:
            bar, task = self._rich
            bar.update(
                task,
                completed=progress.done + self.offset,
                failed=progress.failed,
                billed=progress.billed,
                concurrency=progress.concurrency,
            )
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(progress)

    def _draw(self, progress: BatchProgress) -> None:
        line = self._line(progress)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final figures and end the line."""
        if self._rich is not None:
            self._rich[0].stop()
            self._rich = None
            return
        if self._latest is not None:
            self._draw(self._latest)
        if self.tty and self._latest is not None:
            self.stream.write("\n")
            self.stream.flush()


def _rich_progress(stream: TextIO, total: int | None, offset: int) -> tuple[Any, Any] | None:
    """A started rich progress bar on ``stream``, or ``None`` without rich (the ``cli`` extra):
    the display then draws its own line."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text
    except ImportError:
        return None

    class Rate(ProgressColumn):  # inputs per second, smoothed over the last seconds
        def render(self, task: Task) -> Text:
            return Text("?/s" if task.speed is None else f"{task.speed:.0f}/s")

    bar = Progress(
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn(
            "failed {task.fields[failed]}  billed {task.fields[billed]}"
            "  in flight <= {task.fields[concurrency]}"
        ),
        console=Console(file=stream, force_terminal=True),
        refresh_per_second=8,
        speed_estimate_period=10.0,
    )
    task = bar.add_task("batch", total=total, completed=offset, failed=0, billed=0, concurrency="?")
    bar.start()
    return bar, task
