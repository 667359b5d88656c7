"""AsyncCVClient: configuration, lifecycle, and one method per endpoint."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

import anyio
import httpx

from . import __version__, _batch
from ._batch import (
    DEFAULT_FATAL_ERRORS,
    BatchInputs,
    BatchResult,
    Endpoint,
    ProgressCallback,
)
from ._body import BodyStream, encode_body
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_BASE_URL,
    PATH_CARD,
    PATH_CARDS,
    PATH_OCR,
)
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    CVError,
    InvalidInputError,
    MalformedResponseError,
    RateLimitError,
    ResponseTooLargeError,
    api_error_for_code,
)
from ._inputs import ImageInput, Payload, as_source
from ._models import AnswerFormatError, ExtractionResult, decode_answer
from ._pacing import Pacer
from ._read import ACCEPT_ENCODING, BodyTooLarge, ReadBudget, UndecodableBody, read_body
from ._retry import RetryBudget, RetryPolicy, is_ambiguous, parse_retry_after
from ._transport import TransportChoice, build_transport, environment_proxy
from ._usage import Usage

__all__ = ["AsyncCVClient"]

logger = logging.getLogger("cvekyc_async")

_DEFAULT_TIMEOUT = httpx.Timeout(
    connect=DEFAULT_CONNECT_TIMEOUT,
    read=DEFAULT_READ_TIMEOUT,
    write=DEFAULT_WRITE_TIMEOUT,
    pool=DEFAULT_POOL_TIMEOUT,
)
_USER_AGENT = f"cvekyc-async/{__version__}"
# Every wait between attempts goes through here, so tests can replace it with a fake clock.
_sleep = anyio.sleep


class _Secret:
    """Holds the Authorization header so that no repr, vars() dump or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"base_url {url!r} is plain http: credentials and card images would cross the "
            "network unencrypted. Use https (http is allowed only for loopback hosts)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("base_url must not hold a query, fragment or user info")
    return url.rstrip("/")


def _coerce_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return _DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        return httpx.Timeout(float(timeout))
    raise ConfigurationError(
        f"timeout must be a positive number of seconds or an httpx.Timeout, not {timeout!r}"
    )


def _positive_int(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def _build_policy(
    max_retries: int | None, retry: RetryPolicy | None, total_timeout: float | None
) -> RetryPolicy:
    if retry is not None and max_retries is not None:
        raise ConfigurationError("give max_retries or retry=RetryPolicy(...), not both")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    try:
        policy = retry or RetryPolicy(
            max_retries=DEFAULT_MAX_RETRIES
            if max_retries is None
            else _positive_int("max_retries", max_retries, 0)
        )
        if total_timeout is not None:
            policy = dataclasses.replace(policy, total_timeout=total_timeout)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    return policy


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.WriteTimeout):
        return "write"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool"
    return "read"


class AsyncCVClient:
    """Async client for the Computer Vision Vietnam card OCR / eKYC API.

    One client holds one pooled set of connections; share it across your application and close
    it with ``async with`` or ``aclose()``. It is bound to the event loop it is first used in.

    Args:
        api_key: the account's API key; defaults to ``$CVEKYC_API_KEY``.
        api_secret: the account's API secret; defaults to ``$CVEKYC_API_SECRET``.
        base_url: the service's root; defaults to ``$CVEKYC_BASE_URL``, else
            ``https://cloud.computervision.com.vn``. Plain ``http://`` is refused except for
            loopback hosts (the local emulator, tests).
        timeout: seconds for every phase, or an ``httpx.Timeout``; the default is connect 5 s,
            write 30 s, read 60 s, pool 10 s.
        max_concurrency: most HTTP requests in flight at once from this client (default 10).
            Callers beyond it wait in the client, not in the connection pool.
        max_retries: how many times a transient failure is retried (default 2); a shorthand
            for ``retry=RetryPolicy(max_retries=...)``.
        retry: the full retry policy (backoff, ``Retry-After``, billing-safe mode, budget,
            deadline); see ``RetryPolicy``. Give this or ``max_retries``, not both.
        total_timeout: seconds for a whole call, all attempts and waits included; overrides
            the policy's. ``None`` (default): each attempt is bounded by ``timeout`` only.
        max_per_second: most requests started per second (off by default).
        max_file_size: largest upload accepted, in bytes (default 10 MiB); larger inputs raise
            ``InvalidInputError`` before anything is sent.
        max_response_size: largest answer read, in bytes (default 32 MiB); a larger one raises
            ``ResponseTooLargeError`` as soon as it is announced or read that far, without
            reading the rest, and is not retried. Answers read at once share a budget of the
            same size (beyond 1 MiB each), so large answers arriving together wait for each
            other rather than fill memory.
        trust_env: honour ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` and
            ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as httpx does (default ``True``).
        http_client: an ``httpx.AsyncClient`` to send through (proxies, custom TLS, transports
            in tests). The caller keeps ownership: this client does not close it. ``timeout``
            still applies to every request sent through it (its own timeout does not).
        transport: how requests reach the network when this client builds its own pool:
            ``"sharded"`` (default: several small httpx pools, whose speed holds up as
            concurrency rises), ``"pool"`` (one httpx pool), or ``"aiohttp"`` (the
            ``httpx-aiohttp`` transport, asyncio only, extra ``aiohttp``).

    Raises:
        ConfigurationError: credentials are missing, the base URL is unsafe, or an option is out
            of range.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        total_timeout: float | None = None,
        max_per_second: float | None = None,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        trust_env: bool = True,
        http_client: httpx.AsyncClient | None = None,
        transport: TransportChoice | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY, "")
        secret = api_secret if api_secret is not None else os.environ.get(ENV_API_SECRET, "")
        if not key or not secret:
            missing = " and ".join(
                n for n, v in (("api_key", key), ("api_secret", secret)) if not v
            )
            raise ConfigurationError(
                f"missing {missing}: pass them to AsyncCVClient(...) or set "
                f"{ENV_API_KEY} and {ENV_API_SECRET}"
            )
        if ":" in key:
            raise ConfigurationError("api_key must not contain ':' (HTTP Basic auth splits on it)")
        token = base64.b64encode(f"{key}:{secret}".encode()).decode("ascii")
        self._auth = _Secret(f"Basic {token}")
        self._base_url = _check_base_url(
            base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        )
        self._timeout = _coerce_timeout(timeout)
        self._max_concurrency = _positive_int("max_concurrency", max_concurrency, 1)
        self._retry = _build_policy(max_retries, retry, total_timeout)
        self._budget = RetryBudget(self._retry.budget_capacity)
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._usage = Usage()
        if max_per_second is not None and not (
            isinstance(max_per_second, (int, float)) and max_per_second > 0
        ):
            raise ConfigurationError(f"max_per_second must be positive, not {max_per_second!r}")
        self._pacer = Pacer(max_per_second) if max_per_second else None
        self._max_file_size = _positive_int("max_file_size", max_file_size, 1)
        self._max_response_size = _positive_int("max_response_size", max_response_size, 1)
        self._read_budget = ReadBudget(self._max_response_size)
        if not isinstance(trust_env, bool):
            raise ConfigurationError(f"trust_env must be True or False, not {trust_env!r}")
        self._trust_env = trust_env
        self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        # The transport of a pool this client built: requests go to it directly, skipping
        # httpx.AsyncClient.send's layers (auth, redirects, cookies, hooks) that it never uses.
        self._direct: httpx.AsyncBaseTransport | None = None
        if http_client is not None and transport is not None:
            raise ConfigurationError("give http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else self._build_http_client(transport)
        self._urls: dict[tuple[str, str, bool], httpx.URL] = {}
        self._asyncio_only = transport == "aiohttp"
        self._closed = False

    def _build_http_client(self, transport: TransportChoice | None) -> httpx.AsyncClient:
        # The pools are sized to the limiter, so requests queue in our limiter (which releases
        # a slot on cancellation and never times out) rather than in httpx's pools.
        proxy = None
        if self._trust_env:
            try:
                proxy = environment_proxy(self._base_url)
            except (ValueError, httpx.InvalidURL):
                # The value may hold the proxy's password: it is not quoted.
                raise ConfigurationError(
                    "the proxy named by HTTPS_PROXY / HTTP_PROXY / ALL_PROXY is not a valid URL "
                    "(pass trust_env=False to ignore the environment)"
                ) from None
        try:
            built = build_transport(
                transport or "sharded",
                max_connections=self._max_concurrency,
                proxy=proxy,
                trust_env=self._trust_env,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        except ImportError:
            needed = (
                "transport='aiohttp' needs the aiohttp extra: pip install 'cvekyc-async[aiohttp]'"
                if transport == "aiohttp"
                else "a SOCKS proxy needs socksio: pip install 'httpx[socks]'"
            )
            raise ConfigurationError(needed) from None
        self._direct = built
        return httpx.AsyncClient(
            timeout=self._timeout,
            transport=built,
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
            follow_redirects=False,
            trust_env=self._trust_env,
        )

    def __repr__(self) -> str:
        return (
            f"AsyncCVClient(base_url={self._base_url!r}, "
            f"max_concurrency={self._max_concurrency}, max_retries={self._retry.max_retries})"
        )

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._base_url

    @property
    def max_concurrency(self) -> int:
        """Most HTTP requests this client keeps in flight at once."""
        return self._max_concurrency

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def usage(self) -> Usage:
        """A snapshot of the counts so far: requests, answers, billed, retries, errors."""
        return self._usage.copy()

    @property
    def in_flight(self) -> int:
        """HTTP attempts in flight right now."""
        return int(self._limiter.borrowed_tokens)

    async def __aenter__(self) -> AsyncCVClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    async def extract_card(self, image: ImageInput, *, get_thumb: bool = False) -> ExtractionResult:
        """Read one side of one document: an ID card side, a passport, ... (``/api/v2/ekyc/card``).

        Args:
            image: a path, a URL, file bytes, or an ``ImageSource``.
            get_thumb: also return the cropped, deskewed document image in ``info.image``.

        Returns:
            The answer, with one card per document found.

        Raises:
            InvalidInputError: the input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return await self._extract(PATH_CARD, (("img", image),), get_thumb, allow_pdf=True)

    async def extract_cards(
        self, front: ImageInput, back: ImageInput, *, get_thumb: bool = False
    ) -> ExtractionResult:
        """Read both sides of one ID card (CMND, CCCD, chip CCCD) (``/api/v2/ekyc/cards``).

        Both sides must be given in the same style (both files or bytes, both URLs, or both
        base64), since the request names one ``format_type``.

        Args:
            front: the front side: a path, a URL, file bytes, or an ``ImageSource``.
            back: the back side, likewise.
            get_thumb: also return the cropped, deskewed images in ``info.image``.

        Returns:
            The answer; ``cards`` holds the front then the back.

        Raises:
            InvalidInputError: an input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return await self._extract(
            PATH_CARDS, (("img1", front), ("img2", back)), get_thumb, allow_pdf=False
        )

    async def ocr_card(self, image: ImageInput, *, get_thumb: bool = False) -> ExtractionResult:
        """Read every document in an image or a PDF (``/api/v2/ocr/card``).

        Args:
            image: a path, a URL, file bytes, or an ``ImageSource``; PDFs give one card per page.
            get_thumb: also return the cropped, deskewed document images in ``info.image``.

        Returns:
            The answer, with one card per document (per page for a PDF).

        Raises:
            InvalidInputError: the input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return await self._extract(PATH_OCR, (("img", image),), get_thumb, allow_pdf=True)

    # -- batches -------------------------------------------------------------------------------

    def extract_as_completed(
        self,
        inputs: BatchInputs,
        *,
        endpoint: Endpoint = "card",
        get_thumb: bool = False,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        fatal_errors: tuple[type[CVError], ...] = DEFAULT_FATAL_ERRORS,
    ) -> AbstractAsyncContextManager[AsyncIterator[BatchResult]]:
        """Run many extractions at once and yield each ``BatchResult`` as it completes.

        ::

            async with client.extract_as_completed(paths) as results:
                async for r in results:
                    print(r.index, r.ok, r.result or r.error)

        Inputs are consumed lazily: at most about ``2 * concurrency`` are pulled ahead of
        what the consumer has taken, so a generator of millions of paths works in bounded
        memory. Leaving the block early cancels the batch promptly; the client stays usable.

        Args:
            inputs: an iterable or async iterable of images (for ``endpoint="cards"``, of
                ``(front, back)`` pairs).
            endpoint: ``"card"`` (``extract_card``), ``"cards"`` (``extract_cards``) or
                ``"ocr"`` (``ocr_card``).
            get_thumb: ask for thumbnails.
            concurrency: inputs worked on at once (default: the client's ``max_concurrency``;
                HTTP attempts stay bounded by ``max_concurrency`` in any case).
            progress: called with a ``BatchProgress`` after each input ends.
            fatal_errors: errors after which nothing more is sent: the inputs not yet sent end
                with that error and ``attempts=0``. Default: bad credentials and quota used up;
                pass ``()`` to send everything regardless.

        Raises:
            InvalidInputError: a bad option, or ``inputs`` is not iterable. Per-input failures
                are results, not exceptions.
        """
        return _batch.extract_as_completed(
            self,
            inputs,
            endpoint=endpoint,
            get_thumb=get_thumb,
            concurrency=concurrency,
            progress=progress,
            fatal_errors=fatal_errors,
        )

    async def extract_many(
        self,
        inputs: BatchInputs,
        *,
        endpoint: Endpoint = "card",
        get_thumb: bool = False,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        fatal_errors: tuple[type[CVError], ...] = DEFAULT_FATAL_ERRORS,
    ) -> list[BatchResult]:
        """Run many extractions at once and return one ``BatchResult`` per input, in input order.

        Every input is accounted for exactly once, as a result or an error; arguments as
        ``extract_as_completed``. For very large batches prefer ``extract_as_completed``,
        which does not hold every result until the end.
        """
        out: list[BatchResult] = []
        async with self.extract_as_completed(
            inputs,
            endpoint=endpoint,
            get_thumb=get_thumb,
            concurrency=concurrency,
            progress=progress,
            fatal_errors=fatal_errors,
        ) as results:
            async for item in results:
                out.append(item)
        out.sort(key=lambda r: r.index)
        return out

    # -- one request -------------------------------------------------------------------------

    def _prepare(
        self, fields: Sequence[tuple[str, ImageInput]], *, allow_pdf: bool
    ) -> list[tuple[str, Payload]]:
        """Check and load every input; raises InvalidInputError before anything is sent."""
        if self._closed:
            raise CVError("this AsyncCVClient is closed; create a new one")
        if self._asyncio_only:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise ConfigurationError(
                    "transport='aiohttp' runs only under asyncio; use the default transport "
                    "under trio"
                ) from None
        sources = [(name, as_source(value, name)) for name, value in fields]
        styles = {src.format_type for _, src in sources}
        if len(styles) > 1:
            shown = ", ".join(f"{name} as {src.format_type!r}" for name, src in sources)
            raise InvalidInputError(
                f"one request takes one input style, but got {shown}; give both sides as files "
                "(or bytes), both as URLs, or both as base64"
            )
        return [
            (name, src.load(max_size=self._max_file_size, allow_pdf=allow_pdf))
            for name, src in sources
        ]

    def _build_request(
        self,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
        body: tuple[str, bytes] | None,
    ) -> httpx.Request:
        format_type = payloads[0][1].format_type
        thumb = "true" if get_thumb else "false"
        # Accept-Encoding is set on every request, so that a caller's http_client does not
        # announce encodings the body reader does not decode.
        headers = {"Authorization": self._auth.reveal(), "Accept-Encoding": ACCEPT_ENCODING}
        url = self._base_url + path
        if body is None:
            params: list[tuple[str, str | int | float | bool | None]]
            params = [(name, str(p.data)) for name, p in payloads]
            params += [("format_type", "url"), ("get_thumb", thumb)]
            return self._http.build_request(
                "GET", url, params=params, headers=headers, timeout=self._timeout
            )
        # POST URLs repeat: parse each once (httpx's URL handling is a visible share of the
        # client's cost per request at a thousand requests a second).
        key = (path, format_type, get_thumb)
        cached = self._urls.get(key)
        if cached is None:
            cached = httpx.URL(url, params={"format_type": format_type, "get_thumb": thumb})
            self._urls[key] = cached
        content_type, data = body
        headers["Content-Type"] = content_type
        request = self._http.build_request(
            "POST", cached, headers=headers, content=data, timeout=self._timeout
        )
        # httpx sends bytes through an async generator, which a cancellation can leave
        # unfinished (see _body); the same bytes go out through a plain iterator instead.
        # ``request.content`` stays readable for transports and mocks that want it.
        request.stream = BodyStream(data)
        return request

    async def _extract(
        self,
        path: str,
        fields: Sequence[tuple[str, ImageInput]],
        get_thumb: bool,
        *,
        allow_pdf: bool,
    ) -> ExtractionResult:
        if not isinstance(get_thumb, bool):
            raise InvalidInputError(f"get_thumb must be True or False, not {get_thumb!r}")
        payloads = self._prepare(fields, allow_pdf=allow_pdf)
        is_url = payloads[0][1].format_type == "url"
        method = "GET" if is_url else "POST"
        body = None if is_url else encode_body(payloads)
        policy = self._retry
        started = time.perf_counter()
        deadline = policy.total_timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                # Without a deadline no cancel scope is entered: it is a measurable share of
                # the cost per request at a thousand requests a second.
                if deadline is None:
                    result = await self._attempt(method, path, payloads, get_thumb, body, attempt)
                else:
                    remaining = max(deadline - (time.perf_counter() - started), 0.0)
                    with anyio.fail_after(remaining):
                        result = await self._attempt(
                            method, path, payloads, get_thumb, body, attempt
                        )
            except CVError as exc:
                error = exc
            except TimeoutError:
                error = APITimeoutError(
                    f"no answer within total_timeout={deadline:g} s", kind="total"
                )
            else:
                result.attempts = attempt
                result.elapsed = time.perf_counter() - started
                self._usage.answers += 1
                self._usage.billed += result.billed
                self._budget.refund(policy.success_refund)
                return result
            elapsed = time.perf_counter() - started
            error.method, error.path = method, path
            error.attempts, error.elapsed = attempt, elapsed
            delay = policy.next_delay(error, attempt, elapsed, self._random.random())
            if delay is not None and not self._budget.withdraw(policy.retry_cost_of(error)):
                self._usage.budget_exhausted += 1
                delay = None
            if delay is None:
                self._usage.count_error(error)
                raise error
            self._usage.retries += 1
            self._usage.ambiguous_retries += is_ambiguous(error)
            logger.debug(
                "%s %s attempt %d failed (%s); retrying in %.3f s",
                method,
                path,
                attempt,
                type(error).__name__,
                delay,
            )
            await _sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        payloads: Sequence[tuple[str, Payload]],
        get_thumb: bool,
        body: tuple[str, bytes] | None,
        attempt: int,
    ) -> ExtractionResult:
        """One HTTP attempt, holding a concurrency slot only while it is in flight."""
        async with self._limiter:
            if self._pacer is not None:
                await self._pacer.wait()
            request = self._build_request(path, payloads, get_thumb, body)
            sent = time.perf_counter()
            self._usage.requests += 1
            try:
                if self._direct is not None:
                    response = await self._direct.handle_async_request(request)
                else:
                    response = await self._http.send(request, stream=True)
                try:
                    answer = await self._read(response)
                finally:
                    await response.aclose()
            except CVError as exc:
                self._log_attempt(method, path, attempt, type(exc).__name__, sent)
                raise
            except httpx.TimeoutException as exc:
                if _sent_before_failing(exc):
                    self._log_attempt(method, path, attempt, "connection lost", sent)
                    raise APIConnectionError(
                        f"the connection failed after the request was sent: "
                        f"{_describe_failure(exc.__cause__ or exc)}",
                        kind="transport",
                    ) from None
                kind = _timeout_kind(exc)
                self._log_attempt(method, path, attempt, f"{kind} timeout", sent)
                raise APITimeoutError(f"{kind} timeout talking to the service", kind=kind) from None
            except httpx.TransportError as exc:
                kind = "connect" if isinstance(exc, httpx.ConnectError) else "transport"
                self._log_attempt(method, path, attempt, type(exc).__name__, sent)
                raise APIConnectionError(
                    f"could not reach the service: {_describe_failure(exc)}", kind=kind
                ) from None
            except Exception as exc:
                # Whatever else a transport raises (httpx's other errors, a third-party
                # transport's own) ends in the error tree too; it may have been sent.
                self._log_attempt(method, path, attempt, type(exc).__name__, sent)
                raise APIConnectionError(
                    f"the request failed: {_describe_failure(exc)}", kind="transport"
                ) from None
        self._log_attempt(method, path, attempt, str(response.status_code), sent)
        return self._interpret(response, answer)

    async def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, decoded, and no more than ``max_response_size`` of it."""
        try:
            return await read_body(response, self._max_response_size, self._read_budget)
        except BodyTooLarge as exc:
            raise ResponseTooLargeError(
                self._max_response_size,
                status_code=response.status_code,
                content_type=response.headers.get("content-type", ""),
                announced=exc.announced,
            ) from None
        except UndecodableBody as exc:
            self._raise_unreadable(response, exc.body, str(exc))

    @staticmethod
    def _log_attempt(method: str, path: str, attempt: int, outcome: str, sent: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s attempt %d -> %s in %.3f s",
                method,
                path,
                attempt,
                outcome,
                time.perf_counter() - sent,
            )

    def _interpret(self, response: httpx.Response, body: bytes) -> ExtractionResult:
        """Turn a received answer into a result, or raise the error it stands for."""
        try:
            answer = decode_answer(body)
        except AnswerFormatError as exc:
            self._raise_unreadable(response, body, str(exc))
        if answer.error_code != 0:
            cls_api = api_error_for_code(answer.error_code)
            raise cls_api(answer.error_code, answer.error_message, status_code=response.status_code)
        if not 200 <= response.status_code < 300:
            # A success envelope under an error status is no documented answer: the status wins
            # (a 5xx of that kind is an ambiguous failure, retried only with retry_ambiguous).
            self._raise_unreadable(response, body, "an errorCode 0 answer under an error status")
        return answer

    @staticmethod
    def _raise_unreadable(response: httpx.Response, body: bytes, reason: str) -> NoReturn:
        """Raise the error for a body that is not an answer: malformed for a 2xx status, an
        HTTP status error otherwise."""
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if 200 <= status < 300:
            raise MalformedResponseError(
                reason, status_code=status, body=body, content_type=content_type
            )
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        cls = RateLimitError if status == 429 else APIStatusError
        raise cls(status, body=body, content_type=content_type, retry_after=retry_after)


# aiohttp's errors for a connection that was never made, or not in time.
_AIOHTTP_NOT_CONNECTED = frozenset({"ClientConnectorError", "ServerTimeoutError"})


def _sent_before_failing(exc: httpx.TimeoutException) -> bool:
    """Whether a "connect timeout" is in fact a connection lost after the request was sent.

    httpx-aiohttp maps every aiohttp connection error to ``httpx.ConnectTimeout``, a server
    that closed after reading the whole request included; that one may have been processed
    (and billed), so it must not be retried as if it never left. The aiohttp cause says which.
    """
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return False
    return not {c.__name__ for c in type(cause).__mro__} & _AIOHTTP_NOT_CONNECTED


def _describe_failure(exc: BaseException) -> str:
    """Name a transport failure without its message, which can quote what the server sent
    (h11's protocol errors show the offending bytes); an OS error's own text is kept."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(exc).__name__} ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
