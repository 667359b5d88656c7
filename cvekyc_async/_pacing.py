"""A client-side limit on requests started per second."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Pacer"]


class Pacer:
    """Spaces request starts at least ``1 / per_second`` seconds apart.

    Each caller reserves the next free start time and sleeps until it; a caller cancelled while
    waiting leaves its slot unused, which only makes the pace slower, never faster.

    Args:
        per_second: most starts per second.
        clock: the time source (tests pass a fake one).
        sleep: how to wait (tests pass a fake one).
    """

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self._next = float("-inf")
        self._clock = clock
        self._sleep = sleep

    async def wait(self) -> None:
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await self._sleep(start - now)
