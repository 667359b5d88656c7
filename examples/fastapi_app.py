"""A FastAPI service that reads ID cards with one shared ``AsyncCVClient``.

Run it (``pip install 'cvekyc-async' fastapi python-multipart uvicorn``)::

    export CVEKYC_API_KEY=... CVEKYC_API_SECRET=...   # or the emulator's, see the README
    uvicorn examples.fastapi_app:app --port 8080
    curl -F image=@front.jpg http://127.0.0.1:8080/cards/read

What it shows:

- one client for the whole application, opened and closed in the lifespan, shared by every
  request (one connection pool, one concurrency limit);
- limits for a web backend: ``queue_timeout`` fails a request fast when the client is saturated
  (503 with ``Retry-After``) instead of keeping the user waiting, and ``total_timeout`` bounds a
  whole call, retries included, below the server's own request timeout;
- every error of the library mapped to an HTTP answer whose message holds no card data, with
  the call's ``request_id`` (the ``X-Request-ID`` the client sent) for a support ticket;
- OpenTelemetry: the client records a span per call and per attempt, and its metrics, into
  whatever SDK the application installs (``pip install 'cvekyc-async[otel]'
  opentelemetry-sdk``); each request has a server span for them to nest in (FastAPI's own
  where it records them, else ``ServerSpans``; ``opentelemetry-instrumentation-fastapi`` in
  production).
  ``examples/otel_demo.py`` runs this app with the SDK and prints what it records.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from cvekyc_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    CVError,
    InvalidImageError,
    InvalidInputError,
    NoDocumentError,
    QueueTimeoutError,
    QuotaExceededError,
    RateLimitError,
)

logger = logging.getLogger("fastapi_app")

MAX_UPLOAD = 10 * 1024 * 1024

#: Defaults for a web backend; ``create_app(**options)`` overrides any client option.
CLIENT_OPTIONS: dict[str, Any] = {
    "max_concurrency": 32,  # requests to the service in flight at once; the rest queue
    "queue_timeout": 5.0,  # seconds a request may wait for a slot before a 503
    "total_timeout": 30.0,  # seconds for a whole call, retries included
}


def create_app(**client_options: Any) -> FastAPI:
    """The application, with a client built from ``CLIENT_OPTIONS`` and ``client_options``
    (credentials and base URL from ``CVEKYC_*`` unless given)."""
    options = {**CLIENT_OPTIONS, **client_options}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncCVClient(**options) as client:
            app.state.cv = client
            yield

    app = FastAPI(title="Card reader", lifespan=lifespan)
    app.add_middleware(RefuseLargeUploads)
    if importlib.util.find_spec("fastapi.telemetry") is None:
        # Newer FastAPI records server spans itself.
        app.add_middleware(ServerSpans)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes what was sent (an image, as text): name the fields only.
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()})
        return _error(
            422,
            "bad_request",
            f"send the image as a file in the form field 'image' "
            f"(problems with: {', '.join(fields) or 'the request'})",
        )

    @app.post("/cards/read")
    async def read_card(image: UploadFile, request: Request) -> Any:
        """Read one side of an ID card or a passport, and say whether to trust it."""
        data = await image.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            return _error(413, "upload_too_large", f"uploads are limited to {MAX_UPLOAD:,} bytes")
        client: AsyncCVClient = request.app.state.cv
        result = await client.extract_card(data)
        assessment = result.assess()
        return {
            "cards": result.to_dict()["cards"],
            "verdict": assessment.verdict,
            "findings": [f.code for f in assessment.findings],
        }

    @app.exception_handler(CVError)
    async def cv_error(request: Request, exc: CVError) -> JSONResponse:
        return answer_for(exc)

    return app


class RefuseLargeUploads:
    """Refuses an upload on its announced size, before its body is received and spooled to disk.

    A plain ASGI middleware: ``@app.middleware("http")`` would put Starlette's
    ``BaseHTTPMiddleware`` around every request, and the one Python 3.10 gets (Starlette 1.7)
    leaves the request's body stream unclosed, which trio reports as a ``ResourceWarning``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length", "")
            if length.isdigit() and int(length) > MAX_UPLOAD + 64 * 1024:
                refusal = _error(
                    413, "upload_too_large", f"uploads are limited to {MAX_UPLOAD:,} bytes"
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ServerSpans:
    """A server span for each HTTP request, continuing the caller's trace (``traceparent``), so
    that the client's call and attempt spans nest under the request that made them. Does nothing
    without ``opentelemetry-api``; records nothing until an SDK is installed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            self._trace: Any = None
        else:
            self._trace, self._propagate = trace, propagate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._trace is None:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = f"{scope['method']} {scope['path']}"
        tracer = self._trace.get_tracer("fastapi_app")
        with tracer.start_as_current_span(
            route,
            context=self._propagate.extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, sending)


def _error(
    status: int,
    code: str,
    message: str,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    error: dict[str, Any] = {"code": code, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return JSONResponse({"error": error}, status, headers=headers)


def answer_for(exc: CVError) -> JSONResponse:
    """The HTTP answer for an error of the library. Their messages hold no card data (the
    library never quotes one), but a misconfiguration is logged, not shown to the caller.
    Each answer carries the call's ``request_id``, which the client's log lines and spans show."""
    status, code, message, retry_after = _answer_parts(exc)
    return _error(status, code, message, retry_after, request_id=exc.request_id)


def _answer_parts(exc: CVError) -> tuple[int, str, str, float | None]:
    if isinstance(exc, (InvalidInputError, InvalidImageError)):
        return 422, "unreadable_upload", str(exc.message), None
    if isinstance(exc, NoDocumentError):
        return 422, "no_document", "no ID card or passport was found in the image", None
    if isinstance(exc, QueueTimeoutError):
        return 503, "busy", "too many cards are being read; try again shortly", 1
    if isinstance(exc, RateLimitError):
        return 503, "busy", "the card reader asks us to slow down", exc.retry_after or 1
    if isinstance(exc, APITimeoutError):
        return 504, "timeout", "the card reader did not answer in time", None
    if isinstance(exc, QuotaExceededError):
        logger.error("card reader quota used up: %s", exc)
        return 503, "unavailable", "card reading is unavailable", 60
    if isinstance(exc, (APIConnectionError, APIStatusError)) and not _ours(exc):
        return 502, "upstream", "the card reader failed; try again", None
    # Credentials, a wrong base URL, an answer we cannot read: ours to fix, not the caller's.
    logger.error("card reader error: %s", exc)
    return 502, "upstream", "the card reader failed", None


def _ours(exc: CVError) -> bool:
    return isinstance(exc, APIStatusError) and exc.status_code in (401, 403, 404)


app = create_app()
