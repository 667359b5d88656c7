"""A caller's synchronous ``httpx.Client``, given to ``CVClient``, driven from the client's loop.

``CVClient`` runs an event loop of its own; a synchronous client's calls block, so each step
(sending, reading a piece of the answer, closing) runs in a worker thread of that loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import httpx

__all__ = ["ThreadedClient"]


class _ThreadedBody(httpx.AsyncByteStream):
    """A synchronous answer's body, read piece by piece in worker threads."""

    __slots__ = ("_chunks", "_response")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: Iterator[bytes] = response.iter_raw()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await anyio.to_thread.run_sync(next, self._chunks, None)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._response.close)


class ThreadedClient:
    """A caller's synchronous ``httpx.Client`` (given to ``CVClient``), sent through from worker
    threads of the client's loop: its pool, proxies, TLS settings, mounts and event hooks all
    apply. A thread cannot be interrupted, so a cancelled call waits for the step in progress,
    which the client's timeouts bound."""

    __slots__ = ("_client",)

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    async def send(self, request: httpx.Request) -> httpx.Response:
        response = await anyio.to_thread.run_sync(lambda: self._client.send(request, stream=True))
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_ThreadedBody(response),
            request=request,
            extensions=response.extensions,
        )
