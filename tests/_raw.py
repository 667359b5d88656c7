"""Raw servers on loopback for tests that need answers no real server sends: ``RawServer`` runs
an asyncio loop in a thread and hands each connection, its request read, to a handler;
``silent_server`` takes connections and never reads or answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
_Self = TypeVar("_Self", bound="_LoopServer")


def content_length(head: bytes) -> int:
    """A request head's ``Content-Length`` (0 without one)."""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return length


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request's head, its body read (by ``Content-Length``) and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(content_length(head))
    return head


async def _drain_input(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


class _SaysClose:
    """A writer that adds ``Connection: close`` to an answer's head (unless it names a
    ``Connection`` itself): the server closes each connection after one answer, and says so,
    as HTTP/1.1 asks. Otherwise a client may send its next request into the closing connection."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first and data.startswith(b"HTTP/1."):
            line, sep, rest = data.partition(b"\r\n")
            head = rest.split(b"\r\n\r\n", 1)[0].lower()
            if sep and b"\nconnection:" not in b"\n" + head:
                data = line + b"\r\nConnection: close\r\n" + rest
        self._first = False
        self._writer.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


class _LoopServer:
    """A server on 127.0.0.1 run by an asyncio loop in a thread: ``with`` starts it and, at
    the end, ends the connections still open and stops it. Subclasses define ``_serve``."""

    def __init__(self) -> None:
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        while self._tasks:
            await asyncio.sleep(0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self: _Self) -> _Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class RawServer(_LoopServer):
    """``with RawServer(handler) as server:`` serves on ``server.port`` until the block ends.

    The handler gets each request's head and the writer; the connection is closed after it
    (the answer's head says so). With ``read_body=False`` the server answers once it has the
    head, leaving the body unread (as a proxy refusing an upload does).
    """

    def __init__(self, handler: Handler, *, read_body: bool = True) -> None:
        super().__init__()
        self.handler = handler
        self.read_body = read_body
        self.requests = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.read_body:
            head = await read_request(reader)
        else:  # an answer to the head alone, the body left unread
            head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        await self.handler(head, _SaysClose(writer))  # type: ignore[arg-type]
        await writer.drain()
        if not self.read_body:
            # A lingering close, as servers do after an early answer: closing with the body
            # unread would reset the connection, and a reset may discard the answer in the
            # client's buffers before it is read. Say "no more" and read what still comes
            # until the client, having its answer, closes (bounded, as nginx's is).
            writer.write_eof()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_drain_input(reader), 10)


@contextlib.contextmanager
def silent_server(receive_buffer: int | None = None) -> Iterator[int]:
    """``with silent_server() as port:`` a server that accepts connections and never reads from
    them nor answers (a proxy that never answers CONNECT, a service that never takes an
    upload). With ``receive_buffer`` (bytes) its sockets' buffers are that small, so an upload
    to it stalls once they are full."""
    server = socket.socket()
    if receive_buffer is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for s in accepted:
            s.close()
        server.close()


#: What a ``KeepAliveServer`` writes for one request: byte strings, with a float between two of
#: them meaning "wait that many seconds" (a server's own delay, not a test's synchronisation).
Answer = list[bytes | float]


class KeepAliveServer(_LoopServer):
    """``with KeepAliveServer(answer) as server:`` serves any number of requests on each
    connection, answering each with what ``answer(head, body)`` returns, however wrong (one
    answer too many, say), after ``interim`` if given (sent before the body is read).
    ``server.wait_answered(n)`` blocks until ``n`` requests have been answered in full."""

    def __init__(self, answer: Callable[[bytes, bytes], Answer], *, interim: bytes = b"") -> None:
        super().__init__()
        self.answer = answer
        self.interim = interim  # written as soon as a request's head is read (100 Continue)
        self.connections = 0
        self._answered = 0
        self._changed = threading.Condition()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if self.interim:
                writer.write(self.interim)
                await writer.drain()
            body = await reader.readexactly(content_length(head))
            for item in self.answer(head, body):
                if isinstance(item, float):
                    await asyncio.sleep(item)
                else:
                    writer.write(item)
                    await writer.drain()
            with self._changed:
                self._answered += 1
                self._changed.notify_all()

    def wait_answered(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._answered >= count, timeout)
