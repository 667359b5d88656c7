"""Request bodies: multipart uploads and base64 JSON, encoded once per call and sent as one chunk.

httpx's own multipart and byte streams iterate with async generators; a request cancelled while
its body is being written leaves such a generator unfinished, which trio reports as a
``ResourceWarning`` (httpx issue 3686). ``BodyStream`` iterates with a plain object instead,
and encoding the body once also lets retries resend it without building it again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

import httpx
import msgspec

from ._inputs import Payload

__all__ = ["BodyStream", "encode_body"]

_json = msgspec.json.Encoder()


class _OneChunk:
    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


class BodyStream(httpx.AsyncByteStream):
    """A request body held in memory, sent as a single chunk; can be sent again on retry."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _OneChunk(self.data)


def _quote(value: str) -> str:
    # As browsers and httpx do for form-data parameters.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_body(payloads: Sequence[tuple[str, Payload]]) -> tuple[str, bytes]:
    """The ``Content-Type`` and bytes of a POST body for ``file`` or ``base64`` payloads."""
    if payloads[0][1].format_type == "base64":
        return "application/json", _json.encode({name: p.data for name, p in payloads})
    boundary = os.urandom(16).hex()
    chunks: list[bytes] = []
    for name, p in payloads:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote(name)}"; '
            f'filename="{_quote(p.filename)}"\r\n'
            f"Content-Type: {p.content_type}\r\n\r\n"
        )
        data = p.data if isinstance(p.data, bytes) else p.data.encode()
        chunks += [head.encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)
