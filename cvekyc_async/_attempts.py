"""The attempt loop: check the inputs, send, read, interpret, retry.

An ``Engine`` is what a client and every view of it (``with_options``) share for one origin:
the connection pool, the concurrency limiter, the retry budget and the read budget. A
``Settings`` is what a view may change: timeouts, the retry policy, the queue wait, hooks, and
its ``Account`` (credentials, base URL, headers and usage counts). One call ends as an
``Exchange`` (the answer, its status, headers and raw bytes) or raises a ``CVError``.

Each call gets an id (``request_id``), sent as ``X-Request-ID`` and found on its result, its
errors, its log lines, its hook events and its spans (``_telemetry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import ssl
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NoReturn

import anyio
import httpx

from ._account import Account, Secret, new_request_id, origin_of
from ._adaptive import AdaptiveConcurrency, AdaptiveLimit, Token, is_overload
from ._body import BodyStream, encode_body
from ._constants import PATH_CARD, PATH_CARDS, PATH_OCR
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    ClientStateError,
    ConfigurationError,
    CVError,
    InvalidInputError,
    MalformedResponseError,
    QueueTimeoutError,
    ResponseTooLargeError,
    api_error_for_code,
    request_id_from,
    status_error_for,
)
from ._hooks import EventHook, HookEvent, HookFailed, run_hooks
from ._inputs import ImageInput, ImageSource, Payload, as_source
from ._logs import logger
from ._models import AnswerFormatError, ExtractionResult, decode_answer
from ._pacing import Pacer
from ._prepare import (
    PixelBudget,
    Preparation,
    Prepare,
    coerce_prepare,
    prepare_payload,
    prepare_workers,
)
from ._read import (
    ACCEPT_ENCODING,
    BodyTooLarge,
    HttpxReceived,
    ReadBudget,
    Received,
    UndecodableBody,
    read_body,
)
from ._retry import RetryBudget, RetryPolicy, failure_label, is_ambiguous, parse_retry_after
from ._telemetry import AttemptSpan, CallTelemetry, quiet_http_instrumentation, telemetry_for
from ._threaded import ThreadedClient
from ._transport import AutoTransport
from ._usage import Usage
from ._wire import causes, is_unparsable

__all__ = ["Engine", "Exchange", "Settings"]

# Every wait between attempts goes through here, so tests can replace it with a fake clock.
_sleep = anyio.sleep

_NO_HOOKS: Mapping[str, tuple[EventHook, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Settings:
    """What a client view decides for its own calls."""

    timeout: httpx.Timeout
    retry: RetryPolicy
    queue_timeout: float | None
    account: Account
    prepare: Prepare | None = None
    hooks: Mapping[str, tuple[EventHook, ...]] = field(default_factory=lambda: _NO_HOOKS)
    #: ``timeout`` by phase, as transports take it (made once, not on every request).
    phases: Mapping[str, float | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", self.timeout.as_dict())


class _Call:
    """One call in progress: what its attempts, hooks, log lines and spans share."""

    __slots__ = (
        "account",
        "attempts",
        "body",
        "get_thumb",
        "hooks",
        "id",
        "method",
        "operation",
        "path",
        "payloads",
        "result",
        "sent",
        "settings",
        "span",
        "telemetry",
        "url",
    )

    def __init__(
        self,
        request_id: str,
        operation: str,
        path: str,
        settings: Settings,
        telemetry: CallTelemetry | None,
    ) -> None:
        self.id = request_id
        self.operation = operation
        self.path = path
        self.settings = settings
        self.account = account = settings.account
        self.hooks = settings.hooks
        self.telemetry = telemetry
        self.method = "POST"
        self.url = account.base_url + path  # as hooks are shown it: no query
        self.sent = 0.0  # when the attempt in progress was sent
        self.attempts = 0
        self.result: ExtractionResult | None = None  # the answer, once counted
        # What every attempt sends, set once the inputs are loaded.
        self.payloads: Sequence[tuple[str, Payload]] = ()
        self.get_thumb = False
        self.body: tuple[str, bytes] | httpx.URL = ("", b"")
        self.span: AttemptSpan | None = None

    def event(self, kind: str, attempt: int, **more: object) -> HookEvent:
        return HookEvent(
            kind,  # type: ignore[arg-type]
            self.id,
            self.operation,
            self.method,
            self.url,
            attempt,
            **more,  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class Exchange:
    """One finished call: the decoded answer and what it was decoded from."""

    result: ExtractionResult
    status_code: int
    answer: Received
    body: bytes
    http_version: str
    method: str
    path: str
    latency: float  # seconds from sending to the whole answer read

    @property
    def headers(self) -> httpx.Headers:
        """The answer's headers (built now, on the aiohttp transport)."""
        return self.answer.headers


#: A transport's way to send a request given by its parts, without httpx's objects: method,
#: URL, headers as they go out, body, timeouts by phase (``AiohttpTransport.fetch``).
Fetch = Callable[
    [str, str, Sequence[tuple[str, str]], "bytes | None", Mapping[str, "float | None"]],
    Awaitable[Received],
]


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.WriteTimeout):
        return "write"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool"
    return "read"


def _current_loop() -> object:
    """The running event loop (asyncio) or run (trio), to tell one loop from another."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.current_root_task()


class Engine:
    """The machinery one client and its views share, for one origin (scheme, host, port)."""

    def __init__(
        self,
        *,
        origin: tuple[str, str, int],
        http: httpx.AsyncClient | httpx.Client,
        direct: httpx.AsyncBaseTransport | None,
        owns_http: bool,
        max_concurrency: int,
        adaptive: AdaptiveConcurrency | None,
        max_per_second: float | None,
        max_file_size: int,
        max_response_size: int,
        budget_capacity: int | None,
        asyncio_only: bool,
        owner: str = "AsyncCVClient",
    ) -> None:
        self.origin = origin
        # A caller's synchronous httpx.Client (under CVClient) is driven from worker threads.
        self.threaded = ThreadedClient(http) if isinstance(http, httpx.Client) else None
        self.http = http
        # The transport of a pool the client built: requests go to it directly, skipping
        # httpx.AsyncClient.send's layers (auth, redirects, cookies, hooks) that it never uses.
        self.direct = direct
        #: The direct transport's ``fetch``, once it is chosen, when it has one.
        self.fetch: Fetch | None = None
        self.owns_http = owns_http
        self.max_concurrency = max_concurrency
        # With adaptive concurrency, the limiter's tokens follow ``adaptive.current`` (and
        # ``max_concurrency`` is its ceiling, which sizes the pool).
        self.adaptive = AdaptiveLimit(adaptive) if adaptive is not None else None
        # Made on first use, in the event loop that will use it (anyio builds a limiter for
        # the async library running where it is made).
        self._limiter: anyio.CapacityLimiter | None = None
        self._preparing: anyio.CapacityLimiter | None = None
        self._pixels = PixelBudget()
        self.pacer = Pacer(max_per_second) if max_per_second else None
        self.max_file_size = max_file_size
        self.max_response_size = max_response_size
        self.read_budget = ReadBudget(max_response_size)
        self.budget = RetryBudget(budget_capacity)
        self.asyncio_only = asyncio_only
        #: The class the caller holds, as messages name it.
        self.owner = owner
        self.closed = False
        self.random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._loop: object | None = None
        #: Builds the engine of another origin (a view's base_url on another host), which then
        #: belongs to this one: it is closed with it.
        self.spawn: Callable[[str], Engine] | None = None
        self._root = self
        self._others: dict[tuple[str, str, int], Engine] = {}
        # Views are made from any thread (CVClient's callers').
        self._lock = threading.Lock()
        # The usage counts of each set of credentials the client and its views call with, by
        # a digest of their Authorization header.
        self._usages: dict[bytes, Usage] = {}

    def __del__(self) -> None:
        # As httpx warns of an AsyncClient never closed (and instead of aiohttp's message on
        # stderr): once per client (its root engine), as a ResourceWarning, shown only where
        # those are. A CVClient closes its own when it is collected.
        with contextlib.suppress(Exception):
            if (
                self._root is self
                and self.owns_http
                and not self.closed
                and self.owner != "CVClient"
                and self.opened
            ):
                warnings.warn(
                    f"unclosed {self.owner}: close it with 'async with' or aclose() "
                    "(its connections are dropped now)",
                    ResourceWarning,
                    stacklevel=2,
                    source=self,
                )

    @property
    def opened(self) -> bool:
        """Whether a request was ever sent through this engine or those it spawned."""
        return self._loop is not None or any(e.opened for e in self._others.values())

    def for_url(self, base_url: str) -> Engine:
        """The engine for calls to ``base_url``: this one on the same origin (the same pool),
        else one of its own (made once per origin, closed with this one)."""
        root = self._root
        origin = origin_of(base_url)
        if origin == root.origin or root.spawn is None:
            return root
        with root._lock:
            if root.closed:
                raise ClientStateError("this client is closed; create a new one")
            found = root._others.get(origin)
            if found is None:
                found = root._others[origin] = root.spawn(base_url)
                found._root = root
            return found

    def usage_for(self, auth: Secret, usage: Usage | None = None) -> Usage:
        """The usage counts of calls made with ``auth`` (``usage`` when they are new)."""
        root = self._root
        key = hashlib.sha256(auth.reveal().encode()).digest()
        with root._lock:
            found = root._usages.get(key)
            if found is None:
                found = root._usages[key] = usage if usage is not None else Usage()
            return found

    @property
    def concurrency(self) -> int:
        """Attempts that may be in flight now."""
        return self.adaptive.current if self.adaptive is not None else self.max_concurrency

    def _observe(self, token: Token, latency: float | None, overloaded: bool) -> None:
        assert self.adaptive is not None
        changed = self.adaptive.finished(token, latency, overloaded)
        if changed is not None and self._limiter is not None:
            self._limiter.total_tokens = changed

    @property
    def in_flight(self) -> int:
        return 0 if self._limiter is None else int(self._limiter.borrowed_tokens)

    async def aclose(self) -> None:
        if self.closed:
            return
        if self._loop is not None:
            try:
                here: object | None = _current_loop()
            except ImportError:
                here = None
            if here is not self._loop:
                raise ClientStateError(
                    f"close this {self.owner} on the event loop it was opened on: its "
                    "connections belong to that loop"
                )
        with self._lock:
            self.closed = True
            others = list(self._others.values())
        try:
            for other in others:
                await other.aclose()
        finally:
            if self.owns_http:
                assert isinstance(self.http, httpx.AsyncClient)
                await self.http.aclose()

    # -- before sending ----------------------------------------------------------------------

    def _check_state(self) -> None:
        if self.closed:
            raise ClientStateError("this client is closed; create a new one")
        try:
            loop = _current_loop()
        except ImportError:
            loop = None
        if self._loop is None:
            if self.asyncio_only and not isinstance(loop, asyncio.AbstractEventLoop):
                raise ConfigurationError(
                    "transport='aiohttp' runs only under asyncio; use the default transport "
                    "under trio"
                )
            self._loop = loop
            self._limiter = anyio.CapacityLimiter(self.concurrency)
            if isinstance(self.direct, AutoTransport):
                # Chosen now that the event loop is known; requests then go to it directly.
                self.direct = self.direct.resolve()
            self.fetch = getattr(self.direct, "fetch", None)
        elif loop is not self._loop:
            raise ClientStateError(
                f"this {self.owner} was opened on another event loop, and its connections "
                "belong to that loop: create one client per event loop (for a web app, in its "
                "lifespan), or use CVClient, which runs its own loop and may be called from "
                "any thread"
            )

    def _sources(self, fields: Sequence[tuple[str, ImageInput]]) -> list[tuple[str, ImageSource]]:
        self._check_state()
        sources = [(name, as_source(value, name)) for name, value in fields]
        styles = {src.format_type for _, src in sources}
        if len(styles) > 1:
            shown = ", ".join(f"{name} as {src.format_type!r}" for name, src in sources)
            raise InvalidInputError(
                f"one request takes one input style, but got {shown}; give both sides as files "
                "(or bytes), both as URLs, or both as base64"
            )
        return sources

    def prepare(
        self, fields: Sequence[tuple[str, ImageInput]], *, allow_pdf: bool
    ) -> list[tuple[str, Payload]]:
        """Check and load every input, as given; raises before anything is sent."""
        return [
            (name, src.load(max_size=self.max_file_size, allow_pdf=allow_pdf))
            for name, src in self._sources(fields)
        ]

    async def prepared(
        self, fields: Sequence[tuple[str, ImageInput]], how: Prepare, *, allow_pdf: bool
    ) -> tuple[list[tuple[str, Payload]], list[Preparation]]:
        """Check, load and prepare every input in a worker thread (see ``_prepare``); raises
        before anything is sent."""
        sources = self._sources(fields)
        if self._preparing is None:
            self._preparing = anyio.CapacityLimiter(prepare_workers(self.max_concurrency))

        def work() -> list[tuple[Payload, Preparation | None]]:
            return [
                prepare_payload(
                    src,
                    name,
                    how,
                    max_size=self.max_file_size,
                    allow_pdf=allow_pdf,
                    budget=self._pixels,
                )
                for name, src in sources
            ]

        done = await anyio.to_thread.run_sync(work, limiter=self._preparing)
        payloads = [(name, payload) for (name, _), (payload, _) in zip(sources, done, strict=True)]
        return payloads, [p for _, p in done if p is not None]

    def _headers(self, account: Account) -> dict[str, str]:
        # Accept-Encoding is set on every request, so that a caller's http_client does not
        # announce encodings the body reader does not decode.
        headers = dict(account.headers)
        headers["Authorization"] = account.auth.reveal()
        headers["Accept-Encoding"] = ACCEPT_ENCODING
        return headers

    def url_for(
        self,
        account: Account,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
    ) -> httpx.URL:
        """The URL of a request whose image is a URL (``format_type=url``, in the query).

        Built apart from the credentials: an input httpx cannot put in a URL (too long, a lone
        surrogate) is refused before anything is sent, with no secret in any frame.
        """
        params = [(name, str(p.data)) for name, p in payloads]
        params += [("format_type", "url"), ("get_thumb", "true" if get_thumb else "false")]
        try:
            return httpx.URL(account.base_url + path, params=params)
        except Exception:
            raise InvalidInputError(
                "an image URL that cannot be sent in a request's query (too long, or not encodable)"
            ) from None

    def request_parts(
        self,
        account: Account,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
        body: tuple[str, bytes] | httpx.URL,
        extra: Sequence[tuple[str, str]],
    ) -> tuple[str, list[tuple[str, str]], bytes | None]:
        """What ``build_request`` puts in a request, for a transport that takes it in parts
        (``fetch``): its URL, its headers as they go out, its body."""
        headers = account.fixed_headers(self.http.headers, ACCEPT_ENCODING)
        headers += extra
        if isinstance(body, httpx.URL):
            return str(body), headers, None
        content_type, data = body
        headers += [("Content-Type", content_type), ("Content-Length", str(len(data)))]
        return self._post_url(account, path, payloads, get_thumb)[1], headers, data

    def _post_url(
        self,
        account: Account,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
    ) -> tuple[httpx.URL, str]:
        """The POST URL of a request, parsed and as text, made once per account and kind."""
        format_type = payloads[0][1].format_type
        key = (path, format_type, get_thumb)
        cached = account.urls.get(key)
        if cached is None:
            thumb = "true" if get_thumb else "false"
            url = account.base_url + path
            parsed = httpx.URL(url, params={"format_type": format_type, "get_thumb": thumb})
            cached = account.urls[key] = (parsed, str(parsed))
        return cached

    def build_request(
        self,
        account: Account,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
        body: tuple[str, bytes] | httpx.URL,
        timeout: httpx.Timeout,
        extra: Sequence[tuple[str, str]] = (),
    ) -> httpx.Request:
        """The request for one attempt: a GET of ``body`` when it is the URL (an image given
        by URL, see ``url_for``), else a POST of the ``(content type, bytes)`` body; ``extra``
        are the attempt's own headers (its call's id, its trace context)."""
        if isinstance(body, httpx.URL):
            headers = self._headers(account)
            headers.update(extra)
            request = self.http.build_request("GET", body, headers=headers, timeout=timeout)
            return _without_jar_cookies(request, account)
        cached = self._post_url(account, path, payloads, get_thumb)[0]
        content_type, data = body
        if self.direct is not None:
            # The client's own transport: the request is built here, headers and all, rather
            # than through httpx.AsyncClient.build_request, whose merging of the client's
            # headers, cookies and URL is most of the cost of building a request.
            fixed = account.fixed_headers(self.http.headers, ACCEPT_ENCODING)
            fixed += extra
            fixed += [("Content-Type", content_type), ("Content-Length", str(len(data)))]
            return httpx.Request(
                "POST",
                cached,
                headers=fixed,
                stream=BodyStream(data),
                extensions={"timeout": timeout.as_dict()},
            )
        headers = self._headers(account)
        headers.update(extra)
        headers["Content-Type"] = content_type
        request = self.http.build_request(
            "POST", cached, headers=headers, content=data, timeout=timeout
        )
        if self.threaded is None:
            # httpx sends bytes through an async generator, which a cancellation can leave
            # unfinished (see _body); the same bytes go out through a plain iterator instead.
            # ``request.content`` stays readable for transports and mocks that want it.
            request.stream = BodyStream(data)
        return _without_jar_cookies(request, account)

    # -- the endpoints -----------------------------------------------------------------------

    async def card(
        self, settings: Settings, image: ImageInput, get_thumb: bool, prepare: object = None
    ) -> Exchange:
        fields = (("img", image),)
        return await self.call(
            settings, "extract_card", PATH_CARD, fields, get_thumb, True, prepare
        )

    async def cards(
        self,
        settings: Settings,
        front: ImageInput,
        back: ImageInput,
        get_thumb: bool,
        prepare: object = None,
    ) -> Exchange:
        fields = (("img1", front), ("img2", back))
        return await self.call(
            settings, "extract_cards", PATH_CARDS, fields, get_thumb, False, prepare
        )

    async def ocr(
        self, settings: Settings, image: ImageInput, get_thumb: bool, prepare: object = None
    ) -> Exchange:
        fields = (("img", image),)
        return await self.call(settings, "ocr_card", PATH_OCR, fields, get_thumb, True, prepare)

    # -- the loop ----------------------------------------------------------------------------

    async def call(
        self,
        settings: Settings,
        operation: str,
        path: str,
        fields: Sequence[tuple[str, ImageInput]],
        get_thumb: bool,
        allow_pdf: bool,
        prepare: object = None,
    ) -> Exchange:
        """Send one extraction, retrying as ``settings.retry`` says; the exchange that ended it.

        ``prepare`` is the call's own choice (``None``: the view's, ``settings.prepare``).
        Every error it raises carries the call's id (``request_id``).
        """
        account = settings.account
        request_id = new_request_id()
        telemetry = telemetry_for(
            operation=operation,
            path=path,
            url=account.base_url + path,
            host=account.host,
            port=account.port,
            request_id=request_id,
        )
        call = _Call(request_id, operation, path, settings, telemetry)
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await self._call(call, settings, fields, get_thumb, allow_pdf, prepare)
        except CVError as exc:
            exc.request_id = request_id
            failure = exc
            raise
        except HookFailed as wrapped:
            # A hook's own error ends the call as it was raised, and is not retried.
            failure = wrapped.error
            raise failure from failure.__cause__
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if telemetry is not None:
                if call.span is not None:
                    _end_attempt(call, None)
                telemetry.ended(
                    result=call.result,
                    error=failure,
                    attempts=call.attempts,
                    elapsed=time.perf_counter() - started,
                )

    async def _call(
        self,
        call: _Call,
        settings: Settings,
        fields: Sequence[tuple[str, ImageInput]],
        get_thumb: bool,
        allow_pdf: bool,
        prepare: object,
    ) -> Exchange:
        if not isinstance(get_thumb, bool):
            raise InvalidInputError(f"get_thumb must be True or False, not {get_thumb!r}")
        how = settings.prepare if prepare is None else coerce_prepare(prepare, "call")
        preparations: list[Preparation] = []
        if how is None:
            payloads = self.prepare(fields, allow_pdf=allow_pdf)
        else:
            payloads, preparations = await self.prepared(fields, how, allow_pdf=allow_pdf)
        account, path = call.account, call.path
        usage = account.usage
        style = payloads[0][1].format_type
        is_url = style == "url"
        method = call.method = "GET" if is_url else "POST"
        if call.telemetry is not None:
            call.telemetry.input_style(style)
        # Built once for every attempt; a URL httpx cannot send is refused here, unsent.
        body = self.url_for(account, path, payloads, get_thumb) if is_url else encode_body(payloads)
        call.payloads, call.get_thumb, call.body = payloads, get_thumb, body
        policy = settings.retry
        started = time.perf_counter()
        deadline = policy.total_timeout
        attempt = 0
        previous: CVError | None = None
        while True:
            attempt += 1
            call.attempts = attempt
            if self.closed:
                raise self._closed_error(usage, method, path, attempt - 1, started)
            try:
                # Without a deadline no cancel scope is entered: it is a measurable share of
                # the cost per request at a thousand requests a second.
                if deadline is None:
                    exchange = await self._attempt(call, attempt)
                else:
                    remaining = max(deadline - (time.perf_counter() - started), 0.0)
                    with anyio.fail_after(remaining):
                        exchange = await self._attempt(call, attempt)
            except QueueTimeoutError as exc:
                # Nothing more was sent. After a sent attempt, its failure is the news (it may
                # have been billed); the wait for a slot only ended the retries.
                error = previous if previous is not None else exc
                error.method, error.path = method, path
                error.attempts, error.elapsed = attempt - 1, time.perf_counter() - started
                usage.count_error(error)
                raise error from None
            except CVError as exc:
                error = exc
                try:
                    await _within(deadline, started, self._responded(call, attempt, exc))
                except TimeoutError:
                    error = _total_timeout(deadline)
            except TimeoutError:
                error = _total_timeout(deadline)
            else:
                result = exchange.result
                result.attempts = attempt
                result.elapsed = time.perf_counter() - started
                result.request_id = call.id
                result.service_request_id = request_id_from(exchange.answer.header, call.id)
                result.prepared = preparations
                usage.answers += 1
                usage.billed += result.billed
                call.result = result
                self.budget.refund(policy.success_refund)
                # Counted first: a response hook that raises does not unbill the answer.
                try:
                    await _within(
                        deadline,
                        started,
                        self._responded(call, attempt, None, exchange.status_code),
                    )
                except TimeoutError:
                    late = _total_timeout(deadline)
                    late.method, late.path = method, path
                    late.attempts, late.elapsed = attempt, time.perf_counter() - started
                    usage.count_error(late)
                    raise late from None
                return exchange
            if self.closed:
                # The client was closed under this call: nothing more is sent.
                raise self._closed_error(usage, method, path, attempt, started, call) from None
            elapsed = time.perf_counter() - started
            error.method, error.path = method, path
            error.attempts, error.elapsed = attempt, elapsed
            previous = error
            delay = policy.next_delay(error, attempt, elapsed, self.random.random())
            reason = failure_label(error)
            if delay is not None and not self.budget.withdraw(policy.retry_cost_of(error)):
                usage.budget_exhausted += 1
                delay = None
                logger.info(
                    "call %s: %s %s attempt %d failed (%s); the retry budget is empty, so it "
                    "is not retried",
                    call.id,
                    method,
                    path,
                    attempt,
                    reason,
                    extra={"cvekyc_request_id": call.id},
                )
            retry_hooks = call.hooks.get("retry")
            if delay is not None and retry_hooks:
                # Before anything counts the retry: a hook that raises ends the call instead.
                status = getattr(error, "status_code", None)
                event = call.event(
                    "retry",
                    attempt,
                    status_code=status if isinstance(status, int) else None,
                    error=type(error).__name__,
                    reason=reason,
                    delay=delay,
                )
                try:
                    await _within(deadline, started, run_hooks(retry_hooks, event))
                except TimeoutError:
                    error = _total_timeout(deadline)
                    error.method, error.path = method, path
                    error.attempts, error.elapsed = attempt, time.perf_counter() - started
                    delay = None
            if call.span is not None:
                _end_attempt(call, reason if delay is not None else None)
            if delay is None:
                usage.count_error(error)
                if attempt > 1:
                    logger.info(
                        "call %s: %s %s failed after %d attempts (%s)",
                        call.id,
                        method,
                        path,
                        attempt,
                        reason,
                        extra={"cvekyc_request_id": call.id},
                    )
                if error.__suppress_context__:
                    # Raised "from None" over a transport's error, whose text can quote what
                    # the server sent (h11's show the bytes): not kept, even out of sight.
                    error.__context__ = None
                raise error
            usage.retries += 1
            usage.ambiguous_retries += is_ambiguous(error)
            logger.info(
                "call %s: %s %s attempt %d failed (%s); retrying in %.3f s",
                call.id,
                method,
                path,
                attempt,
                reason,
                delay,
                extra={"cvekyc_request_id": call.id},
            )
            if call.telemetry is not None:
                call.telemetry.retried(reason, delay)
            await _sleep(delay)

    def _closed_error(
        self,
        usage: Usage,
        method: str,
        path: str,
        attempts: int,
        started: float,
        call: _Call | None = None,
    ) -> CVError:
        if call is not None:
            _end_attempt(call, None)
        error = ClientStateError(
            "the client was closed while this call was in progress; nothing more was sent"
        )
        error.method, error.path = method, path
        error.attempts, error.elapsed = attempts, time.perf_counter() - started
        usage.count_error(error)
        return error

    async def _acquire(self, queue_timeout: float | None) -> anyio.CapacityLimiter:
        limiter = self._limiter
        assert limiter is not None  # made by prepare()
        try:
            # A free slot is taken at once: no wait, so no queue_timeout can fire.
            limiter.acquire_nowait()
            return limiter
        except anyio.WouldBlock:
            pass
        if queue_timeout is None:
            await limiter.acquire()
            return limiter
        with anyio.move_on_after(queue_timeout) as waited:
            await limiter.acquire()
        if waited.cancelled_caught:
            raise QueueTimeoutError(queue_timeout, in_flight=int(limiter.borrowed_tokens))
        return limiter

    async def _attempt(self, call: _Call, attempt: int) -> Exchange:
        """One HTTP attempt, holding a concurrency slot only while it is in flight."""
        telemetry = call.telemetry
        if telemetry is None:
            limiter = await self._acquire(call.settings.queue_timeout)
            return await self._observed(limiter, call, attempt)
        waiting = time.perf_counter()
        limiter = await self._acquire(call.settings.queue_timeout)
        telemetry.queue_waited(time.perf_counter() - waiting)
        status: int | None = None
        failure: BaseException | None = None
        version: str | None = None
        try:
            exchange = await self._observed(limiter, call, attempt)
            status, version = exchange.status_code, exchange.http_version
            return exchange
        except BaseException as exc:
            failure = exc.error if isinstance(exc, HookFailed) else exc
            found = getattr(exc, "status_code", None)
            status = found if isinstance(found, int) else None
            raise
        finally:
            if call.span is not None:
                elapsed = time.perf_counter() - call.sent if call.sent else 0.0
                call.span.ended = (status, failure, elapsed, version)
                if not isinstance(failure, CVError):
                    # A failed attempt's span ends once the loop has said whether it is retried.
                    _end_attempt(call, None)

    async def _responded(
        self, call: _Call, attempt: int, error: CVError | None, status: int | None = None
    ) -> None:
        """Run the response hooks for an attempt that was sent and ended with an answer or a
        ``CVError`` (not one cancelled, nor one never sent)."""
        hooks = call.hooks.get("response")
        if not hooks or not call.sent:
            return
        if error is not None:
            found = getattr(error, "status_code", None)
            status = found if isinstance(found, int) else None
        await run_hooks(
            hooks,
            call.event(
                "response",
                attempt,
                status_code=status,
                elapsed=time.perf_counter() - call.sent,
                error=None if error is None else type(error).__name__,
            ),
        )

    async def _observed(
        self, limiter: anyio.CapacityLimiter, call: _Call, attempt: int
    ) -> Exchange:
        adaptive = self.adaptive
        if adaptive is None:
            return await self._exchange(limiter, call, attempt)
        # Adaptive concurrency learns from every attempt that ends (a cancelled one says
        # nothing about the service).
        token = adaptive.started(int(limiter.borrowed_tokens))
        try:
            exchange = await self._exchange(limiter, call, attempt)
        except CVError as exc:
            self._observe(token, None, is_overload(exc))
            raise
        self._observe(token, exchange.latency, False)
        return exchange

    async def _exchange(
        self, limiter: anyio.CapacityLimiter, call: _Call, attempt: int
    ) -> Exchange:
        """Send and read one attempt on a slot taken; the slot is given back when it ends."""
        method, path, account, settings = call.method, call.path, call.account, call.settings
        call.sent = 0.0
        try:
            if self.pacer is not None:
                await self.pacer.wait()
            extra: list[tuple[str, str]] = []
            if account.request_id_header is not None:
                extra.append((account.request_id_header, call.id))
            if call.telemetry is not None:
                call.span = call.telemetry.attempt(method, attempt, path, extra)
            hooks = call.hooks.get("request")
            if hooks:
                # A hook that raises ends the call with its error; the slot is given back.
                await run_hooks(hooks, call.event("request", attempt))
            fetch = self.fetch
            request: httpx.Request | tuple[str, list[tuple[str, str]], bytes | None]
            if fetch is not None:
                request = self.request_parts(
                    account, path, call.payloads, call.get_thumb, call.body, extra
                )
            else:
                request = self.build_request(
                    account, path, call.payloads, call.get_thumb, call.body, settings.timeout, extra
                )
            sent = call.sent = time.perf_counter()
            account.usage.requests += 1
            response: Received | None = None
            try:
                if call.telemetry is not None:
                    response = await self._send_quietly(method, request, settings.phases)
                else:
                    response = await self._send(method, request, settings.phases)
                try:
                    answer = await self._read(response)
                finally:
                    await response.aclose()
            except CVError as exc:
                _log_attempt(call, attempt, type(exc).__name__, sent)
                raise
            except httpx.TimeoutException as exc:
                if _sent_before_failing(exc):
                    _log_attempt(call, attempt, "connection lost", sent)
                    raise APIConnectionError(
                        f"the connection failed after the request was sent: "
                        f"{_describe_failure(exc.__cause__ or exc)}",
                        kind="transport",
                    ) from None
                kind = _timeout_kind(exc)
                _log_attempt(call, attempt, f"{kind} timeout", sent)
                raise APITimeoutError(_timeout_message(kind, settings.timeout), kind=kind) from None
            except httpx.TransportError as exc:
                if is_unparsable(exc):
                    # It arrived, so the request was read (and may have been billed); the same
                    # request would most likely meet the same answer: not resent.
                    _log_attempt(call, attempt, "unparsable answer", sent)
                    raise MalformedResponseError(
                        "an answer that is not valid HTTP",
                        status_code=None if response is None else response.status_code,
                        headers=None if response is None else response.headers,
                    ) from None
                kind = "connect" if isinstance(exc, httpx.ConnectError) else "transport"
                _log_attempt(call, attempt, type(exc).__name__, sent)
                raise APIConnectionError(
                    f"could not reach the service: {_describe_failure(exc)}", kind=kind
                ) from None
            except Exception as exc:
                # Whatever else a transport raises (httpx's other errors, a third-party
                # transport's own, a caller's httpx event hook) ends in the error tree too. It
                # may have been sent, and is no network failure the client knows to be
                # passing: not retried.
                _log_attempt(call, attempt, type(exc).__name__, sent)
                raise APIConnectionError(
                    f"the request failed: {_describe_failure(exc)}", kind="unknown"
                ) from None
        finally:
            limiter.release()
        latency = time.perf_counter() - sent
        _log_attempt(call, attempt, str(response.status_code), sent)
        return Exchange(
            result=_interpret(response, answer, account.base_url + path),
            status_code=response.status_code,
            answer=response,
            body=answer,
            http_version=response.http_version,
            method=method,
            path=path,
            latency=latency,
        )

    async def _send(
        self,
        method: str,
        request: httpx.Request | tuple[str, list[tuple[str, str]], bytes | None],
        phases: Mapping[str, float | None],
    ) -> Received:
        """Send a request built by ``request_parts`` (to ``fetch``) or ``build_request``."""
        if isinstance(request, tuple):
            assert self.fetch is not None
            url, headers, data = request
            return await self.fetch(method, url, headers, data, phases)
        if self.direct is not None:
            response = await self.direct.handle_async_request(request)
        elif self.threaded is not None:
            response = await self.threaded.send(request)
        else:
            assert isinstance(self.http, httpx.AsyncClient)
            response = await self.http.send(request, stream=True)
        return HttpxReceived(response)

    async def _send_quietly(
        self,
        method: str,
        request: httpx.Request | tuple[str, list[tuple[str, str]], bytes | None],
        phases: Mapping[str, float | None],
    ) -> Received:
        """Send with an application's HTTP instrumentation (httpx's, aiohttp's) held off: the
        attempt's own span stands for the request, and theirs would record the URL's query (an
        image URL's token) and send their own ``traceparent``."""
        with quiet_http_instrumentation():
            return await self._send(method, request, phases)

    async def _read(self, response: Received) -> bytes:
        """The answer's body, decoded, and no more than ``max_response_size`` of it."""
        try:
            return await read_body(response, self.max_response_size, self.read_budget)
        except BodyTooLarge as exc:
            raise ResponseTooLargeError(
                self.max_response_size,
                status_code=response.status_code,
                content_type=response.header("content-type"),
                announced=exc.announced,
                headers=response.headers,
                owner=self.owner,
            ) from None
        except UndecodableBody as exc:
            _raise_unreadable(response, exc.body, str(exc))


def _total_timeout(deadline: float | None) -> APITimeoutError:
    return APITimeoutError(f"no answer within total_timeout={deadline:g} s", kind="total")


async def _within(deadline: float | None, started: float, hooks: Awaitable[None]) -> None:
    """Await a call's hooks within what is left of its ``total_timeout`` (``TimeoutError``
    when it passes)."""
    if deadline is None:
        await hooks
        return
    with anyio.fail_after(max(deadline - (time.perf_counter() - started), 0.0)):
        await hooks


def _without_jar_cookies(request: httpx.Request, account: Account) -> httpx.Request:
    """A request through a caller's http_client without the cookies its jar collected: the
    service sets none, and a gateway's cookie issued to one tenant's call must not go out with
    another's (a ``Cookie`` in ``default_headers`` still goes)."""
    if "cookie" in request.headers and not any(k.lower() == "cookie" for k, _ in account.headers):
        del request.headers["cookie"]
    return request


def _end_attempt(call: _Call, retry_reason: str | None) -> None:
    span = call.span
    call.span = None
    if span is not None and span.ended is not None and call.telemetry is not None:
        status, failure, elapsed, version = span.ended
        call.telemetry.attempt_ended(
            span,
            status=status,
            error=failure,
            elapsed=elapsed,
            http_version=version,
            retry_reason=retry_reason,
        )


def _timeout_message(kind: str, timeout: httpx.Timeout) -> str:
    seconds = timeout.as_dict().get(kind)
    limit = f" of {seconds:g} s" if isinstance(seconds, (int, float)) else ""
    what = {
        "connect": f"could not connect to the service within the connect timeout{limit}",
        "read": f"no answer from the service within the read timeout{limit}",
        "write": f"the upload did not finish within the write timeout{limit}",
        "pool": f"no connection came free within the pool timeout{limit}",
    }.get(kind, f"{kind} timeout talking to the service")
    return f"{what} (change it with timeout=)"


def _log_attempt(call: _Call, attempt: int, outcome: str, sent: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "call %s: %s %s attempt %d -> %s in %.3f s",
            call.id,
            call.method,
            call.path,
            attempt,
            outcome,
            time.perf_counter() - sent,
            extra={"cvekyc_request_id": call.id},
        )


def _interpret(response: Received, body: bytes, url: str) -> ExtractionResult:
    """Turn a received answer into a result, or raise the error it stands for."""
    try:
        answer = decode_answer(body)
    except AnswerFormatError as exc:
        _raise_unreadable(response, body, str(exc), url)
    if answer.error_code != 0:
        cls_api = api_error_for_code(answer.error_code)
        raise cls_api(
            answer.error_code,
            answer.error_message,
            status_code=response.status_code,
            body=body,
            headers=response.headers,
        )
    if not 200 <= response.status_code < 300:
        # A success envelope under an error status is no documented answer: the status wins
        # (a 5xx of that kind is an ambiguous failure, retried only with retry_ambiguous).
        _raise_unreadable(response, body, "an errorCode 0 answer under an error status", url)
    return answer


def _raise_unreadable(
    response: Received, body: bytes, reason: str, url: str | None = None
) -> NoReturn:
    """Raise the error for a body that is not an answer: malformed for a 2xx status, an HTTP
    status error otherwise."""
    status = response.status_code
    content_type = response.header("content-type")
    if 200 <= status < 300:
        raise MalformedResponseError(
            reason,
            status_code=status,
            body=body,
            content_type=content_type,
            headers=response.headers,
        )
    retry_after = parse_retry_after(response.header("retry-after") or None)
    raise status_error_for(status)(
        status,
        body=body,
        content_type=content_type,
        retry_after=retry_after,
        headers=response.headers,
        url=url,
    )


# aiohttp's errors for a connection that was never made, or not in time.
_AIOHTTP_NOT_CONNECTED = frozenset({"ClientConnectorError", "ServerTimeoutError"})


def _sent_before_failing(exc: httpx.TimeoutException) -> bool:
    """Whether a "connect timeout" is in fact a connection lost after the request was sent.

    The httpx-aiohttp package (a transport a caller may give in its own ``http_client``; the
    client's own aiohttp transport maps failures itself) reports every aiohttp connection error
    as ``httpx.ConnectTimeout``, a server that closed after reading the whole request included;
    that one may have been processed (and billed), so it must not be retried as if it never
    left. The aiohttp cause says which.
    """
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return False
    return not {c.__name__ for c in type(cause).__mro__} & _AIOHTTP_NOT_CONNECTED


def _describe_failure(exc: BaseException) -> str:
    """Name a transport failure without its message, which can quote what the server sent
    (h11's protocol errors show the offending bytes) or the URL (aiohttp's OS errors do); an
    OS error is named by the system's text for its number, never by its own. A TLS failure is
    named by OpenSSL's reason, which quotes nothing the server sent."""
    name = type(exc).__name__
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            said = cause.verify_message if isinstance(cause.verify_message, str) else ""
            said = said if said.isprintable() and len(said) <= 160 else "not trusted"
            return (
                f"{name} (the service's TLS certificate failed verification: {said}; see verify=)"
            )
        if isinstance(cause, ssl.SSLError):
            reason = str(cause.reason or "handshake failed")
            if not reason.replace("_", "").isalnum():
                reason = "handshake failed"
            hint = (
                "; the service asks for a client certificate (cert=)"
                if ("CERTIFICATE_REQUIRED" in reason)
                else ""
            )
            return f"{name} (TLS: {reason.lower().replace('_', ' ')}{hint})"
        if isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0:
            return f"{type(exc).__name__} ({os.strerror(cause.errno)})"
    return type(exc).__name__
