"""Reading an answer's body: at most ``max_response_size`` bytes of it, decoded.

The body is read chunk by chunk straight from the transport's stream and decoded here (the
client asks only for gzip and deflate), so that the cap counts decoded bytes and a decompression
bomb stops at the cap instead of expanding in memory.

Stopping early needs care: httpx and httpcore read bodies through nested async generators, and
one left suspended is finalised by the garbage collector (trio warns about each). So a read that
stops closes the response first, which closes its connection, and then lets the stream run out:
the transport's generators end on the closed connection's error, having yielded at most what
was already buffered.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator

import httpx

__all__ = ["ACCEPT_ENCODING", "BodyTooLarge", "UndecodableBody", "read_body"]

#: What the client tells the service it can decode.
ACCEPT_ENCODING = "gzip, deflate"


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
    """Decodes one ``Content-Encoding`` (none, gzip or deflate), never past a size."""

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
            raise UndecodableBody(
                f"its Content-Encoding {encoding[:40]!r} is not one the client asked for", b""
            )

    def decode(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """Decode ``data`` into at most ``room + 1`` bytes; also say whether input was left
        over (the output would have been larger still)."""
        if self._zlib is None:
            return data, False
        first, self._started = not self._started, True
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            if not (first and self.encoding == "deflate"):
                raise
            # Servers send deflate with or without the zlib header: try it raw.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, room + 1)
        return out, bool(self._zlib.unconsumed_tail)

    def flush(self) -> bytes:
        if self._zlib is None:
            return b""
        tail = self._zlib.flush()
        if not self._zlib.eof:
            raise zlib.error("the compressed stream ends early")
        return tail


async def _abandon(response: httpx.Response, iterator: AsyncIterator[bytes]) -> None:
    """Stop reading: close the response (and its connection), then let the stream end."""
    await response.aclose()
    with contextlib.suppress(Exception):
        async for _ in iterator:
            pass


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """Read and decode ``response``'s body, at most ``limit`` bytes of it.

    Raises:
        BodyTooLarge: ``Content-Length`` announces more than ``limit`` (nothing is read), or
            the decoded body grows past it (reading stops there).
        UndecodableBody: the body does not decode as its ``Content-Encoding`` says.
        httpx.TransportError: reading failed (timeouts included), as httpx raises it.
    """
    announced = _content_length(response)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if announced is not None and announced > limit and encoding in ("", "identity"):
        raise BodyTooLarge(announced)
    decoder = _Decoder(encoding)
    chunks: list[bytes] = []
    size = 0
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    iterator: AsyncIterator[bytes] = stream.__aiter__()
    try:
        async for raw in iterator:
            try:
                data, more = decoder.decode(raw, limit - size)
            except zlib.error:
                raise UndecodableBody(
                    f"its Content-Encoding {encoding!r} does not decode", b"".join(chunks)
                ) from None
            size += len(data)
            if size > limit or more:
                raise BodyTooLarge(None)
            chunks.append(data)
        try:
            tail = decoder.flush()
        except zlib.error:
            raise UndecodableBody(
                f"its Content-Encoding {encoding!r} does not decode", b"".join(chunks)
            ) from None
        if size + len(tail) > limit:
            raise BodyTooLarge(None)
        chunks.append(tail)
    except (BodyTooLarge, UndecodableBody):
        await _abandon(response, iterator)
        raise
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return b"".join(chunks)
