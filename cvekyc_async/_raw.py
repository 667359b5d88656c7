"""Raw answers: ``client.with_raw_response.<method>(...)`` returns the answer as received.

For support tickets with the vendor (the exact JSON and the response headers) and for callers
that want a header the result does not carry. Errors are raised as by the plain methods, and
keep the answer's ``headers`` and ``body`` too.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from ._attempts import Engine, Exchange, Settings
from ._inputs import ImageInput
from ._models import ExtractionResult
from ._prepare import Prepare
from ._redact import safe_token

__all__ = ["AsyncRawResponses", "RawResponse"]


class RawResponse:
    """One answer as received, after any retries.

    Attributes:
        status_code: the HTTP status.
        headers: the response headers.
        content: the body, decoded from its transfer encoding (gzip...), byte for byte as the
            service wrote it. It holds card data: it is never shown in ``repr()``.
        http_version: ``"HTTP/1.1"`` or ``"HTTP/2"``.
        method: the request's method.
        path: the request's path (no query string).
        attempts: HTTP attempts made, retries included.
        elapsed: seconds from the first attempt to the answer.
        request_id: the call's id, sent as ``X-Request-ID``.
        service_request_id: the service's own id of the request, if the answer carried one.
    """

    __slots__ = (
        "_result",
        "attempts",
        "content",
        "elapsed",
        "headers",
        "http_version",
        "method",
        "path",
        "request_id",
        "service_request_id",
        "status_code",
    )

    def __init__(self, exchange: Exchange) -> None:
        self._result = exchange.result
        self.status_code: int = exchange.status_code
        self.headers: httpx.Headers = exchange.headers
        self.content: bytes = exchange.body
        self.http_version: str = exchange.http_version
        self.method: str = exchange.method
        self.path: str = exchange.path
        self.attempts: int = exchange.result.attempts
        self.elapsed: float = exchange.result.elapsed
        self.request_id: str | None = exchange.result.request_id
        self.service_request_id: str | None = exchange.result.service_request_id

    def parse(self) -> ExtractionResult:
        """The answer decoded, as the plain method returns it."""
        return self._result

    def json(self) -> Any:
        """The body as plain JSON values (dicts, lists, strings, numbers)."""
        return msgspec.json.decode(self.content)

    @property
    def text(self) -> str:
        """The body as text (UTF-8)."""
        return self.content.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        media = (self.headers.get("content-type") or "").split(";")[0].strip()
        shown = safe_token(media, "an unreadable content type") if media else "no content type"
        return (
            f"<RawResponse [{self.status_code}] {self.method} {self.path}, {shown}, "
            f"{len(self.content):,} bytes, {self.attempts} attempt(s)>"
        )


class AsyncRawResponses:
    """The endpoint methods of a client, returning a ``RawResponse`` instead of the result."""

    __slots__ = ("_engine", "_settings")

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    async def extract_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> RawResponse:
        """``AsyncCVClient.extract_card``, answered as received."""
        return RawResponse(await self._engine.card(self._settings, image, get_thumb, prepare))

    async def extract_cards(
        self,
        front: ImageInput,
        back: ImageInput,
        *,
        get_thumb: bool = False,
        prepare: bool | Prepare | None = None,
    ) -> RawResponse:
        """``AsyncCVClient.extract_cards``, answered as received."""
        exchange = await self._engine.cards(self._settings, front, back, get_thumb, prepare)
        return RawResponse(exchange)

    async def ocr_card(
        self, image: ImageInput, *, get_thumb: bool = False, prepare: bool | Prepare | None = None
    ) -> RawResponse:
        """``AsyncCVClient.ocr_card``, answered as received."""
        return RawResponse(await self._engine.ocr(self._settings, image, get_thumb, prepare))
