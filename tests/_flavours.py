"""Run the same behaviour tables through ``AsyncCVClient`` and ``CVClient``.

A test module that builds its clients through ``flavoured(...)`` and requests the ``flavour``
fixture runs once per client: the synchronous one is driven from the async test through worker
threads (as a web app's thread pool would call it), with the same awaits, so one table of cases
checks both.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread

from cvekyc_async import AsyncCVClient, CVClient

FLAVOURS = ("async", "sync")


class SyncDriven:
    """A ``CVClient`` with the awaitable surface of ``AsyncCVClient``."""

    def __init__(self, client: CVClient) -> None:
        self.sync = client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.sync, name)
        if isinstance(value, CVClient):
            return SyncDriven(value)
        if name in {"with_options"}:
            return lambda **kw: SyncDriven(value(**kw))
        if name == "with_raw_response":
            return _Threaded(value)
        if callable(value):
            return _in_thread(value)
        return value

    def __repr__(self) -> str:
        return repr(self.sync)

    async def __aenter__(self) -> SyncDriven:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.sync.close)

    @asynccontextmanager
    async def extract_as_completed(self, inputs: Any, **kwargs: Any) -> AsyncIterator[Any]:
        results = await anyio.to_thread.run_sync(
            functools.partial(self.sync.extract_as_completed, inputs, **kwargs)
        )
        try:
            yield _Drain(results)
        finally:
            await anyio.to_thread.run_sync(results.close)


class _Threaded:
    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return _in_thread(getattr(self._target, name))


class _Drain:
    def __init__(self, results: Iterator[Any]) -> None:
        self._results = results

    def __aiter__(self) -> _Drain:
        return self

    async def __anext__(self) -> Any:
        more, item = await anyio.to_thread.run_sync(_next, self._results)
        if not more:
            raise StopAsyncIteration
        return item


def _next(results: Iterator[Any]) -> tuple[bool, Any]:
    try:
        return True, next(results)
    except StopIteration:
        return False, None


def _in_thread(func: Any) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))

    return call


def flavoured(flavour: str, *args: Any, **kwargs: Any) -> Any:
    """An ``AsyncCVClient``, or a ``CVClient`` driven through worker threads."""
    if flavour == "sync":
        return SyncDriven(CVClient(*args, **kwargs))
    return AsyncCVClient(*args, **kwargs)
