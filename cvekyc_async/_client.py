"""AsyncCVClient: configuration, lifecycle, and one method per endpoint.

The machinery lives elsewhere: the attempt loop in ``_attempts``, raw answers in ``_raw``, the
batch helpers in ``_batch``, the synchronous client in ``_sync``.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final, Literal
from urllib.parse import urlsplit

import anyio
import httpx

from . import __version__, _batch
from ._account import (
    DEFAULT_REQUEST_ID_HEADER,
    Account,
    Secret,
    check_headers,
    check_request_id_header,
    origin_of,
)
from ._adaptive import AdaptiveConcurrency
from ._attempts import Engine, Settings
from ._batch import (
    DEFAULT_FATAL_ERRORS,
    BatchInputs,
    BatchResult,
    Endpoint,
    ProgressCallback,
)
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
)
from ._errors import ConfigurationError, CVError
from ._hooks import EventHooks, coerce_hooks
from ._inputs import ImageInput
from ._models import ExtractionResult
from ._prepare import Prepare, coerce_prepare
from ._raw import AsyncRawResponses
from ._read import ACCEPT_ENCODING
from ._redact import HIDE_IMAGE_URLS
from ._retry import RetryPolicy
from ._tls import CertTypes, VerifyTypes, ssl_context
from ._transport import TransportChoice, build_transport, environment_proxy
from ._usage import Usage

__all__ = ["NOT_GIVEN", "AsyncCVClient", "NotGiven"]

_DEFAULT_TIMEOUT = httpx.Timeout(
    connect=DEFAULT_CONNECT_TIMEOUT,
    read=DEFAULT_READ_TIMEOUT,
    write=DEFAULT_WRITE_TIMEOUT,
    pool=DEFAULT_POOL_TIMEOUT,
)
_USER_AGENT = f"cvekyc-async/{__version__}"


class NotGiven:
    """The default of ``with_options``' arguments: keep the client's setting."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Final[NotGiven] = NotGiven()


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str) -> str:
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        # A CR, LF or tab would reach the request line, or fail every call inside httpx.
        raise ConfigurationError(
            "base_url must be a URL without spaces, tabs, line breaks or control characters"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a port out of range raises here
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise ConfigurationError("base_url is not a valid URL") from None
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not hold user info (credentials go in api_key)")
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"base_url {url!r} is plain http: credentials and card images would cross the "
            "network unencrypted. Use https (http is allowed only for loopback hosts)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not hold a query or fragment")
    return url.rstrip("/")


def _coerce_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return _DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        for phase, value in timeout.as_dict().items():
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            ):
                raise ConfigurationError(
                    f"timeout's {phase} must be a positive number of seconds or None, not {value!r}"
                )
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
            if isinstance(total_timeout, bool):
                raise ValueError(f"total_timeout must be a number of seconds, not {total_timeout}")
            policy = dataclasses.replace(policy, total_timeout=total_timeout)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    return policy


def _adaptive_of(value: object) -> AdaptiveConcurrency | None:
    if value == "auto":
        return AdaptiveConcurrency()
    if isinstance(value, AdaptiveConcurrency):
        return value
    if isinstance(value, str):
        raise ConfigurationError(
            f"max_concurrency must be an integer >= 1, 'auto' or an AdaptiveConcurrency, "
            f"not {value!r}"
        )
    return None


def _check_queue_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ConfigurationError(
        f"queue_timeout must be a number of seconds >= 0 (0: never wait) or None, not {value!r}"
    )


def _auth_of(api_key: str | None, api_secret: str | None, owner: str) -> Secret:
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY, "")
    secret = api_secret if api_secret is not None else os.environ.get(ENV_API_SECRET, "")
    if not isinstance(key, str) or not isinstance(secret, str):
        raise ConfigurationError("api_key and api_secret must be strings")
    if not key or not secret:
        missing = " and ".join(n for n, v in (("api_key", key), ("api_secret", secret)) if not v)
        if owner == "with_options":
            raise ConfigurationError(f"missing {missing}: give both to with_options(...)")
        raise ConfigurationError(
            f"missing {missing}: pass them to {owner}(...) or set "
            f"{ENV_API_KEY} and {ENV_API_SECRET}"
        )
    if ":" in key:
        raise ConfigurationError("api_key must not contain ':' (HTTP Basic auth splits on it)")
    if any(c in key + secret for c in "\r\n\0"):
        raise ConfigurationError("api_key and api_secret must not hold line breaks")
    token = base64.b64encode(f"{key}:{secret}".encode()).decode("ascii")
    return Secret(f"Basic {token}")


def _build_transport(
    base_url: str,
    transport: TransportChoice | None,
    max_connections: int,
    trust_env: bool,
    context: ssl.SSLContext,
) -> httpx.AsyncBaseTransport:
    # The pools are sized to the limiter, so requests queue in our limiter (which releases a
    # slot on cancellation and never times out) rather than in httpx's pools.
    proxy = None
    if trust_env:
        try:
            proxy = environment_proxy(base_url)
        except (ValueError, httpx.InvalidURL):
            # The value may hold the proxy's password: it is not quoted.
            raise ConfigurationError(
                "the proxy named by HTTPS_PROXY / HTTP_PROXY / ALL_PROXY is not a valid URL "
                "(pass trust_env=False to ignore the environment)"
            ) from None
    try:
        return build_transport(
            transport or "auto",
            max_connections=max_connections,
            verify=context,
            proxy=proxy,
            trust_env=trust_env,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    except ImportError:
        needed = (
            "transport='aiohttp' needs aiohttp: pip install aiohttp"
            if transport == "aiohttp"
            else "a SOCKS proxy needs socksio: pip install 'httpx[socks]'"
        )
        raise ConfigurationError(needed) from None


class AsyncCVClient:
    """Async client for the Computer Vision Vietnam card OCR / eKYC API.

    One client holds one pooled set of connections; share it across your application and close
    it with ``async with`` or ``aclose()``. It is bound to the event loop it is first used in
    (``CVClient`` is the synchronous client, usable from any thread). ``with_options`` gives a
    view with other timeouts or retries on the same pool; ``with_raw_response`` the answers as
    received.

    Args:
        api_key: the account's API key; defaults to ``$CVEKYC_API_KEY``.
        api_secret: the account's API secret; defaults to ``$CVEKYC_API_SECRET``.
        base_url: the service's root; defaults to ``$CVEKYC_BASE_URL``, else
            ``https://cloud.computervision.com.vn``. Plain ``http://`` is refused except for
            loopback hosts (the local emulator, tests).
        timeout: seconds for every phase, or an ``httpx.Timeout``; the default is connect 5 s,
            write 30 s, read 60 s, pool 10 s.
        max_concurrency: most HTTP requests in flight at once from this client (default 10).
            Callers beyond it wait in the client, not in the connection pool. ``"auto"`` (or
            an ``AdaptiveConcurrency``) lets the client find the level itself, from 4 up to a
            ceiling of 64: it rises while answers come as fast, and falls when they slow down
            or the service answers 429 / 503 (see the README's "Adaptive concurrency").
        max_retries: how many times a transient failure is retried (default 2); a shorthand
            for ``retry=RetryPolicy(max_retries=...)``.
        retry: the full retry policy (backoff, ``Retry-After``, billing-safe mode, budget,
            deadline); see ``RetryPolicy``. Give this or ``max_retries``, not both.
        total_timeout: seconds for a whole call, all attempts and waits included; overrides
            the policy's. ``None`` (default): each attempt is bounded by ``timeout`` only.
        queue_timeout: seconds a call may wait for one of the ``max_concurrency`` slots before
            it raises ``QueueTimeoutError`` without sending (default ``None``: wait as long as
            it takes). For web backends that must fail fast under load.
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
        verify: which certificates to trust: ``True`` (default: httpx's store, or
            ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` with ``trust_env``), a CA bundle file or
            folder (a private CA, a TLS-inspecting proxy), an ``ssl.SSLContext``, or ``False``.
        cert: a client certificate for services that require one (mutual TLS): a PEM file
            holding it and its key, ``(certificate, key)`` or ``(certificate, key, password)``.
        http_client: an ``httpx.AsyncClient`` to send through (proxies, mounts, transports
            in tests). The caller keeps ownership: this client does not close it. ``timeout``
            still applies to every request sent through it (its own timeout does not).
        transport: how requests reach the network when this client builds its own pool:
            ``"auto"`` (default: ``"aiohttp"`` on asyncio, ``"sharded"`` under trio, chosen at
            the first request), ``"aiohttp"`` (aiohttp's HTTP stack, about half the CPU per
            request; asyncio only), ``"sharded"`` (several small httpx pools, whose speed
            holds up as concurrency rises) or ``"pool"`` (one httpx pool). All four fail and
            time out alike (see the README's "Transports").
        prepare: prepare inputs before sending (``True`` or a ``Prepare``: HEIC and AVIF to
            JPEG, turned upright, downscaled); off by default.
        default_headers: headers sent with every request (a gateway's tenant header, say); not
            those the client sets itself (``Authorization``, ``Host``, ``Content-*``...).
        request_id_header: the header each call's id goes out in (default ``X-Request-ID``);
            ``None`` sends none. The id is on results, raw answers, errors, log lines, hook
            events and spans either way.
        event_hooks: ``{"request": [...], "response": [...], "retry": [...]}``: functions (or
            coroutine functions) called with a ``HookEvent`` as each attempt goes out, as it
            ends, and before each retry's wait. A hook that raises fails its call with that
            exception.

    Raises:
        ConfigurationError: credentials are missing, the base URL is unsafe, or an option is out
            of range.
    """

    #: The class the caller holds, as messages name it.
    _name = "AsyncCVClient"

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
        http_client: httpx.AsyncClient | None = None,
        transport: TransportChoice | None = None,
        prepare: bool | Prepare = False,
        default_headers: Mapping[str, str] | None = None,
        request_id_header: str | None = DEFAULT_REQUEST_ID_HEADER,
        event_hooks: EventHooks | None = None,
    ) -> None:
        name = self._name
        base = _check_base_url(base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        id_header = check_request_id_header(request_id_header)
        account = Account(
            auth=_auth_of(api_key, api_secret, name),
            base_url=base,
            headers=check_headers(default_headers, id_header),
            request_id_header=id_header,
        )
        settings = Settings(
            timeout=_coerce_timeout(timeout),
            retry=_build_policy(max_retries, retry, total_timeout),
            queue_timeout=_check_queue_timeout(queue_timeout),
            account=account,
            prepare=coerce_prepare(prepare, "client"),
            hooks=coerce_hooks(event_hooks),
        )
        adaptive = _adaptive_of(max_concurrency)
        concurrency = (
            adaptive.ceiling
            if adaptive is not None
            else _positive_int("max_concurrency", max_concurrency, 1)  # type: ignore[arg-type]
        )
        if max_per_second is not None and not (
            isinstance(max_per_second, (int, float))
            and not isinstance(max_per_second, bool)
            and 0 < max_per_second < float("inf")
        ):
            raise ConfigurationError(f"max_per_second must be positive, not {max_per_second!r}")
        file_size = _positive_int("max_file_size", max_file_size, 1)
        response_size = _positive_int("max_response_size", max_response_size, 1)
        if not isinstance(trust_env, bool):
            raise ConfigurationError(f"trust_env must be True or False, not {trust_env!r}")
        if http_client is not None:
            self._check_http_client(http_client)
            if transport is not None:
                raise ConfigurationError("give http_client or transport, not both")
            if verify is not True or cert is not None:
                raise ConfigurationError(
                    "verify= and cert= apply to the client's own pool: with http_client, set "
                    "them on that client (httpx.AsyncClient(verify=..., cert=...))"
                )
            # httpx logs each request's URL, and an image URL's token with it.
            logging.getLogger("httpx").addFilter(HIDE_IMAGE_URLS)
            context = None
        else:
            context = ssl_context(verify, cert, trust_env=trust_env)

        def engine_for(url: str) -> Engine:
            """The engine (and, unless one was given, the pool) of calls to ``url``."""
            direct = None
            http: httpx.AsyncClient | httpx.Client
            if http_client is not None:
                http = http_client
            else:
                assert context is not None
                direct = _build_transport(url, transport, concurrency, trust_env, context)
                http = httpx.AsyncClient(
                    timeout=settings.timeout,
                    transport=direct,
                    headers={"User-Agent": _USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
                    follow_redirects=False,
                    trust_env=trust_env,
                )
            return Engine(
                origin=origin_of(url),
                http=http,
                direct=direct,
                owns_http=direct is not None,
                max_concurrency=concurrency,
                adaptive=_adaptive_of(max_concurrency),
                max_per_second=max_per_second,
                max_file_size=file_size,
                max_response_size=response_size,
                budget_capacity=settings.retry.budget_capacity,
                asyncio_only=transport == "aiohttp",
                owner=name,
            )

        engine = engine_for(base)
        engine.spawn = engine_for
        engine.usage_for(account.auth, account.usage)
        self._engine = engine
        self._settings = settings
        self._is_view = False

    def _check_http_client(self, http_client: object) -> None:
        if isinstance(http_client, httpx.AsyncClient):
            return
        if isinstance(http_client, httpx.Client):
            raise ConfigurationError(
                f"{self._name} sends through an httpx.AsyncClient, and http_client is an "
                "httpx.Client: pass http_client=httpx.AsyncClient(...), or use CVClient, "
                "which takes an httpx.Client"
            )
        raise ConfigurationError(
            f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
        )

    def __repr__(self) -> str:
        view = ", view" if self._is_view else ""
        return (
            f"{self._name}(base_url={self.base_url!r}, "
            f"max_concurrency={self.max_concurrency}, "
            f"max_retries={self._settings.retry.max_retries}{view})"
        )

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._settings.account.base_url

    @property
    def max_concurrency(self) -> int:
        """Most HTTP requests this client (and its views) keep in flight at once (with
        adaptive concurrency, its ceiling)."""
        return self._engine.max_concurrency

    @property
    def concurrency(self) -> int:
        """HTTP requests that may be in flight now: ``max_concurrency``, or with adaptive
        concurrency the level it has found so far."""
        return self._engine.concurrency

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeouts of each attempt."""
        return self._settings.timeout

    @property
    def prepare(self) -> Prepare | None:
        """How inputs are prepared before sending (``None``: sent as given)."""
        return self._settings.prepare

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._settings.retry

    @property
    def queue_timeout(self) -> float | None:
        """Seconds a call may wait for a concurrency slot (``None``: no limit)."""
        return self._settings.queue_timeout

    @property
    def usage(self) -> Usage:
        """A snapshot of the counts so far (shared with views): requests, answers, billed,
        retries, errors."""
        return self._settings.account.usage.copy()

    @property
    def in_flight(self) -> int:
        """HTTP attempts in flight right now, across the client and its views on its host (a
        view on another host has a pool and a limit of its own)."""
        return self._engine.in_flight

    @property
    def is_closed(self) -> bool:
        """Whether the connection pool is closed."""
        return self._engine.closed

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
        """Close the connection pool (unless it was passed in as ``http_client``).

        Closing a view made by ``with_options`` does nothing: the pool belongs to the client.
        """
        if not self._is_view:
            await self._engine.aclose()

    # -- variants ------------------------------------------------------------------------------

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
    ) -> AsyncCVClient:
        """A view of this client with other options for its calls.

        The view shares the connection pool, the concurrency limit, the retry budget and the
        usage counts: it opens no connection of its own, costs nothing to make, and closing it
        does not close the pool. Options not given keep this client's values::

            fast = client.with_options(timeout=3, max_retries=0, queue_timeout=0.5)
            result = await fast.extract_card(upload)

        A view with other credentials serves one tenant of a multi-tenant backend: it shares
        the pool (and its concurrency limit) while its ``base_url`` is on the same host, and
        keeps usage counts of its own::

            tenant = client.with_options(api_key=key, api_secret=secret)

        A ``base_url`` on another host gets a pool of its own, made once per host and closed
        with this client.

        Args:
            timeout: seconds for every phase of an attempt, or an ``httpx.Timeout``; ``None``
                for the library's defaults.
            max_retries: retries after the first attempt; the rest of the policy is kept.
            retry: a whole ``RetryPolicy`` instead (not with ``max_retries``).
            total_timeout: seconds for a whole call, all attempts included; ``None`` for none.
            queue_timeout: seconds a call may wait for a concurrency slot; ``None`` for no limit.
            prepare: whether (and how) inputs are prepared before sending (see ``Prepare``).
            api_key: other credentials for the view's calls (with ``api_secret``).
            api_secret: the secret of ``api_key``.
            base_url: another service root for the view's calls.
            default_headers: headers sent with every request of the view (replacing the
                client's ``default_headers``; ``None`` for none). A view given other
                credentials starts without the client's: they often carry a tenant's token.
            request_id_header: the header the call's id is sent in; ``None`` to send none.
            event_hooks: the view's hooks (replacing the client's; ``None`` for none).

        Raises:
            ConfigurationError: an option is out of range.
        """
        settings = self._settings
        account = self._account_of(
            api_key, api_secret, base_url, default_headers, request_id_header
        )
        if not isinstance(retry, NotGiven):
            if not isinstance(max_retries, NotGiven):
                raise ConfigurationError("give max_retries or retry=RetryPolicy(...), not both")
            if not isinstance(retry, RetryPolicy):
                raise ConfigurationError(f"retry must be a RetryPolicy, not {retry!r}")
            policy = _build_policy(None, retry, None)
            if policy.total_timeout is None and isinstance(total_timeout, NotGiven):
                # A policy without a deadline keeps the client's (total_timeout=None drops it).
                policy = dataclasses.replace(policy, total_timeout=settings.retry.total_timeout)
        elif not isinstance(max_retries, NotGiven):
            count = _positive_int("max_retries", max_retries, 0)
            policy = dataclasses.replace(settings.retry, max_retries=count)
        else:
            policy = settings.retry
        if not isinstance(total_timeout, NotGiven):
            if total_timeout is not None and not (
                isinstance(total_timeout, (int, float))
                and not isinstance(total_timeout, bool)
                and total_timeout > 0
            ):
                raise ConfigurationError(
                    f"total_timeout must be a positive number of seconds or None, "
                    f"not {total_timeout!r}"
                )
            policy = dataclasses.replace(policy, total_timeout=total_timeout)
        view = object.__new__(type(self))
        view._engine = (
            self._engine
            if account.base_url == settings.account.base_url
            else self._engine.for_url(account.base_url)
        )
        view._settings = Settings(
            timeout=settings.timeout if isinstance(timeout, NotGiven) else _coerce_timeout(timeout),
            retry=policy,
            queue_timeout=settings.queue_timeout
            if isinstance(queue_timeout, NotGiven)
            else _check_queue_timeout(queue_timeout),
            account=account,
            prepare=settings.prepare
            if isinstance(prepare, NotGiven)
            else coerce_prepare(prepare, "client"),
            hooks=settings.hooks
            if isinstance(event_hooks, NotGiven)
            else coerce_hooks(event_hooks),
        )
        view._is_view = True
        return view

    def _account_of(
        self,
        api_key: str | NotGiven,
        api_secret: str | NotGiven,
        base_url: str | NotGiven,
        default_headers: Mapping[str, str] | NotGiven | None,
        request_id_header: str | NotGiven | None,
    ) -> Account:
        """The account of a view: this one's, unless credentials, base URL or headers change
        (new credentials start their own usage counts)."""
        account = self._settings.account
        new_key = not isinstance(api_key, NotGiven)
        if new_key != (not isinstance(api_secret, NotGiven)):
            raise ConfigurationError("give api_key and api_secret together")
        if not (
            new_key
            or not isinstance(base_url, NotGiven)
            or not isinstance(default_headers, NotGiven)
            or not isinstance(request_id_header, NotGiven)
        ):
            return account
        id_header = (
            account.request_id_header
            if isinstance(request_id_header, NotGiven)
            else check_request_id_header(request_id_header)
        )
        if isinstance(default_headers, NotGiven):
            # Other credentials do not inherit the headers: they often carry a tenant's token.
            headers = () if new_key else check_headers(dict(account.headers), id_header)
        else:
            headers = check_headers(default_headers, id_header)
        auth, usage = account.auth, account.usage
        if new_key:
            auth = _auth_of(
                api_key if isinstance(api_key, str) else "",
                api_secret if isinstance(api_secret, str) else "",
                "with_options",
            )
            # Views with the same credentials count together, whichever view made them.
            usage = self._engine.usage_for(auth)
        return Account(
            auth=auth,
            base_url=account.base_url
            if isinstance(base_url, NotGiven)
            else _check_base_url(base_url),
            headers=headers,
            request_id_header=id_header,
            usage=usage,
        )

    @property
    def with_raw_response(self) -> AsyncRawResponses:
        """The endpoint methods, returning each answer as received (``RawResponse``: status,
        headers, bytes, elapsed, and ``.parse()`` for the usual result)::

            raw = await client.with_raw_response.extract_card("front.jpg")
            print(raw.status_code, raw.headers["content-type"])
            result = raw.parse()
        """
        return AsyncRawResponses(self._engine, self._settings)

    # -- endpoints ---------------------------------------------------------------------------
    async def extract_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> ExtractionResult:
        """Read one side of one document: an ID card side, a passport, ... (``/api/v2/ekyc/card``).

        Args:
            image: a path, a URL, file bytes, or an ``ImageSource``.
            get_thumb: also return the cropped, deskewed document image in ``info.image``.
            prepare: prepare the image before sending (``True`` or a ``Prepare``: HEIC and
                AVIF to JPEG, turned upright, downscaled); ``None`` (default): as the client
                says.

        Returns:
            The answer, with one card per document found.

        Raises:
            InvalidInputError: the input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return (await self._engine.card(self._settings, image, get_thumb, prepare)).result

    async def extract_cards(
        self,
        front: ImageInput,
        back: ImageInput,
        *,
        get_thumb: bool = False,
        prepare: bool | Prepare | None = None,
    ) -> ExtractionResult:
        """Read both sides of one ID card (CMND, CCCD, chip CCCD) (``/api/v2/ekyc/cards``).

        Both sides must be given in the same style (both files or bytes, both URLs, or both
        base64), since the request names one ``format_type``.

        Args:
            front: the front side: a path, a URL, file bytes, or an ``ImageSource``.
            back: the back side, likewise.
            get_thumb: also return the cropped, deskewed images in ``info.image``.
            prepare: prepare both images before sending (see ``extract_card``).

        Returns:
            The answer; ``cards`` holds the front then the back.

        Raises:
            InvalidInputError: an input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return (await self._engine.cards(self._settings, front, back, get_thumb, prepare)).result

    async def ocr_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> ExtractionResult:
        """Read every document in an image or a PDF (``/api/v2/ocr/card``).

        Args:
            image: a path, a URL, file bytes, or an ``ImageSource``; PDFs give one card per page.
            get_thumb: also return the cropped, deskewed document images in ``info.image``.
            prepare: prepare the image before sending (see ``extract_card``; a PDF is sent
                whole).

        Returns:
            The answer, with one card per document (per page for a PDF).

        Raises:
            InvalidInputError: the input was refused before sending.
            APIError: the service answered with an error code (a subclass per code).
            APIStatusError: the service answered with an HTTP error and no error code.
            APIConnectionError: the service could not be reached or did not answer in time.
            MalformedResponseError: the answer was not the documented JSON.
        """
        return (await self._engine.ocr(self._settings, image, get_thumb, prepare)).result

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
                with that error and ``attempts=0``. Default: bad credentials (errorCode 5, HTTP
                401/403), a wrong ``base_url`` (HTTP 404) and quota used up;
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
        async with _batch.extract_as_completed(
            self,
            inputs,
            endpoint=endpoint,
            get_thumb=get_thumb,
            concurrency=concurrency,
            progress=progress,
            fatal_errors=fatal_errors,
        ) as results:
            while True:
                # What is ready is taken without yielding to the event loop for each result.
                try:
                    out.append(results.receive_nowait())
                except anyio.WouldBlock:
                    try:
                        out.append(await results.receive())
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
        out.sort(key=lambda r: r.index)
        return out
