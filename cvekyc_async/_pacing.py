"""A client-side limit on requests started per second."""

from __future__ import annotations

import anyio

__all__ = ["Pacer"]


class Pacer:
    """Spaces request starts at least ``1 / per_second`` seconds apart.

    Each caller reserves the next free start time and sleeps until it; a caller cancelled while
    waiting leaves its slot unused, which only makes the pace slower, never faster.
    """

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await anyio.sleep(start - now)
