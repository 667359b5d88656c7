"""CVClient: the synchronous client, a facade over ``AsyncCVClient``.

Each ``CVClient`` runs one event loop in a thread of its own and hands every call to it through
anyio's blocking portal, so it shares every line of behaviour (inputs, retries, errors, limits)
with ``AsyncCVClient``. It may be called from any number of threads at once, and from code
that already runs an event loop (a notebook), since its loop is not theirs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx
from anyio.from_thread import BlockingPortal

from ._account import DEFAULT_REQUEST_ID_HEADER
from ._adaptive import AdaptiveConcurrency
from ._batch import (
    DEFAULT_FATAL_ERRORS,
    BatchInputs,
    BatchResult,
    Endpoint,
    ProgressCallback,
    check_batch_options,
)
from ._client import NOT_GIVEN, AsyncCVClient, NotGiven
from ._constants import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
)
from ._errors import ClientStateError, ConfigurationError, CVError
from ._hooks import EventHooks
from ._inputs import ImageInput
from ._models import ExtractionResult
from ._prepare import Prepare
from ._raw import AsyncRawResponses, RawResponse
from ._retry import RetryPolicy
from ._runner import run as run_loop
from ._tls import CertTypes, VerifyTypes
from ._transport import TransportChoice
from ._usage import Usage

__all__ = ["BatchIterator", "CVClient", "RawResponses"]


_LOOPS: weakref.WeakSet[_Loop] = weakref.WeakSet()


def _forget_loops_in_child() -> None:
    # A forked child has none of its parent's threads: its clients are closed, not waited on.
    for loop in list(_LOOPS):
        loop.closed = True
        loop.forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_loops_in_child)


class _Loop:
    """An event loop in a daemon thread, and the portal that runs calls in it."""

    def __init__(self, backend: Literal["asyncio", "trio"]) -> None:
        ready: queue.Queue[BlockingPortal | BaseException] = queue.Queue(maxsize=1)

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.put(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                run_loop(serve, backend=backend)
            except BaseException as exc:
                if ready.empty():
                    ready.put(exc)

        # A daemon thread: a client that is never closed does not keep the interpreter alive
        # (the finalizer below still closes it at exit).
        self.thread = threading.Thread(target=run, name="cvekyc-client-loop", daemon=True)
        self.thread.start()
        started = ready.get()
        if isinstance(started, BaseException):
            raise started
        self.portal = started
        self.closed = False
        self.forked = False
        self.lock = threading.Lock()
        _LOOPS.add(self)


def _shut(loop: _Loop, client: AsyncCVClient) -> None:
    """Close the pool in its loop, then stop the loop, cancelling whatever still runs there
    (calls from other threads, open batches). A finalizer: it holds no ``CVClient``."""
    with loop.lock:
        if loop.closed:
            return
        loop.closed = True
    if loop.forked:
        return
    try:
        with contextlib.suppress(RuntimeError):  # the loop is gone already
            loop.portal.call(client.aclose)
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped (interpreter shutdown)
            loop.portal.call(loop.portal.stop, True)
        if threading.current_thread() is not loop.thread:
            loop.thread.join(timeout=10)


class _Core(AsyncCVClient):
    """The ``AsyncCVClient`` a ``CVClient`` drives: its messages name ``CVClient``, and it sends
    through a caller's ``httpx.Client`` (from worker threads) rather than an AsyncClient."""

    _name = "CVClient"

    def _check_http_client(self, http_client: object) -> None:
        if isinstance(http_client, httpx.Client):
            return
        if isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError(
                "CVClient sends through an httpx.Client, and http_client is an "
                "httpx.AsyncClient: pass http_client=httpx.Client(...), or use AsyncCVClient, "
                "which takes an httpx.AsyncClient"
            )
        raise ConfigurationError(
            f"http_client must be an httpx.Client, not {type(http_client).__name__}"
        )


class CVClient:
    """Synchronous client for the Computer Vision Vietnam card OCR / eKYC API.

    The same options, methods, results and errors as ``AsyncCVClient`` (see it for each
    option), without ``await``::

        with CVClient() as client:  # $CVEKYC_API_KEY / $CVEKYC_API_SECRET
            result = client.extract_card("front.jpg")

    One client runs one event loop in a thread of its own, holding the connection pool; share it
    across threads (it is thread-safe: calls from many threads run at once, up to
    ``max_concurrency`` in flight) and close it with ``with`` or ``close()``. A client that is
    never closed is closed when it is garbage-collected or at interpreter exit.

    Args:
        backend: the event loop run in the client's thread: ``"asyncio"`` (default) or
            ``"trio"``.
        http_client: an ``httpx.Client`` to send through (its proxies, TLS settings, mounts
            and event hooks apply); it is used from worker threads of the client's loop. A
            cancelled call (``total_timeout``, ``close()``, Ctrl-C) lets go at once, and the
            thread's step in progress ends within that client's timeouts. The caller keeps
            ownership.

    Raises:
        ConfigurationError: as ``AsyncCVClient``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_concurrency: int | Literal["auto"] | AdaptiveConcurrency = DEFAULT_MAX_CONCURRENCY,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        total_timeout: float | None = None,
        queue_timeout: float | None = None,
        max_per_second: float | None = None,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        trust_env: bool = True,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        http_client: httpx.Client | None = None,
        transport: TransportChoice | None = None,
        prepare: bool | Prepare = False,
        default_headers: Mapping[str, str] | None = None,
        request_id_header: str | None = DEFAULT_REQUEST_ID_HEADER,
        event_hooks: EventHooks | None = None,
        backend: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ConfigurationError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        if backend == "trio" and transport == "aiohttp":
            raise ConfigurationError(
                "transport='aiohttp' runs only under asyncio: use backend='asyncio', or the "
                "default transport under trio"
            )
        # Options are checked before a thread is started.
        self._async: AsyncCVClient = _Core(
            api_key,
            api_secret,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            retry=retry,
            total_timeout=total_timeout,
            queue_timeout=queue_timeout,
            max_per_second=max_per_second,
            max_file_size=max_file_size,
            max_response_size=max_response_size,
            trust_env=trust_env,
            verify=verify,
            cert=cert,
            http_client=http_client,  # type: ignore[arg-type]  # _Core takes an httpx.Client
            transport=transport,
            prepare=prepare,
            default_headers=default_headers,
            request_id_header=request_id_header,
            event_hooks=event_hooks,
        )
        self._loop = _Loop(backend)
        self._owner: CVClient | None = None
        self._close = weakref.finalize(self, _shut, self._loop, self._async)

    def _view(self, view: AsyncCVClient) -> CVClient:
        made = object.__new__(CVClient)
        made._async = view
        made._loop = self._loop
        # A view keeps its client alive: the pool is closed only when neither is in use.
        made._owner = self._owner or self
        return made

    def _run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._loop.closed:
            raise ClientStateError("this client is closed; create a new one")
        if threading.current_thread() is self._loop.thread:
            raise ClientStateError(
                "a CVClient cannot be called from its own loop (from a batch's progress "
                "callback, say): use AsyncCVClient inside async code"
            )
        try:
            future = self._loop.portal.start_task_soon(
                _guarded, functools.partial(func, *args, **kwargs)
            )
        except RuntimeError:
            raise ClientStateError("this client is closed; create a new one") from None
        try:
            if threading.current_thread() is not threading.main_thread():
                return _unboxed(future.result())
            # The main thread wakes now and then, so that Ctrl-C is seen at once on every
            # platform (a plain wait is not interruptible everywhere); a result ends it at once.
            while True:
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    return _unboxed(future.result(timeout=0.25))
        except concurrent.futures.CancelledError:
            # Cancelled by close() from another thread.
            raise ClientStateError(
                "the client was closed while this call was in progress"
            ) from None
        except BaseException:
            if not future.done():
                # Ctrl-C (or any exception raised in this thread while waiting): the call is
                # cancelled in the loop too, so that it sends nothing more and frees its slot.
                future.cancel()
            raise

    def __repr__(self) -> str:
        return repr(self._async)

    # -- settings and lifecycle --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._async.base_url

    @property
    def concurrency(self) -> int:
        """HTTP requests that may be in flight now (see ``AsyncCVClient.concurrency``)."""
        return self._async.concurrency

    @property
    def max_concurrency(self) -> int:
        """Most HTTP requests this client (and its views) keep in flight at once."""
        return self._async.max_concurrency

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeouts of each attempt."""
        return self._async.timeout

    @property
    def prepare(self) -> Prepare | None:
        """How inputs are prepared before sending (``None``: sent as given)."""
        return self._async.prepare

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._async.retry_policy

    @property
    def queue_timeout(self) -> float | None:
        """Seconds a call may wait for a concurrency slot (``None``: no limit)."""
        return self._async.queue_timeout

    @property
    def usage(self) -> Usage:
        """A snapshot of the counts so far (shared with views)."""
        if self._loop.closed:
            return self._async.usage
        result: Usage = self._run(_usage_of, self._async)
        return result

    @property
    def in_flight(self) -> int:
        """HTTP attempts in flight right now, across the client and its views."""
        return self._async.in_flight

    @property
    def is_closed(self) -> bool:
        """Whether the client is closed."""
        return self._loop.closed

    def __enter__(self) -> CVClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the client's thread. A view's ``close()`` does
        nothing: the pool belongs to the client.

        Raises:
            ClientStateError: called from the client's own loop (a batch's progress callback).
        """
        if self._owner is None:
            if threading.current_thread() is self._loop.thread and not self._loop.closed:
                # From a batch's progress callback: the loop cannot stop itself while it runs
                # the callback, and closing half-way would leave its thread and sockets behind.
                raise ClientStateError(
                    "a CVClient cannot be closed from its own loop (from a batch's progress "
                    "callback, say): stop the batch there, and close the client after it returns"
                )
            self._close()

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        queue_timeout: float | NotGiven | None = NOT_GIVEN,
        prepare: bool | Prepare | NotGiven = NOT_GIVEN,
        api_key: str | NotGiven = NOT_GIVEN,
        api_secret: str | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
        request_id_header: str | NotGiven | None = NOT_GIVEN,
        event_hooks: EventHooks | NotGiven | None = NOT_GIVEN,
    ) -> CVClient:
        """A view with other options, sharing this client's pool and thread (see
        ``AsyncCVClient.with_options``: other credentials keep usage counts of their own)."""
        return self._view(
            self._async.with_options(
                timeout=timeout,
                max_retries=max_retries,
                retry=retry,
                total_timeout=total_timeout,
                queue_timeout=queue_timeout,
                prepare=prepare,
                api_key=api_key,
                api_secret=api_secret,
                base_url=base_url,
                default_headers=default_headers,
                request_id_header=request_id_header,
                event_hooks=event_hooks,
            )
        )

    @property
    def with_raw_response(self) -> RawResponses:
        """The endpoint methods, returning each answer as received (``RawResponse``)."""
        return RawResponses(self, self._async.with_raw_response)

    # -- endpoints ---------------------------------------------------------------------------

    def extract_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> ExtractionResult:
        """Read one side of one document (see ``AsyncCVClient.extract_card``)."""
        result: ExtractionResult = self._run(
            self._async.extract_card, image, get_thumb=get_thumb, prepare=prepare
        )
        return result

    def extract_cards(
        self,
        front: ImageInput,
        back: ImageInput,
        *,
        get_thumb: bool = False,
        prepare: bool | Prepare | None = None,
    ) -> ExtractionResult:
        """Read both sides of one ID card (see ``AsyncCVClient.extract_cards``)."""
        result: ExtractionResult = self._run(
            self._async.extract_cards, front, back, get_thumb=get_thumb, prepare=prepare
        )
        return result

    def ocr_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> ExtractionResult:
        """Read every document in an image or a PDF (see ``AsyncCVClient.ocr_card``)."""
        result: ExtractionResult = self._run(
            self._async.ocr_card, image, get_thumb=get_thumb, prepare=prepare
        )
        return result

    # -- batches -----------------------------------------------------------------------------

    def extract_many(
        self,
        inputs: BatchInputs,
        *,
        endpoint: Endpoint = "card",
        get_thumb: bool = False,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        fatal_errors: tuple[type[CVError], ...] = DEFAULT_FATAL_ERRORS,
    ) -> list[BatchResult]:
        """Run many extractions at once; one ``BatchResult`` per input, in input order (see
        ``AsyncCVClient.extract_many``). ``inputs`` is read, and ``progress`` called, in the
        client's thread."""
        results: list[BatchResult] = self._run(
            self._async.extract_many,
            inputs,
            endpoint=endpoint,
            get_thumb=get_thumb,
            concurrency=concurrency,
            progress=progress,
            fatal_errors=fatal_errors,
        )
        return results

    def extract_as_completed(
        self,
        inputs: BatchInputs,
        *,
        endpoint: Endpoint = "card",
        get_thumb: bool = False,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        fatal_errors: tuple[type[CVError], ...] = DEFAULT_FATAL_ERRORS,
    ) -> BatchIterator:
        """Run many extractions at once and yield each ``BatchResult`` as it completes (see
        ``AsyncCVClient.extract_as_completed``)::

            with client.extract_as_completed(paths) as results:
                for r in results:
                    print(r.index, r.ok)

        A plain iterator, which may also be used in a ``with`` block (as the async form is):
        leaving the block, or calling ``close()``, stops the batch. Memory stays bounded by the
        concurrency.
        """
        if self._loop.closed:
            raise ClientStateError("this client is closed; create a new one")
        check_batch_options(inputs, endpoint, concurrency, fatal_errors)
        batch = self._async.extract_as_completed(
            inputs,
            endpoint=endpoint,
            get_thumb=get_thumb,
            concurrency=concurrency,
            progress=progress,
            fatal_errors=fatal_errors,
        )
        return BatchIterator(self, batch)


class BatchIterator(Iterator[BatchResult]):
    """The results of a ``CVClient`` batch, as they complete. Iterate it; ``close()`` it (from
    any thread), or use it in a ``with`` block, to stop the batch early."""

    def __init__(self, client: CVClient, batch: Any) -> None:
        self._client = client
        self._batch = batch
        self._context: Any = None
        self._results: Any = None
        self._done = False
        self._lock = threading.Lock()

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> BatchResult:
        with self._lock:
            if self._done:
                raise StopIteration
            if self._context is None:
                if self._client._loop.closed:
                    raise ClientStateError("this client is closed; create a new one")
                portal = self._client._loop.portal
                context = portal.wrap_async_context_manager(self._batch)
                self._results = context.__enter__()
                self._context = context
        try:
            more, item = self._client._run(_next, self._results)
        except BaseException:
            self.close()
            raise
        if not more or item is None:
            self.close()
            raise StopIteration
        result: BatchResult = item
        return result

    def close(self) -> None:
        """Stop the batch: inputs not yet sent are not sent. Safe from any thread, and twice."""
        with self._lock:
            if self._done:
                return
            self._done = True
            context, results = self._context, self._results
        loop = self._client._loop
        if context is None or loop.closed:
            return
        with contextlib.suppress(RuntimeError):
            # Closing the stream ends a wait for the next result in another thread at once;
            # leaving the batch's context then stops its workers.
            loop.portal.call(results.aclose)
            context.__exit__(None, None, None)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Raised:
    """A ``BaseException`` a call raised in the client's loop (``KeyboardInterrupt`` from a hook
    or a transport, ``SystemExit``...), carried to the caller's thread: raised in the loop, it
    would end the loop and every other thread's calls with it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _guarded(call: Callable[[], Any]) -> Any:
    try:
        return await call()
    except Exception:
        raise
    except BaseException as exc:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            raise
        return _Raised(exc)


def _unboxed(value: Any) -> Any:
    if isinstance(value, _Raised):
        raise value.error
    return value


async def _next(results: Any) -> tuple[bool, BatchResult | None]:
    try:
        return True, await results.__anext__()
    except (StopAsyncIteration, anyio.ClosedResourceError, anyio.EndOfStream):
        return False, None


async def _usage_of(client: AsyncCVClient) -> Usage:
    return client.usage


class RawResponses:
    """The endpoint methods of a ``CVClient``, returning a ``RawResponse`` instead of the
    result."""

    __slots__ = ("_client", "_raw")

    def __init__(self, client: CVClient, raw: AsyncRawResponses) -> None:
        self._client = client
        self._raw = raw

    def extract_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> RawResponse:
        """``CVClient.extract_card``, answered as received."""
        raw: RawResponse = self._client._run(
            self._raw.extract_card, image, get_thumb=get_thumb, prepare=prepare
        )
        return raw

    def extract_cards(
        self,
        front: ImageInput,
        back: ImageInput,
        *,
        get_thumb: bool = False,
        prepare: bool | Prepare | None = None,
    ) -> RawResponse:
        """``CVClient.extract_cards``, answered as received."""
        raw: RawResponse = self._client._run(
            self._raw.extract_cards, front, back, get_thumb=get_thumb, prepare=prepare
        )
        return raw

    def ocr_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> RawResponse:
        """``CVClient.ocr_card``, answered as received."""
        raw: RawResponse = self._client._run(
            self._raw.ocr_card, image, get_thumb=get_thumb, prepare=prepare
        )
        return raw
