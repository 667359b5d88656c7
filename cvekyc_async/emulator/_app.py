"""The emulator as a plain ASGI application.

It is written against ASGI directly rather than a framework, so that it stays far faster than the
clients it serves in benchmarks. Paths:

- ``/api/v2/ekyc/card``, ``/api/v2/ekyc/cards``, ``/api/v2/ocr/card``: the API, with faults.
- ``/specimens/<name>``: the bundled specimen images, for ``format_type=url`` requests.
- ``/_emulator/stats`` (GET), ``/_emulator/reset`` (POST), ``/_emulator/faults`` and
  ``/_emulator/settings`` (GET, or PUT a JSON object of the fields to change): control.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import anyio.to_thread
import httpx
import msgspec

from ._images import content_type, identify, thumbnail
from ._specimens import SPECIMEN_DIR
from ._state import EmulatorSettings, EmulatorState
from ._truth import Document, read_documents, synthetic_documents

__all__ = ["DeliberateDrop", "EmulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ERROR_MESSAGES = {
    1: "The photo does not contain content",
    2: "Url is unavailable",
    3: "Incorrect image format",
    4: "Out of requests",
    5: "Incorrect Api_key or api_secret",
    6: "Incorrect format type",
}
_FIELDS = {
    "/api/v2/ekyc/card": ("img",),
    "/api/v2/ekyc/cards": ("img1", "img2"),
    "/api/v2/ocr/card": ("img",),
}
_MAX_BODY = 64 * 1024 * 1024
_MAX_DOWNLOAD = 20 * 1024 * 1024
_MAX_REDIRECTS = 5
_MAX_PARTS = 16
_DOWNLOAD_SECONDS = 20.0
_BOUNDARY_RE = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)
_PART_NAME_RE = re.compile(rb'name="([^"]*)"')
_PROXY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
_encoder = msgspec.json.Encoder()
logger = logging.getLogger("cvekyc_async.emulator")


class DeliberateDrop(Exception):
    """Raised inside the app to make the server close a connection mid-answer (a fault)."""


class _TooLarge(Exception):
    """The request body is over the emulator's limit."""


class _Disconnected(Exception):
    """The client went away before its request body arrived: there is nothing to answer."""


class _Answer(Exception):
    """Ends request handling with an error-code answer."""

    def __init__(self, code: int) -> None:
        self.code = code


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart body by name; at most ``_MAX_PARTS`` are looked at, so a body of
    millions of tiny parts costs no more than a few."""
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        return {}
    boundary = b"--" + match.group(1).encode("latin-1")
    parts: dict[str, bytes] = {}
    start = body.find(boundary)
    for _ in range(_MAX_PARTS):
        if start < 0:
            break
        start += len(boundary)
        if body.startswith(b"--", start):
            break
        end = body.find(boundary, start)
        chunk = body[start : end if end >= 0 else len(body)]
        head, _, content = chunk.partition(b"\r\n\r\n")
        name = _PART_NAME_RE.search(head)
        if name is not None:
            parts[name.group(1).decode("utf-8", "replace")] = content.removesuffix(b"\r\n")
        start = end
    return parts


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, obj: Any) -> None:
    await _send_bytes(send, status, _encoder.encode(obj), "application/json")


class EmulatorApp:
    """ASGI application emulating the card API.

    Args:
        state: settings, faults and counters; a fresh ``EmulatorState`` by default.
    """

    def __init__(self, state: EmulatorState | None = None) -> None:
        self.state = state or EmulatorState()
        self._http: httpx.AsyncClient | None = None
        # The capacity model: slots for requests in service, and how many hold or wait for one.
        self._slots: anyio.Semaphore | None = None
        self._slots_for = 0
        self._admitted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in _FIELDS:
            await self._api(scope, receive, send)
        elif path.startswith("/_emulator/"):
            await self._control(scope, receive, send)
        elif path.startswith("/specimens/"):
            await self._specimen(path, send)
        else:
            await _send_json(send, 404, {"detail": "Not Found"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the client the app downloads URLs with."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- the API -------------------------------------------------------------------------------

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        state.count("requests")
        state.note_peer(scope.get("client"))
        state.count("path:" + scope["path"])
        state.enter()
        try:
            try:
                body = await _read_body(receive)
            except _TooLarge:
                await _send_json(send, 413, {"detail": "Request Entity Too Large"})
                return
            except _Disconnected:
                state.count("abandoned")
                return
            fault, delay = state.draw()
            if fault is not None:
                state.count("fault:" + fault)
            faults = state.faults
            if not faults.capacity:
                await self._serve(scope, receive, send, body, fault, delay)
                return
            if self._admitted >= faults.capacity + faults.queue:
                # Beyond the service's slots and its queue: turned away, not billed.
                state.count("busy")
                await self._status_fault("429", send)
                return
            if self._slots is None or self._slots_for != faults.capacity:
                self._slots = anyio.Semaphore(faults.capacity)
                self._slots_for = faults.capacity
            slots = self._slots
            self._admitted += 1
            try:
                async with slots:
                    in_service = faults.capacity - slots.value
                    delay *= 1 + faults.slowdown * in_service / faults.capacity
                    await self._serve(scope, receive, send, body, fault, delay)
            finally:
                self._admitted -= 1
        finally:
            state.leave()

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        fault: str | None,
        delay: float,
    ) -> None:
        if delay:
            await anyio.sleep(delay)
        if fault in ("429", "500", "502", "503", "504"):
            await self._status_fault(fault, send)
            return
        if fault == "stall":
            await self._stall(receive, send)
            return
        try:
            code, data = await self._answer(scope, body)
        except Exception:
            # Whatever an upload provokes is an unreadable image, never a server error.
            logger.debug("an upload could not be handled", exc_info=True)
            code, data = 3, []
        payload = {"data": data, "errorCode": str(code), "errorMessage": ""}
        if code:
            payload["errorMessage"] = ERROR_MESSAGES[code]
        encoded = _encoder.encode(payload)
        if fault == "drop":
            await self._drop(send, encoded)
        elif fault == "malformed":
            await _send_bytes(send, 200, encoded[: max(1, len(encoded) // 2)], "application/json")
        else:
            await _send_bytes(send, 200, encoded, "application/json")

    async def _status_fault(self, fault: str, send: Send) -> None:
        status = int(fault)
        retry_after = [(b"retry-after", self.state.faults.retry_after.encode())]
        if status == 429:
            await _send_bytes(
                send, 429, b'{"message":"Too Many Requests"}', "application/json", retry_after
            )
        elif status == 500:
            await _send_json(send, 500, {"detail": "Internal Server Error"})
        else:
            page = _PROXY_PAGE.format(code=status, reason=_REASONS[status]).encode()
            await _send_bytes(send, status, page, "text/html", retry_after if status == 503 else [])

    async def _stall(self, receive: Receive, send: Send) -> None:
        # Hold the request until the client gives up (its timeout) or stall_seconds pass.
        with anyio.move_on_after(self.state.faults.stall_seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        page = _PROXY_PAGE.format(code=504, reason=_REASONS[504]).encode()
        await _send_bytes(send, 504, page, "text/html")

    async def _drop(self, send: Send, encoded: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(encoded)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": encoded[: len(encoded) // 3], "more_body": True}
        )
        raise DeliberateDrop("connection dropped on purpose (fault injection)")

    async def _answer(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        """The errorCode and data for one API request."""
        try:
            data = await self._extract(scope, body)
        except _Answer as answer:
            self.state.count(f"code:{answer.code}")
            return answer.code, []
        self.state.count("code:0")
        return 0, data

    async def _extract(self, scope: Scope, body: bytes) -> Any:
        settings = self.state.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not _authorised(headers.get("authorization", ""), settings):
            raise _Answer(5)
        path = scope["path"]
        fields = _FIELDS[path]
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        format_type = query.get("format_type", "").strip().lower()
        get_thumb = query.get("get_thumb", "false").strip().lower() == "true"
        images = await self._images(format_type, fields, query, headers, body, scope["method"])
        quota = settings.quota
        if quota is not None and self.state.billed >= quota:
            raise _Answer(4)
        formats = [await identify(data) for data in images]
        for fmt in formats:
            if fmt is None or (fmt == "pdf" and path == "/api/v2/ekyc/cards"):
                raise _Answer(3)
        if sum(len(i) for i in images) > 1024 * 1024:  # scanning a large upload: off the loop
            result = await anyio.to_thread.run_sync(
                functools.partial(_documents, path, images, strict=settings.strict)
            )
        else:
            result = _documents(path, images, strict=settings.strict)
        if get_thumb:
            for docs, data in result:
                for doc in docs:
                    thumb = await thumbnail(data, doc.get("box"))
                    if thumb is None:
                        raise _Answer(3)  # it opened, but does not decode
                    doc["info"]["image"] = thumb
        if not self.state.try_bill():
            raise _Answer(4)
        flat = [_public(doc) for docs, _ in result for doc in docs]
        if len(flat) == 1 and "pdf" not in formats and path != "/api/v2/ekyc/cards":
            return flat[0]
        return flat

    async def _images(
        self,
        format_type: str,
        fields: tuple[str, ...],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        method: str,
    ) -> list[bytes]:
        content_type = headers.get("content-type", "").lower()
        if format_type == "url":
            if body.strip():
                raise _Answer(6)
            return [await self._download(query.get(name, "")) for name in fields]
        if format_type == "file":
            if method != "POST" or not content_type.startswith("multipart/form-data"):
                raise _Answer(6)
            parts = _parse_multipart(headers.get("content-type", ""), body)
            if any(not parts.get(name) for name in fields):
                raise _Answer(3)
            return [parts[name] for name in fields]
        if format_type == "base64":
            if method != "POST" or content_type.startswith("multipart/"):
                raise _Answer(6)
            try:
                obj = msgspec.json.decode(body)
            except msgspec.DecodeError:
                raise _Answer(6) from None
            if not isinstance(obj, dict):
                raise _Answer(6)
            out = []
            for name in fields:
                value = obj.get(name)
                if not isinstance(value, str) or not value.strip():
                    raise _Answer(3)
                try:
                    # Non-validating, as the service: base64.encodebytes' newlines are fine.
                    out.append(base64.b64decode(value))
                except (binascii.Error, ValueError):
                    raise _Answer(3) from None
            return out
        raise _Answer(6)

    async def _download(self, url: str) -> bytes:
        # The emulator downloads only from this machine, and checks every redirect hop: a
        # loopback URL that redirects elsewhere is not followed there.
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False, trust_env=False)
        url = url.strip()
        with anyio.move_on_after(_DOWNLOAD_SECONDS):  # a server that drips is given up on
            return await self._fetch(url)
        raise _Answer(2)

    async def _fetch(self, url: str) -> bytes:
        assert self._http is not None
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                parts = urlsplit(url)
                host = parts.hostname or ""
            except ValueError:
                raise _Answer(2) from None
            if parts.scheme not in ("http", "https") or not _is_loopback(host):
                raise _Answer(2)
            try:
                async with self._http.stream("GET", url) as response:
                    if response.is_redirect:
                        url = str(response.url.join(response.headers.get("location", "")))
                        continue
                    if response.status_code != 200:
                        raise _Answer(2)
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > _MAX_DOWNLOAD:
                            raise _Answer(2)
            except (httpx.HTTPError, httpx.InvalidURL, ValueError):
                raise _Answer(2) from None
            if not body:
                raise _Answer(2)
            return bytes(body)
        raise _Answer(2)  # too many redirects

    # -- specimens and control -----------------------------------------------------------------

    async def _specimen(self, path: str, send: Send) -> None:
        name = unquote(path[len("/specimens/") :])
        target = SPECIMEN_DIR / name
        if "/" in name or name.startswith(".") or not target.is_file():
            await _send_json(send, 404, {"detail": "no such specimen"})
            return
        data = await anyio.Path(target).read_bytes()
        await _send_bytes(send, 200, data, content_type(data))

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        what = scope["path"][len("/_emulator/") :]
        method = scope["method"]
        try:
            body = await _read_body(receive)
            if what == "stats" and method == "GET":
                await _send_json(send, 200, state.stats())
            elif what == "reset" and method == "POST":
                state.reset_counts()
                await _send_json(send, 200, state.stats())
            elif what == "faults" and method in ("GET", "PUT"):
                if method == "PUT":
                    state.set_faults(**msgspec.json.decode(body, type=dict[str, Any]))
                await _send_json(send, 200, state.faults)
            elif what == "settings" and method in ("GET", "PUT"):
                if method == "PUT":
                    changes = msgspec.json.decode(body, type=dict[str, Any])
                    merged = msgspec.structs.asdict(state.settings) | changes
                    state.settings = msgspec.convert(merged, EmulatorSettings)
                await _send_json(send, 200, _public_settings(state.settings))
            else:
                await _send_json(send, 404, {"detail": "Not Found"})
        except _TooLarge:
            await _send_json(send, 413, {"detail": "Request Entity Too Large"})
        except _Disconnected:
            return
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
            # A bad control request says why; the counts and faults stay as they were.
            await _send_json(send, 400, {"detail": str(exc)})


def _public_settings(settings: EmulatorSettings) -> dict[str, Any]:
    shown = msgspec.structs.asdict(settings)
    shown["api_secret"] = "***"  # noqa: S105 - a mask, not a secret
    return shown


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _authorised(header: str, settings: EmulatorSettings) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    key, sep, secret = decoded.partition(":")
    if not sep:
        return False
    ok_key = hmac.compare_digest(key.encode(), settings.api_key.encode())
    ok_secret = hmac.compare_digest(secret.encode(), settings.api_secret.encode())
    return ok_key and ok_secret


def _documents(
    path: str, images: list[bytes], *, strict: bool
) -> list[tuple[list[Document], bytes]]:
    """The documents to report for each image (with that image, for thumbnails)."""
    out: list[tuple[list[Document], bytes]] = []
    if path == "/api/v2/ekyc/cards":
        for data, side in zip(images, ("front", "back"), strict=True):
            pages = read_documents(data)
            if pages is None:
                if strict:
                    raise _Answer(1)
                # Both sides of a synthetic card belong to the person the front's hash picks.
                kind = f"chip_id_card_{side}"
                docs = [synthetic_documents(images[0], ("chip_id_card_front", kind))[-1]]
            else:
                docs = pages[0][:1]
            if not docs:
                raise _Answer(1)
            out.append((docs, data))
        return out
    [data] = images
    pages = read_documents(data)
    if pages is None:
        if strict:
            raise _Answer(1)
        pages = [synthetic_documents(data, ("chip_id_card_front",))]
    if path == "/api/v2/ekyc/card":
        pages = pages[:1]
    docs = [doc for page in pages for doc in page]
    if not docs:
        raise _Answer(1)
    out.append((docs, data))
    return out


def _public(doc: Document) -> Document:
    """The document as the service sends it: without the emulator's own keys."""
    return {k: v for k, v in doc.items() if k != "box"}
