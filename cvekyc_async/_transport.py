"""The transports behind ``AsyncCVClient``: how requests reach the network.

``"auto"`` (the default) is aiohttp's stack on asyncio (``_aiohttp``: about half the CPU per
request) and the sharded httpx pools under trio. One behaviour suite runs on each.

httpx's pool (httpcore) scans every connection and every waiting request each time a request
starts or ends, so its cost per request grows with the requests in flight: measured here, one
pool served 600-850 requests/s with 16 in flight but 100-170 with 64 to 256 (see
``benchmarks/README.md``). ``ShardedTransport`` keeps httpx as the interface but spreads the
requests over several small pools, each holding a few connections, and sends each request to
the pool with the fewest in flight; its cost per request then stays flat as concurrency rises.

Every httpx pool built here is a ``GuardedPool``: httpcore checks that an idle connection's
socket has nothing to read before reusing it, but not what its parser already buffered past an
answer (bytes that came in the same read). ``GuardedPool`` retires such a connection when its
answer is closed, so that ``_wire``'s rule for reuse holds as it does on aiohttp.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from ._wire import (
    NotDelivered,
    UnparsableAnswer,
    closes_connection,
    final_answer_started,
    is_reset,
    spare_handle,
    unread_bytes,
)

__all__ = [
    "DEFAULT_CONNECTIONS_PER_POOL",
    "AutoTransport",
    "GuardedPool",
    "ShardedTransport",
    "TransportChoice",
    "build_transport",
    "environment_proxy",
]

TransportChoice = Literal["auto", "sharded", "pool", "aiohttp"]

#: Connections per small pool. Throughput was flat from 2 to 8 per pool and fell past 16.
DEFAULT_CONNECTIONS_PER_POOL = 4


def _http11_of(stream: object) -> Any:
    """The httpcore HTTP/1.1 connection an httpx answer's body is read from, or ``None`` (HTTP/2,
    or an httpcore whose insides differ from the 1.x series)."""
    pool_request = getattr(getattr(stream, "_httpcore_stream", None), "_pool_request", None)
    connection = getattr(pool_request, "connection", None)
    for _ in range(4):  # a pooled connection, through a proxy's, to the HTTP/1.1 one
        if connection is None or hasattr(connection, "_h11_state"):
            return connection
        connection = getattr(connection, "_connection", None)
    return None


class _Retiring(httpx.AsyncByteStream):
    """An answer's body from an httpx pool. Closing it hands the connection back to the pool,
    unless its parser holds bytes past the answer or its status retires it: then the connection
    is closed once the pool has it back."""

    __slots__ = ("_inner", "_retire")

    def __init__(self, inner: httpx.AsyncByteStream, retire: bool) -> None:
        self._inner = inner
        self._retire = retire

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        connection = _http11_of(self._inner)
        retire = self._retire
        if connection is not None and not retire:
            try:
                retire = bool(connection._h11_state.trailing_data[0])
            except AttributeError:
                retire = False
        await self._inner.aclose()
        if retire and connection is not None and connection.is_idle():
            # A request the pool assigned to it meanwhile finds it closed and is sent on
            # another connection (httpcore's ConnectionNotAvailable).
            await connection.aclose()


# Uploads larger than this are written in pieces of this size, looking for an early answer
# before each (the aiohttp transport hands its uploads over in pieces of the same size).
_PIECE = 256 * 1024


# The connection the current request was written on (set by _Watched.write, in the task that
# sends; read by GuardedPool when the request fails).
_writing: contextvars.ContextVar[_Watched | None] = contextvars.ContextVar("_writing", default=None)


class _Watched(httpcore.AsyncNetworkStream):
    """A connection that stops writing an upload once the server has begun to answer.

    A server may answer before it has read the whole request (413 for an upload too large)
    and close. On asyncio, writing on into the closed connection fails and takes the unread
    answer with it, so the call would end as a broken connection and be sent again. Here a
    large upload is written in pieces; when the server has spoken before a piece, its answer
    is read and kept, and the write fails: httpcore then reads the answer (served from what was
    kept), as it does for any write that fails. TLS connections are written whole: their
    socket also reads as ready for the protocol's own messages.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._early = b""
        #: Requests written on this connection so far, and answer bytes read since the last.
        self.requests = 0
        self.received = 0
        self._reading = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._reading = True
        if self._early:
            data, self._early = self._early[:max_bytes], self._early[max_bytes:]
        else:
            data = await self._inner.read(max_bytes, timeout)
        self.received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._reading:  # a new request on this connection
            self._reading = False
            self.requests += 1
            self.received = 0
            _writing.set(self)
        inner = self._inner
        if len(buffer) <= _PIECE or inner.get_extra_info("ssl_object") is not None:
            await inner.write(buffer, timeout)
            return
        # On asyncio a failed write closes the connection, unread answer and all; a second
        # handle on the socket keeps what arrived readable after that.
        spare = spare_handle(inner.get_extra_info("socket"))
        try:
            view = memoryview(buffer)
            for start in range(0, len(view), _PIECE):
                if start and inner.get_extra_info("is_readable"):
                    self._early += await inner.read(64 * 1024, timeout)
                    if final_answer_started(self._early):
                        raise httpcore.WriteError("the server answered before the upload ended")
                await inner.write(view[start : start + _PIECE], timeout)  # type: ignore[arg-type]
        except httpcore.WriteError:
            if spare is not None and not self._early:
                self._early = unread_bytes(spare)
            raise
        finally:
            if spare is not None:
                spare.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # Still watched: the request count and the answer's bytes tell a stale connection
        # over TLS too (uploads over TLS are written whole, see above).
        return _Watched(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._early:
            return True
        return self._inner.get_extra_info(info)


class _WatchedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, its plain TCP connections ``_Watched``."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Watched(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(
        self, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - the client connects over TCP
        return await self._inner.connect_unix_socket(*args, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedPool(httpx.AsyncHTTPTransport):
    """httpx's connection pool with ``_wire``'s rules: a connection holding bytes past an
    answer, or after a gateway gave up (408, 502, 504), is not reused; an early answer ends
    the upload (``_Watched``); an answer with both
    ``Content-Length`` and ``Transfer-Encoding`` (which aiohttp refuses to parse, and RFC 9112
    says to handle as an error: it is how responses are split) is ``UnparsableAnswer``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        backend = getattr(pool, "_network_backend", None)
        if backend is not None:
            pool._network_backend = _WatchedBackend(backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _writing.set(None)
        try:
            response = await super().handle_async_request(request)
        except (httpx.ReadError, httpx.WriteError) as exc:
            # A reset of a kept-alive connection before any byte of the answer: the server had
            # closed it (see NotDelivered).
            stream = _writing.get()
            reused = stream is not None and stream.requests > 1 and not stream.received
            if reused and is_reset(exc):
                raise NotDelivered("the server had closed the kept-alive connection") from None
            raise
        finally:
            _writing.reset(token)
        headers = response.headers
        if "transfer-encoding" in headers and "content-length" in headers:
            connection = _http11_of(response.stream)
            await response.aclose()
            if connection is not None and connection.is_idle():
                await connection.aclose()
            raise UnparsableAnswer("an answer with both Content-Length and Transfer-Encoding")
        response.stream = _Retiring(
            response.stream,  # type: ignore[arg-type]
            closes_connection(response.status_code),
        )
        return response


class _Release(httpx.AsyncByteStream):
    """A response body that tells its pool's counter when it is closed."""

    __slots__ = ("_counts", "_index", "_inner")

    def __init__(self, inner: httpx.AsyncByteStream, counts: list[int], index: int) -> None:
        self._inner = inner
        self._counts: list[int] | None = counts
        self._index = index

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._counts is not None:
                self._counts[self._index] -= 1
                self._counts = None


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several small httpx connection pools behind one transport.

    A request goes to the pool with the fewest requests in flight, and counts as in flight
    until its response is closed (the connection is busy until then).

    Args:
        max_connections: connections across all pools.
        connections_per_pool: connections in each pool.
        keepalive_expiry: seconds an idle connection is kept.
        verify: TLS verification, as httpx takes it; one SSL context is shared by all pools.
        proxy: the proxy every pool connects through, if any.
        trust_env: read ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` for the SSL context, as httpx does.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        connections_per_pool: int = DEFAULT_CONNECTIONS_PER_POOL,
        keepalive_expiry: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        proxy: httpx.Proxy | None = None,
        trust_env: bool = True,
    ) -> None:
        per_pool = max(1, min(connections_per_pool, max_connections))
        count = -(-max_connections // per_pool)
        context = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify, trust_env=trust_env)
        )
        limits = httpx.Limits(
            max_connections=per_pool,
            max_keepalive_connections=per_pool,
            keepalive_expiry=keepalive_expiry,
        )
        self._pools = [
            GuardedPool(verify=context, limits=limits, proxy=proxy) for _ in range(count)
        ]
        self._in_flight = [0] * count

    @property
    def pools(self) -> int:
        """How many small pools there are."""
        return len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counts = self._in_flight
        index = counts.index(min(counts))
        counts[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            counts[index] -= 1
            raise
        response.stream = _Release(response.stream, counts, index)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def environment_proxy(url: str) -> httpx.Proxy | None:
    """The proxy the environment names for ``url``, as httpx reads it (``trust_env=True``).

    ``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme, else ``ALL_PROXY`` (upper or lower
    case), unless ``NO_PROXY`` names the host (``*`` for every host; ``example.com`` for it and
    its subdomains; ``https://example.com`` for that scheme and host).
    """
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    if not chosen:
        return None
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    plain = []
    for entry in (e.strip() for e in proxies.get("no", "").split(",")):
        if "://" not in entry:
            plain.append(entry)
            continue
        # httpx reads an entry with a scheme as a URL pattern: that scheme, that exact host.
        pattern = urlsplit(entry)
        same_port = pattern.port is None or pattern.port == parts.port
        if pattern.scheme in (parts.scheme, "all") and pattern.hostname == host and same_port:
            return None
    bypass_rules = dict(proxies, no=",".join(e for e in plain if e))
    if urllib.request.proxy_bypass_environment(netloc, bypass_rules):  # type: ignore[attr-defined]
        return None
    if "://" not in chosen:
        chosen = "http://" + chosen  # as curl and httpx read "proxy:3128"
    return httpx.Proxy(chosen)


def _aiohttp_installed() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _respx_mocking() -> bool:
    """Whether respx is mocking httpx's pools right now (a test's routes expect the requests)."""
    respx = sys.modules.get("respx")
    if respx is None:
        return False
    try:
        return any(m.routers for m in respx.mocks.Mocker.registry.values())
    except AttributeError:
        return False


class AutoTransport(httpx.AsyncBaseTransport):
    """The transport ``"auto"`` stands for: aiohttp on asyncio when it is installed (and no
    SOCKS proxy is named), else the sharded httpx pools (always under trio). The choice is made
    at the first request, in its event loop.

    respx, which tests use to mock httpx, intercepts httpx's pools only: while it mocks, requests
    go to the sharded pools, so that tests written for httpx keep working.

    Args: as ``build_transport``'s.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        proxy: httpx.Proxy | None = None,
        trust_env: bool = True,
    ) -> None:
        self._options: dict[str, Any] = {
            "max_connections": max_connections,
            "keepalive_expiry": keepalive_expiry,
            "verify": verify,
            "proxy": proxy,
            "trust_env": trust_env,
        }
        self._proxy = proxy
        self._built: dict[str, httpx.AsyncBaseTransport] = {}
        #: The transport chosen for this event loop, once a request has been made.
        self.choice: TransportChoice | None = None
        if proxy is not None and proxy.url.scheme not in ("http", "https"):
            # Only the httpx pools take a SOCKS proxy: built now, so that a missing socksio
            # is a ConfigurationError of the constructor, not an ImportError of a call.
            self.choice = "sharded"
            self._get("sharded")

    def _get(self, choice: TransportChoice) -> httpx.AsyncBaseTransport:
        found = self._built.get(choice)
        if found is None:
            found = self._built[choice] = build_transport(choice, **self._options)
        return found

    def resolve(self) -> httpx.AsyncBaseTransport:
        """The transport requests go to from now on: the one chosen for this event loop, or
        this one while respx is imported (it decides per request)."""
        if self.choice is None:
            try:
                asyncio.get_running_loop()
                on_asyncio = True
            except RuntimeError:
                on_asyncio = False
            self.choice = "aiohttp" if on_asyncio and _aiohttp_installed() else "sharded"
        if "respx" in sys.modules:
            return self
        return self._get(self.choice)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.choice is None:
            self.resolve()
        assert self.choice is not None
        choice: TransportChoice = "sharded" if _respx_mocking() else self.choice
        return await self._get(choice).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._built.values():
            await transport.aclose()


def build_transport(
    choice: TransportChoice,
    *,
    max_connections: int,
    keepalive_expiry: float = 30.0,
    verify: ssl.SSLContext | bool = True,
    proxy: httpx.Proxy | None = None,
    trust_env: bool = True,
) -> httpx.AsyncBaseTransport:
    """The transport for a ``transport=`` choice of ``AsyncCVClient``; ``verify`` is the SSL
    context every connection uses (``_tls.ssl_context``), or whether to verify with httpx's.

    Raises:
        ImportError: ``"aiohttp"`` without aiohttp installed, or a SOCKS proxy without
            ``socksio``.
        ValueError: an unknown choice, or a SOCKS proxy for ``"aiohttp"``.
    """
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "keepalive_expiry": keepalive_expiry,
        "verify": verify,
        "proxy": proxy,
        "trust_env": trust_env,
    }
    if choice == "auto":
        return AutoTransport(**options)
    if choice == "sharded":
        return ShardedTransport(**options)
    if choice == "aiohttp":
        from ._aiohttp import AiohttpTransport

        return AiohttpTransport(**options)
    if choice == "pool":
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
        return GuardedPool(limits=limits, proxy=proxy, verify=verify, trust_env=trust_env)
    raise ValueError(f"transport must be 'auto', 'sharded', 'pool' or 'aiohttp', not {choice!r}")
