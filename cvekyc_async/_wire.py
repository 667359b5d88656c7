"""What every transport agrees on about the wire, beyond httpx's errors.

Two rules that each transport applies in its own way, so that they behave alike:

- **A connection goes back to the pool only when it holds nothing more.** After an answer, a
  connection is reused only when its parser is idle with no unread bytes, nothing arrived while
  it sat idle, and the server did not ask to close. A server that sends one answer too many (a
  gateway's late real answer after its own timeout answer, a buggy proxy) would otherwise hand
  the extra answer, another person's card, to the next call on that connection. Answers from a
  gateway that gave up waiting (408, 502, 504) close their connection too: the real answer may
  still be on its way.
- **An answer that arrived but is not HTTP** (a garbage status line, conflicting lengths, a head
  over the parser's limits, a broken chunk) is ``UnparsableAnswer``: the request was read and
  may have been billed, but resending would most likely meet the same answer, so the attempt
  loop raises ``MalformedResponseError`` and does not resend it. A connection that ends early
  (before or during an answer) stays a lost connection.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx

__all__ = [
    "HEAD_LIMIT",
    "NotDelivered",
    "UnparsableAnswer",
    "causes",
    "closes_connection",
    "final_answer_started",
    "final_head_length",
    "is_reset",
    "is_unparsable",
    "spare_handle",
    "unread_bytes",
]

#: The most an answer's status line or one header may take, on every transport (httpcore's
#: limit for a whole head is 100 KiB; aiohttp's default of 8,190 bytes a line refused real
#: answers with one long header).
HEAD_LIMIT = 64 * 1024

# Statuses after which the connection is not reused: the gateway stopped waiting, and the
# answer it gave up on may still arrive on the same connection.
_GAVE_UP = frozenset({408, 502, 504})


def closes_connection(status_code: int) -> bool:
    """Whether an answer with this status retires its connection (see the module docstring)."""
    return status_code in _GAVE_UP


class UnparsableAnswer(httpx.RemoteProtocolError):
    """The service sent bytes that are not a valid HTTP answer (the request was sent)."""


class NotDelivered(httpx.ConnectError):
    """A request sent into a kept-alive connection that the server had closed meanwhile, found
    out by a reset: the server's side no longer read the connection, so the request cannot have
    been processed, and resending it cannot bill twice (the race every HTTP/1.1 client meets:
    the server closes an idle connection as the client reuses it)."""


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, outermost first."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_reset(exc: BaseException | None) -> bool:
    """Whether a failure comes from the peer resetting the connection (or a write into one it
    had closed), anywhere in its chain."""
    return any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in causes(exc))


# h11's messages for a connection that ended early: lost, not malformed.
_ENDED_EARLY = ("peer ", "can't receive data when peer state is error")


def is_unparsable(exc: BaseException) -> bool:
    """Whether an httpx error stands for an answer that arrived but could not be parsed."""
    if isinstance(exc, UnparsableAnswer):
        return True
    if not isinstance(exc, httpx.RemoteProtocolError):
        return False
    for seen in causes(exc):
        if type(seen).__module__.startswith("h11") and type(seen).__name__ == "RemoteProtocolError":
            return not str(seen).lower().startswith(_ENDED_EARLY)
    return False


def _past_interim(data: bytes) -> int | None:
    """Where the interim answers (``100 Continue``, ``103 Early Hints``: a head with no body
    each) at the start of ``data`` end, or ``None`` while one of them is still arriving."""
    start = 0
    while data.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1"), start):
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            return None
        start = end + 4
    return start


def final_answer_started(early: bytes) -> bool:
    """Whether bytes a server sent during an upload begin a final answer, past any interim
    ones."""
    start = _past_interim(early)
    return start is not None and start < len(early)


def final_head_length(data: bytes) -> int | None:
    """Where the final answer's head ends in bytes received (past any interim heads), or
    ``None`` while it is incomplete."""
    start = _past_interim(data)
    end = -1 if start is None else data.find(b"\r\n\r\n", start)
    return None if end < 0 else end + 4


def spare_handle(raw: Any) -> socket.socket | None:
    """A second handle on a connection's socket (asyncio, uvloop and trio each wrap theirs):
    what arrived stays readable through it after the event loop has closed its own."""
    try:
        return socket.socket(fileno=os.dup(raw.fileno()))
    except (AttributeError, OSError, ValueError):
        return None


def unread_bytes(sock: socket.socket, limit: int = 64 * 1024) -> bytes:
    """What a socket has received and nobody has read yet, up to ``limit`` (without waiting).
    A reset connection still gives what arrived before the reset."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = sock.recv(limit - size, socket.MSG_DONTWAIT)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
