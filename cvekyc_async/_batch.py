"""Many extractions at once: ``extract_many`` and ``extract_as_completed``.

Inputs are pulled lazily by a fixed set of worker tasks, and results go through a memory object
stream whose buffer is as large as the concurrency. A slow consumer therefore stops the workers,
the workers stop pulling, and memory stays bounded by the concurrency whatever the batch size.
Every input pulled ends as exactly one ``BatchResult``: a result, or the error that ended it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sized
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Union

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

if sys.version_info < (3, 11):  # pragma: no cover - anyio installs the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

from ._errors import (
    AuthenticationError,
    CVError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
)
from ._inputs import describe_input
from ._models import ExtractionResult

if TYPE_CHECKING:
    from ._client import AsyncCVClient

__all__ = [
    "DEFAULT_FATAL_ERRORS",
    "BatchInputs",
    "BatchProgress",
    "BatchResult",
    "Endpoint",
    "ProgressCallback",
    "check_batch_options",
    "extract_as_completed",
    "single_error",
]

Endpoint = Literal["card", "cards", "ocr"]
BatchInputs = Union[Iterable[Any], AsyncIterable[Any]]  # noqa: UP007 - a runtime alias on 3.10
"""Any iterable or async iterable of inputs; for ``endpoint="cards"`` each input is a
``(front, back)`` pair."""

#: Errors after which no further request of the batch can succeed.
DEFAULT_FATAL_ERRORS: tuple[type[CVError], ...] = (
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    QuotaExceededError,
)


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class BatchResult:
    """How one input of a batch ended.

    Attributes:
        index: the input's position in the batch, from 0.
        input: the input as given.
        result: the answer, when the call succeeded.
        error: the error that ended it, otherwise (bad input, an API error code, exhausted
            retries, or the batch's fatal error when it was never sent: that error's
            ``request_id`` is then the id of the call that met it, and ``attempts`` here is 0).
        attempts: HTTP attempts made for it (0 when it was never sent).
        elapsed: seconds spent on it.
    """

    index: int
    input: Any
    result: ExtractionResult | None = None
    error: CVError | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the input was read."""
        return self.error is None

    def __repr__(self) -> str:
        # The input by its path, URL (no query) or size: bytes given as input are an image.
        return (
            f"BatchResult(index={self.index}, input={describe_input(self.input)}, "
            f"result={self.result!r}, error={self.error!r}, attempts={self.attempts}, "
            f"elapsed={self.elapsed!r})"
        )

    @property
    def billed(self) -> bool:
        """Whether the service billed the answer."""
        return self.result is not None and self.result.billed


@dataclasses.dataclass(frozen=True, slots=True)
class BatchProgress:
    """A batch's progress, passed to the ``progress`` callback after each input ends.

    Attributes:
        done: inputs ended so far (read or failed).
        failed: those that ended with an error.
        billed: answers the service billed.
        total: the number of inputs when it is known (a sized collection), else ``None``.
        elapsed: seconds since the batch started.
        concurrency: HTTP requests the client may have in flight now (with
            ``max_concurrency="auto"``, the level it has found so far).
    """

    done: int
    failed: int
    billed: int
    total: int | None
    elapsed: float
    concurrency: int = 0


ProgressCallback = Callable[[BatchProgress], None]


class _Source:
    """Hands out inputs one at a time, with their index, to whichever worker asks."""

    def __init__(self, inputs: BatchInputs) -> None:
        self._lock = anyio.Lock()
        self._next_index = 0
        if isinstance(inputs, AsyncIterable):
            self._aiter: AsyncIterator[Any] | None = aiter(inputs)
            self._iter = None
        else:
            self._aiter = None
            self._iter = iter(inputs)

    async def pull(self) -> tuple[int, Any] | None:
        if self._iter is not None:
            # A plain iterator is advanced without awaiting anything: no other task can come
            # between, so it needs no lock (nor the two checkpoints a lock costs).
            try:
                item = next(self._iter)
            except StopIteration:
                return None
        else:
            async with self._lock:  # an async generator cannot be advanced by two tasks at once
                assert self._aiter is not None
                try:
                    item = await anext(self._aiter)
                except StopAsyncIteration:
                    return None
        index = self._next_index
        self._next_index += 1
        return index, item


class _Run:
    """The shared state of one batch."""

    def __init__(
        self,
        client: AsyncCVClient,
        endpoint: Endpoint,
        get_thumb: bool,
        total: int | None,
        progress: ProgressCallback | None,
        fatal_errors: tuple[type[CVError], ...],
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.get_thumb = get_thumb
        self.total = total
        self.progress = progress
        self.fatal_errors = fatal_errors
        self.fatal: CVError | None = None
        self.started = time.perf_counter()
        self.done = self.failed = self.billed = 0

    async def one(self, index: int, item: Any) -> BatchResult:
        if self.fatal is not None:
            return BatchResult(index, item, error=self.fatal)
        started = time.perf_counter()
        try:
            result = await self._call(item)
        except CVError as exc:
            if isinstance(exc, self.fatal_errors) and self.fatal is None:
                self.fatal = exc
            return BatchResult(
                index, item, error=exc, attempts=exc.attempts, elapsed=time.perf_counter() - started
            )
        except Exception as exc:
            # Nothing one input does may end the batch: the rest still runs, and this input ends
            # as an error naming what happened (not its text, which may quote the input).
            error = CVError(f"unexpected {type(exc).__name__} while reading this input")
            error.__cause__ = exc
            return BatchResult(index, item, error=error, elapsed=time.perf_counter() - started)
        return BatchResult(
            index, item, result=result, attempts=result.attempts, elapsed=result.elapsed
        )

    async def _call(self, item: Any) -> ExtractionResult:
        client = self.client
        if self.endpoint == "cards":
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise InvalidInputError(
                    f"endpoint='cards' takes (front, back) pairs, not {type(item).__name__}"
                )
            return await client.extract_cards(item[0], item[1], get_thumb=self.get_thumb)
        if self.endpoint == "ocr":
            return await client.ocr_card(item, get_thumb=self.get_thumb)
        return await client.extract_card(item, get_thumb=self.get_thumb)

    def record(self, result: BatchResult) -> None:
        self.done += 1
        self.failed += not result.ok
        self.billed += result.billed
        if self.progress is not None:
            self.progress(
                BatchProgress(
                    done=self.done,
                    failed=self.failed,
                    billed=self.billed,
                    total=self.total,
                    elapsed=time.perf_counter() - self.started,
                    concurrency=self.client.concurrency,
                )
            )


async def _worker(run: _Run, source: _Source, send: MemoryObjectSendStream[BatchResult]) -> None:
    async with send:
        while (pulled := await source.pull()) is not None:
            result = await run.one(*pulled)
            run.record(result)
            try:
                if result.attempts == 0:
                    # Nothing was sent (an input refused at once, or one skipped after a fatal
                    # error), so this worker may not have yielded at all: send() does, first,
                    # and thousands of such inputs cannot hold the event loop.
                    await send.send(result)
                else:
                    # Handed over at once while the buffer has room: the call has awaited its
                    # answer already, and send() would yield once more for each input.
                    try:
                        send.send_nowait(result)
                    except anyio.WouldBlock:
                        await send.send(result)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the consumer closed the results: the batch is over


async def _produce(
    run: _Run, source: _Source, workers: int, send: MemoryObjectSendStream[BatchResult]
) -> None:
    async with send, anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(_worker, run, source, send.clone())


def check_batch_options(
    inputs: object, endpoint: object, concurrency: object, fatal_errors: object
) -> None:
    """Raise ``InvalidInputError`` for a bad batch option, before anything starts."""
    _check_options(endpoint, concurrency, fatal_errors)
    if not isinstance(inputs, (Iterable, AsyncIterable)) or isinstance(inputs, (str, bytes)):
        raise InvalidInputError(
            "inputs must be an iterable or async iterable of images (a list of paths, a "
            f"generator...), not {type(inputs).__name__}"
        )


def _check_options(endpoint: object, concurrency: object, fatal_errors: object) -> None:
    if endpoint not in ("card", "cards", "ocr"):
        raise InvalidInputError(f"endpoint must be 'card', 'cards' or 'ocr', not {endpoint!r}")
    if concurrency is not None and (
        not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1
    ):
        raise InvalidInputError(f"concurrency must be an integer >= 1, not {concurrency!r}")
    if not isinstance(fatal_errors, tuple) or not all(
        isinstance(e, type) and issubclass(e, CVError) for e in fatal_errors
    ):
        raise InvalidInputError("fatal_errors must be a tuple of CVError subclasses")


@asynccontextmanager
async def extract_as_completed(
    client: AsyncCVClient,
    inputs: BatchInputs,
    *,
    endpoint: Endpoint = "card",
    get_thumb: bool = False,
    concurrency: int | None = None,
    progress: ProgressCallback | None = None,
    fatal_errors: tuple[type[CVError], ...] = DEFAULT_FATAL_ERRORS,
) -> AsyncIterator[MemoryObjectReceiveStream[BatchResult]]:
    """Run a batch and yield its results as they complete (see ``AsyncCVClient``)."""
    check_batch_options(inputs, endpoint, concurrency, fatal_errors)
    workers = concurrency or client.max_concurrency
    total = len(inputs) if isinstance(inputs, Sized) else None
    run = _Run(client, endpoint, get_thumb, total, progress, fatal_errors)
    send, receive = anyio.create_memory_object_stream[BatchResult](max_buffer_size=workers)
    try:
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(_produce, run, _Source(inputs), workers, send)
            try:
                yield receive
            finally:
                # Leaving early (break, an exception, cancellation) stops the batch promptly.
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # An exception of the caller's own (its inputs, its progress callback, the body of its
        # ``async with``) arrives as itself, so that ``except TheirError`` catches it.
        raise single_error(group) from None


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a task group's group stands for, else the group itself."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        elif not isinstance(error, anyio.get_cancelled_exc_class()):
            leaves.append(error)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group
