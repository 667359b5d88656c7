"""Reading an answer's body: at most ``max_response_size`` bytes of it, decoded.

The body is read chunk by chunk straight from the transport's stream and decoded here (the
client asks only for gzip and deflate), so that the cap counts decoded bytes and a decompression
bomb stops at the cap instead of expanding in memory.

Bodies read at once share a budget (``ReadBudget``), so that many large answers arriving together
(a faulty server, a chunked answer with no announced length) do not each fill a buffer up to the
cap: memory stays bounded by the budget, not by the number of reads in flight.

Every transport hands over its answer as a ``Received``: its status, its headers (looked up
one by one without building ``httpx.Headers``, which the aiohttp transport makes only when
something asks for them all) and its body. A body whose ``Content-Length`` is small and plain is
read in one step where the transport can (``read_whole``); the rest goes through the loop
below.

Stopping early needs care: httpx and httpcore read bodies through nested async generators, and
one left suspended is finalised by the garbage collector (trio warns about each). So a read that
stops closes the response first, which closes its connection, and then lets the stream run out:
the transport's generators end on the closed connection's error, having yielded at most what
was already buffered.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import anyio
import httpx

from ._redact import safe_token

__all__ = [
    "ACCEPT_ENCODING",
    "BodyTooLarge",
    "HttpxReceived",
    "ReadBudget",
    "Received",
    "UndecodableBody",
    "read_body",
]

#: What the client tells the service it can decode.
ACCEPT_ENCODING = "gzip, deflate"


#: Bytes a read may hold before it counts against the shared budget: typical answers never wait.
FREE_BYTES = 1024 * 1024
# Compressed data is expanded this much at a time.
_STEP = 256 * 1024
# Seconds that closing an abandoned read may take.
_CLEANUP_SECONDS = 5.0


class Received(Protocol):
    """An answer whose head has arrived, its body still to read, on any transport."""

    @property
    def status_code(self) -> int: ...

    @property
    def http_version(self) -> str: ...

    @property
    def headers(self) -> httpx.Headers:
        """All the headers (built on first use where the transport keeps its own)."""
        ...

    def header(self, name: str) -> str:
        """One header's value, ``""`` without one; a header sent more than once reads as its
        values joined with ``", "``, as ``httpx.Headers`` reads it."""
        ...

    @property
    def stream(self) -> httpx.AsyncByteStream: ...

    #: Whether ``read_whole`` reads the body in one step.
    reads_whole: bool

    async def read_whole(self) -> bytes:
        """The whole body, as sent (called only for a small, announced, plain one)."""
        ...

    async def aclose(self) -> None: ...


class HttpxReceived:
    """An ``httpx.Response`` seen as a ``Received``: its body is read through the loop."""

    __slots__ = ("response",)

    reads_whole = False

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def http_version(self) -> str:
        return self.response.http_version

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def header(self, name: str) -> str:
        value: str = self.response.headers.get(name, "")
        return value

    @property
    def stream(self) -> httpx.AsyncByteStream:
        stream = self.response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return stream

    async def read_whole(self) -> bytes:  # pragma: no cover - reads_whole is False
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.response.aclose()


class ReadBudget:
    """Bytes that one client's reads in progress may hold together.

    A read holding more than ``FREE_BYTES`` waits while the total is over ``limit``, except the
    read that holds the most (the oldest, on a tie), which always goes on: it ends or reaches the
    size cap, and then releases what it held. So the reads together hold at most ``limit`` plus
    one read's cap plus ``FREE_BYTES`` per read, and they cannot all wait for each other.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._held: dict[int, int] = {}
        self._next = 0
        self._changed: anyio.Event | None = None

    def open(self) -> int:
        """Start accounting a read; returns its token."""
        token = self._next
        self._next += 1
        self._held[token] = 0
        return token

    def _leads(self, token: int) -> bool:
        mine = self._held[token]
        return all(mine > h or (mine == h and token <= t) for t, h in self._held.items())

    async def take(self, token: int, size: int) -> None:
        """Account ``size`` more bytes for the read ``token``, waiting while it may not."""
        while (
            self._held[token] + size > FREE_BYTES
            and self.used + size > self.limit
            and not self._leads(token)
        ):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        self._held[token] += size
        self.used += size

    def close(self, token: int) -> None:
        """Release what the read ``token`` held, and wake the reads that wait."""
        self.used -= self._held.pop(token, 0)
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class BodyTooLarge(Exception):
    """The body is over the limit; ``announced`` is its ``Content-Length`` when that said so."""

    def __init__(self, announced: int | None) -> None:
        super().__init__()
        self.announced = announced


class UndecodableBody(Exception):
    """The body does not decode as its ``Content-Encoding`` says; ``body`` is what was read."""

    def __init__(self, reason: str, body: bytes) -> None:
        super().__init__(reason)
        self.body = body


class _Decoder:
    """Decodes one ``Content-Encoding`` (none, gzip or deflate) in bounded pieces."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._started = False
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            shown = safe_token(encoding, "of an unreadable name")
            raise UndecodableBody(
                f"its Content-Encoding {shown} is not one the client asked for", b""
            )

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, at most ``_STEP`` at a time: a chunk of a bomb
        expands piece by piece, each counted before the next is made.

        Raises:
            zlib.error: the data does not decode.
        """
        if self._zlib is None:
            yield data
            return
        first, self._started = not self._started, True
        try:
            out = self._zlib.decompress(data, _STEP)
        except zlib.error:
            if not (first and self.encoding == "deflate"):
                raise
            # Servers send deflate with or without the zlib header: try it raw.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, _STEP)
        yield out
        while self._zlib.unconsumed_tail:
            yield self._zlib.decompress(self._zlib.unconsumed_tail, _STEP)

    def flush(self) -> bytes:
        if self._zlib is None:
            return b""
        tail = self._zlib.flush()
        if not self._zlib.eof:
            raise zlib.error("the compressed stream ends early")
        return tail


async def _abandon(response: Received, iterator: AsyncIterator[bytes]) -> None:
    """Stop reading: close the response (and its connection), then let the stream end."""
    await response.aclose()
    with contextlib.suppress(Exception):
        async for _ in iterator:
            pass


def _content_length(response: Received) -> int | None:
    value = response.header("content-length")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


async def read_body(response: Received, limit: int, budget: ReadBudget | None = None) -> bytes:
    """Read and decode ``response``'s body, at most ``limit`` bytes of it, accounting what it
    holds in ``budget`` when one is given.

    Raises:
        BodyTooLarge: ``Content-Length`` announces more than ``limit`` (nothing is read), or
            the decoded body grows past it (reading stops there).
        UndecodableBody: the body does not decode as its ``Content-Encoding`` says.
        httpx.TransportError: reading failed (timeouts included), as httpx raises it.
    """
    announced = _content_length(response)
    encoding = response.header("content-encoding")
    if encoding:
        encoding = encoding.strip().lower()
    plain = encoding in ("", "identity")
    if announced is not None and plain:
        if announced > limit:
            raise BodyTooLarge(announced)
        if announced <= FREE_BYTES and response.reads_whole:
            # A typical answer: a few kilobytes, its length known. The transport's parser stops
            # at that length, and a read this small never waits on the budget.
            whole = await response.read_whole()
            if len(whole) > limit:  # pragma: no cover - the parser stops at Content-Length
                raise BodyTooLarge(None)
            return whole
    decoder = _Decoder(encoding)
    # One growing buffer: a body in many tiny chunks costs no object per chunk.
    body = bytearray()
    iterator: AsyncIterator[bytes] = response.stream.__aiter__()
    token = budget.open() if budget is not None else 0
    completed = False
    try:
        async for raw in iterator:
            try:
                for piece in decoder.pieces(raw):
                    await _keep(body, piece, limit, budget, token)
            except zlib.error:
                raise UndecodableBody(
                    f"its Content-Encoding {encoding} does not decode", bytes(body)
                ) from None
        try:
            tail = decoder.flush()
        except zlib.error:
            raise UndecodableBody(
                f"its Content-Encoding {encoding} does not decode", bytes(body)
            ) from None
        await _keep(body, tail, limit, budget, token)
        completed = True
        return bytes(body)
    finally:
        # A traceback keeps this frame alive until the cycle collector runs, which bytes do
        # not prompt: the buffer is emptied at once. Cleanup is shielded (a cancelled read
        # still closes its stream) and bounded.
        body.clear()
        if budget is not None:
            budget.close(token)
        aclose = getattr(iterator, "aclose", None)
        if not completed:
            with anyio.move_on_after(_CLEANUP_SECONDS, shield=True):
                await _abandon(response, iterator)
                if aclose is not None:
                    await aclose()
        elif aclose is not None:
            # Run to its end: closing it only finishes it, without waiting on anything (and
            # without the cost of a shielded scope, on every answer).
            await aclose()


async def _keep(
    body: bytearray, piece: bytes, limit: int, budget: ReadBudget | None, token: int
) -> None:
    if len(body) + len(piece) > limit:
        raise BodyTooLarge(None)
    if budget is not None and piece:
        await budget.take(token, len(piece))
    body += piece
