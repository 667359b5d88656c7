"""A caller's synchronous ``httpx.Client``, given to ``CVClient``, driven from the client's loop.

``CVClient`` runs an event loop of its own; a synchronous client's calls block, so each step
(sending, reading a piece of the answer) runs in a worker thread of that loop. A thread cannot
be interrupted: a call cancelled (``total_timeout``, ``close()``, Ctrl-C) lets go of it at once,
and the thread, once its step is done, closes the answer itself. So deadlines hold and the
concurrency slot is freed at once, while the abandoned step ends within the client's timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
import httpx

__all__ = ["ThreadedClient"]

_T = TypeVar("_T")


class _Abandonable:
    """One answer's steps in worker threads, and whether the call has let go of them."""

    __slots__ = ("_lock", "abandoned", "response")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.abandoned = False
        self.response: httpx.Response | None = None

    async def run(self, step: Callable[[], _T]) -> _T:
        def work() -> _T:
            outcome = step()
            with self._lock:
                if self.abandoned and self.response is not None:
                    self.response.close()  # nobody will read or close it now
            return outcome

        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except BaseException:
            with self._lock:
                self.abandoned = True
            raise

    def close_if_abandoned(self) -> None:
        with self._lock:
            if self.abandoned and self.response is not None:
                self.response.close()


class _ThreadedBody(httpx.AsyncByteStream):
    """A synchronous answer's body, read piece by piece in worker threads."""

    __slots__ = ("_chunks", "_steps")

    def __init__(self, steps: _Abandonable, response: httpx.Response) -> None:
        self._steps = steps
        self._chunks = response.iter_raw()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._steps.run(lambda: next(self._chunks, None))
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        steps = self._steps
        response = steps.response
        if response is not None:
            with anyio.CancelScope(shield=True):
                await steps.run(response.close)


class ThreadedClient:
    """A caller's synchronous ``httpx.Client`` (given to ``CVClient``), sent through from worker
    threads of the client's loop: its pool, proxies, TLS settings, mounts and event hooks all
    apply."""

    __slots__ = ("_client",)

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    async def send(self, request: httpx.Request) -> httpx.Response:
        steps = _Abandonable()

        def sending() -> httpx.Response:
            response = self._client.send(request, stream=True)
            steps.response = response
            return response

        try:
            response = await steps.run(sending)
        finally:
            steps.close_if_abandoned()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_ThreadedBody(steps, response),
            request=request,
            extensions=response.extensions,
        )
