"""An httpx transport that sends through aiohttp (asyncio only).

aiohttp's HTTP/1.1 stack costs about half of httpcore's CPU per request, so on asyncio it is the
faster way to the service. The client keeps speaking httpx (requests, responses, timeouts,
errors); this module turns each into aiohttp's and back, so that the attempt loop sees the same
failures from every transport:

- a connection never made (refused, DNS, TLS, a proxy that would not connect) is
  ``httpx.ConnectError`` / ``httpx.ConnectTimeout``: nothing was sent, a retry cannot bill twice;
- a connection lost once the request had started is ``httpx.ReadError``, a silent server
  ``httpx.ReadTimeout``: the service may have done the work;
- an upload that stops moving for the ``write`` timeout is ``httpx.WriteTimeout``. aiohttp has
  no write timeout of its own: the body is handed over in pieces, and each piece taken moves
  the deadline on;
- an answer that arrived but is not HTTP is ``UnparsableAnswer`` (``_wire``).

The attempt loop calls ``fetch`` directly, with the request's parts as it built them, and gets
an ``AiohttpReceived``: no ``httpx.Request`` or ``httpx.Response`` is made (their headers'
parsing and encoding checks were a tenth of the client's cost per call), and ``httpx.Headers``
only when something asks for them all (an error, the raw answer). ``handle_async_request``
keeps the transport usable wherever httpx wants one.

aiohttp reads every connection as data arrives, idle ones included, so bytes a server sends
after its answer never show on the socket: its protocol here notes them, and a connection that
received any is not reused (``_wire``'s first rule).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import math
import select
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import anyio
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError, TransferEncodingError

from ._wire import (
    HEAD_LIMIT,
    NotDelivered,
    UnparsableAnswer,
    causes,
    closes_connection,
    final_head_length,
    is_reset,
    spare_handle,
    unread_bytes,
)

__all__ = ["AiohttpReceived", "AiohttpTransport"]

# Uploads larger than this are handed to aiohttp in pieces of this size, each piece moving the
# write deadline on; a smaller body goes in one write, which the socket's buffer takes at once.
_PIECE = 256 * 1024
# The most of an answer kept to find where its head ends.
_HEAD_KEEP = 256 * 1024


def _unparsable(exc: BaseException) -> bool:
    """Whether aiohttp failed on an answer it received but could not parse (not on one that
    ended early: a body shorter than announced is a lost connection)."""
    for seen in causes(exc):
        if isinstance(seen, HttpProcessingError):
            ended_early = isinstance(seen, ContentLengthError) or (
                isinstance(seen, TransferEncodingError) and "not enough data" in str(seen).lower()
            )
            return not ended_early
    return False


def _mapped(exc: BaseException) -> type[httpx.TransportError]:
    """The httpx error for an aiohttp failure, by whether the request may have been sent."""
    if _unparsable(exc):
        return UnparsableAnswer
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return httpx.ProxyError  # the proxy answered the tunnel request with an error
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError  # includes DNS, TLS and proxy connection failures
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout
    if isinstance(exc, (aiohttp.InvalidURL, ValueError)):
        return httpx.UnsupportedProtocol
    return httpx.ReadError


def _os_error(exc: BaseException) -> BaseException | None:
    """The operating system's error under an aiohttp failure, if there is one."""
    for seen in causes(exc):
        if isinstance(seen, OSError) and not type(seen).__module__.startswith("aiohttp"):
            return seen
    return None


class _Translated:
    """``with _translated:`` turns aiohttp's failures into httpx's. aiohttp's messages quote the
    URL (a query may hold an image URL) and what the server sent: the error keeps only the
    failure's type and the operating system's error. (A class, not a ``@contextmanager``: it
    is entered twice per request.)"""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is not None and isinstance(exc, (aiohttp.ClientError, OSError, ValueError)):
            raise _mapped(exc)(type(exc).__name__) from _os_error(exc)


_translated = _Translated()


class _Upload:
    """A body handed over in pieces; taking a piece moves the write deadline on. Once the
    server has begun to answer, no more pieces are handed over: the answer (a 413 before a
    large upload is read, say) is what the call gets, not the broken pipe that writing on
    into a closing connection would end in."""

    __slots__ = ("_data", "_offset", "_timeout", "scope")

    def __init__(self, data: bytes, scope: anyio.CancelScope, timeout: float) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self._timeout = timeout
        self.scope: anyio.CancelScope | None = scope

    def __aiter__(self) -> _Upload:
        return self

    async def __anext__(self) -> bytes:
        scope = self.scope
        if self._offset >= len(self._data):
            # aiohttp asks for more only once the last piece is written: the upload is over.
            if scope is not None:
                scope.deadline = math.inf
            raise StopAsyncIteration
        handler = _sending.get()
        if self._offset and handler is not None and _readable(handler.transport):
            # Let the loop read what arrived: an interim answer (100 Continue) is no reason
            # to stop, a final one is.
            await asyncio.sleep(0)
        if self._offset and handler is not None and handler.final:
            handler.force_close()  # the body was cut short: the connection is done
            if scope is not None:
                scope.deadline = math.inf
            raise StopAsyncIteration
        piece = self._data[self._offset : self._offset + _PIECE]
        self._offset += _PIECE
        if scope is not None:
            scope.deadline = anyio.current_time() + self._timeout
        return piece  # type: ignore[return-value]  # aiohttp writes any bytes-like piece


class _Body(httpx.AsyncByteStream):
    """An answer's body as aiohttp receives it; closing an unfinished one drops its connection."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            with _translated:
                chunk = await content.readany()
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        # release() hands a fully read connection back to the pool (if it holds nothing more,
        # see _Connector) and closes any other.
        self._response.release()


class AiohttpReceived:
    """An answer as aiohttp parsed it, its body still to read (a ``_read.Received``)."""

    __slots__ = ("_headers", "_response", "status_code")

    reads_whole = True

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self._headers: httpx.Headers | None = None

    @property
    def http_version(self) -> str:
        version = self._response.version
        return f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP/1.1"

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(self._response.raw_headers)
        return self._headers

    def header(self, name: str) -> str:
        # A header sent more than once reads as its values joined, as httpx reads it, so that
        # every transport sees the same answer (two Content-Encodings are no known encoding).
        values = self._response.headers.getall(name, ())
        return values[0] if len(values) == 1 else ", ".join(values)

    @property
    def stream(self) -> httpx.AsyncByteStream:
        return _Body(self._response)

    async def read_whole(self) -> bytes:
        # The payload's own reader, not ClientResponse.read(): that one then waits for the
        # upload to finish, which a server that answered early and stopped reading never lets
        # happen. aclose() ends the upload instead.
        with _translated:
            return await self._response.content.read()

    async def aclose(self) -> None:
        # release() hands a fully read connection back to the pool (if it holds nothing more,
        # see _Connector) and closes any other.
        self._response.release()

    def as_httpx(self, request: httpx.Request) -> httpx.Response:
        response = self._response
        return httpx.Response(
            self.status_code,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={
                "http_version": self.http_version.encode("ascii"),
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )


async def _body_of(request: httpx.Request) -> bytes | None:
    """The request's body as bytes (``None`` for none): the client hands its bodies over whole
    (``data``), other requests as httpx built them."""
    data = getattr(request.stream, "data", None)
    if not isinstance(data, bytes):
        data = await request.aread()
    return data or None


def _readable(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a connection's socket has something to read (or has been closed): for an idle
    kept-alive connection, the server has closed it or spoken out of turn (httpcore checks the
    same); during an upload, the server has begun to answer."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if hasattr(select, "poll"):
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            return bool(poll.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


# The kept-alive connection the current request was given, if it was given one (set by
# _Connector._get, read by AiohttpTransport when the request fails).
_reused: contextvars.ContextVar[_Handler | None] = contextvars.ContextVar("_reused", default=None)
# The connection the current request is being sent on (set as it goes out; aiohttp writes the
# body in a task started then, which sees it).
_sending: contextvars.ContextVar[_Handler | None] = contextvars.ContextVar("_sending", default=None)


class _Handler(ResponseHandler):
    """aiohttp's protocol for one connection, noting bytes that arrive while it sits idle in
    the pool: whatever they are (an answer nobody asked for, the rest of one), the connection
    is not used again. It also counts the bytes of the answer to the request in progress."""

    _idle = False
    _unsolicited = False
    answered = 0
    final = False  # a final (not 1xx) answer to the request in progress has been parsed
    # Where the answer ends on the wire, to tell whether bytes came past it in the same read
    # (aiohttp's parser keeps a partial next head to itself, and drops it with the next request).
    _head = b""
    _head_end: int | None = None
    _length: int | None = None
    _chunked = False
    _last = b""

    def data_received(self, data: bytes) -> None:
        if data:
            if self._idle:
                self._unsolicited = True
            else:
                self._account(data)
            self.answered += len(data)
        super().data_received(data)

    def _account(self, data: bytes) -> None:
        if self._head_end is None and len(self._head) < _HEAD_KEEP:
            self._head += data
            end = final_head_length(self._head)
            if end is not None:
                self._head_end = end
                self._head = b""
        self._last = (self._last + data)[-4:]

    def _past_answer(self) -> bool:
        """Whether more bytes came than the final answer's framing says it holds."""
        if not self.final or self._head_end is None:
            return False
        if self._chunked:
            return self._last != b"\r\n\r\n"  # a chunked body ends with an empty line
        if self._length is not None:
            return self.answered > self._head_end + self._length
        return False

    def feed_data(self, data: Any, size: int = 0) -> None:
        # An answer parsed: one whose status retires the connection marks it now (aiohttp
        # hands a connection back as soon as a short body is read, before any caller sees it).
        message = data[0]
        code = getattr(message, "code", 0)
        if code >= 200 and not self.final:
            self.final = True
            self._chunked = bool(getattr(message, "chunked", False))
            length = message.headers.get("Content-Length", "") if code not in (204, 304) else "0"
            self._length = int(length) if length.isdigit() and length.isascii() else None
        if closes_connection(code):
            self._should_close = True
        super().feed_data(data, size)

    def connection_lost(self, exc: BaseException | None) -> None:
        # A server that answers an upload early (413) and closes resets the connection while
        # the body is still going out; asyncio then drops the connection without reading what
        # had arrived. The socket is still open here: what it holds is parsed first, so that
        # the answer reaches the call.
        if is_reset(exc) and not self.final and self.transport is not None:
            spare = spare_handle(self.transport.get_extra_info("socket"))
            if spare is not None:
                try:
                    data = unread_bytes(spare)
                finally:
                    spare.close()
                if data:
                    self.data_received(data)
        transport = self.transport
        super().connection_lost(exc)
        if transport is not None and not transport.is_closing():
            # Python 3.10's TLS transport counts as open until closed itself, whatever became of
            # the connection under it (a TLS alert, say), and warns of it when collected.
            transport.abort()

    def set_response_params(self, *args: Any, **kwargs: Any) -> None:
        # Called as a request goes out on this connection: from here on, bytes are its answer.
        self._idle = False
        self.answered = 0
        self.final = False
        self._head, self._head_end, self._length, self._last = b"", None, None, b""
        _sending.set(self)
        super().set_response_params(*args, **kwargs)

    @property
    def should_close(self) -> bool:
        # aiohttp's own test covers the rest: the server asked to close, the body was not read
        # to its end, an error, an answer already parsed past this one.
        return self._unsolicited or self._past_answer() or super().should_close


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector with ``_wire``'s rule for reuse, applied where a connection is handed
    back and again where it is taken: a connection that holds or has received anything beyond
    its last answer, or that the server has closed, is closed instead (aiohttp checks only at
    release, and finds a closed connection only when it writes to one)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = functools.partial(_Handler, loop=self._loop)  # type: ignore[assignment]

    def _release(self, key: Any, protocol: ResponseHandler, **kwargs: Any) -> None:
        if isinstance(protocol, _Handler):
            protocol._idle = True
        super()._release(key, protocol, **kwargs)

    async def _get(self, *args: Any, **kwargs: Any) -> aiohttp.connector.Connection | None:
        while True:
            connection = await super()._get(*args, **kwargs)
            if connection is None:
                return None
            protocol = connection.protocol
            if (
                protocol is not None
                and not protocol.should_close
                and not _readable(connection.transport)
            ):
                if isinstance(protocol, _Handler):
                    _reused.set(protocol)
                return connection
            connection.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Requests sent through one ``aiohttp.ClientSession`` (made on first use, in its loop).

    Args:
        max_connections: connections open at once (aiohttp's connector limit).
        keepalive_expiry: seconds an idle connection is kept.
        verify: an SSL context, or whether to verify certificates (httpx's default context).
        proxy: an HTTP(S) proxy to connect through (CONNECT for https); SOCKS is not supported.
        trust_env: read ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` for the SSL context, as httpx does.
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
        if proxy is not None and proxy.url.scheme not in ("http", "https"):
            raise ValueError("transport='aiohttp' connects through http(s) proxies only")
        self._ssl = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify, trust_env=trust_env)
        )
        self._max_connections = max_connections
        self._keepalive = keepalive_expiry
        self._proxy: dict[str, Any] = {}
        if proxy is not None:
            self._proxy["proxy"] = str(proxy.url.copy_with(username=None, password=None))
            headers = dict(proxy.headers)
            if proxy.raw_auth is not None:
                user, password = proxy.raw_auth
                token = base64.b64encode(user + b":" + password).decode("ascii")
                headers["Proxy-Authorization"] = f"Basic {token}"
            if headers:
                self._proxy["proxy_headers"] = headers
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = _Connector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # the client decodes bodies itself, under its size cap
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            trust_env=False,  # the client reads the environment itself
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=HEAD_LIMIT,
            max_field_size=HEAD_LIMIT,
        )
        # aiohttp sends a GET again, unasked, when its connection breaks: a GET of an image by
        # URL may have been read and billed, and whether to resend is the retry policy's call.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self._session

    def _timeout(self, phases: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
        key = (phases.get("connect"), phases.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            # The pool phase is the client's limiter's business: its slots match the connector.
            # ``connect`` bounds making a connection whole, as httpcore's timeouts do: its TCP
            # and TLS steps (``connect`` each) and, through a proxy, the answer to CONNECT
            # (a read).
            making = None
            if key[0] is not None:
                making = key[0] + (key[1] or 0.0) if self._proxy else key[0] * 2
            found = aiohttp.ClientTimeout(
                total=None, connect=making, sock_connect=key[0], sock_read=key[1]
            )
            if len(self._timeouts) < 64:
                self._timeouts[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        received = await self.fetch(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            await _body_of(request),
            request.extensions.get("timeout", {}),
        )
        return received.as_httpx(request)

    async def fetch(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        data: bytes | None,
        phases: Mapping[str, float | None],
    ) -> AiohttpReceived:
        """Send a request given by its parts (``headers`` as they go out, ``Host`` included;
        ``phases`` as ``httpx.Timeout.as_dict()``); its answer once the head has arrived.

        Raises:
            httpx.TransportError: as the module docstring says (``NotDelivered`` for a
                kept-alive connection the server had closed).
        """
        session = self._session or self._open()
        taken, sending = _reused.set(None), _sending.set(None)
        try:
            with _translated:
                response = await self._send(session, method, url, headers, data, phases)
        except httpx.ReadError as exc:
            reused = _reused.get()
            if reused is not None and reused.answered == 0 and is_reset(exc.__cause__):
                raise NotDelivered("the server had closed the kept-alive connection") from None
            raise
        finally:
            _reused.reset(taken)
            _sending.reset(sending)
        return AiohttpReceived(response)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        data: bytes | None,
        phases: Mapping[str, float | None],
    ) -> aiohttp.ClientResponse:
        options: dict[str, Any] = {
            "headers": headers,
            "allow_redirects": False,
            "compress": False,
            "timeout": self._timeout(phases),
            **self._proxy,
        }
        write = phases.get("write")
        if data is None or len(data) <= _PIECE:
            return await session.request(method, url, data=data or None, **options)
        scope = anyio.CancelScope()
        upload = _Upload(data, scope, math.inf if write is None else write)
        try:
            with scope:
                response = await session.request(method, url, data=upload, **options)
        finally:
            upload.scope = None
        if scope.cancelled_caught:
            raise httpx.WriteTimeout("the upload stopped moving")
        return response

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def __del__(self) -> None:
        # Never closed (the client warns of that itself, once): its connections are dropped
        # quietly, rather than with aiohttp's "Unclosed client session" and "Unclosed
        # connector" on stderr, which httpx's pools never print.
        session = self._session
        if session is None or session.closed:
            return
        connector = session.connector
        with contextlib.suppress(Exception):
            session._connector = None  # the session now reads as closed
            if connector is not None:
                connector._close()
