"""The exception tree.

::

    CVError
    ├── ConfigurationError         (also a ValueError) bad client settings or missing credentials
    ├── InvalidInputError          (also a ValueError) bad input, raised before any request is sent
    ├── APIError                   the answer carried a non-zero ``errorCode``
    │   ├── NoDocumentError        1  no document in the image
    │   ├── URLUnavailableError    2  the service could not download the URL
    │   ├── InvalidImageError      3  the upload is not a readable image
    │   ├── QuotaExceededError     4  the account's quota is used up
    │   ├── AuthenticationError    5  bad api_key / api_secret
    │   └── FormatTypeError        6  ``format_type`` does not match what was sent
    ├── APIStatusError             HTTP status not 2xx, and no ``errorCode`` in the body
    │   ├── PermissionDeniedError  401, 403
    │   ├── NotFoundError          404 (a wrong ``base_url``)
    │   ├── RateLimitError         429
    │   └── InternalServerError    500 and above
    ├── MalformedResponseError     a 2xx answer whose body is not the expected JSON, or an
    │   │                          answer that is not valid HTTP
    │   └── ResponseTooLargeError  an answer over ``max_response_size`` (any status)
    ├── APIConnectionError         the request could not be sent or its answer not received
    │   └── APITimeoutError        a connect, write, read, pool or overall timeout
    │       └── QueueTimeoutError  no concurrency slot within ``queue_timeout``: nothing was sent
    └── ClientStateError           a closed client, or one used on another event loop

Every error carries the request's ``method`` and ``path`` (never its query string, headers or body,
so neither credentials nor image data can leak through a message or a log line), the number of
``attempts`` made and the ``elapsed`` seconds across them. Errors raised for an answer keep its
body whole on ``.body`` and its headers on ``.headers`` (for a support ticket), never shown in
``str()`` or ``repr()``: the body can hold card data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._redact import describe_body, is_known_text, safe_token

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

__all__ = [
    "ERROR_MESSAGE_KEYS",
    "REQUEST_ID_HEADERS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "CVError",
    "ClientStateError",
    "ConfigurationError",
    "FormatTypeError",
    "InternalServerError",
    "InvalidImageError",
    "InvalidInputError",
    "MalformedResponseError",
    "NoDocumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "QueueTimeoutError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseTooLargeError",
    "URLUnavailableError",
    "api_error_for_code",
    "request_id_from",
    "request_id_of",
    "status_error_for",
]

#: The documented ``errorMessage`` texts, matched loosely (the vendor's table misspells some). A
#: message shows the service's text only when it is one of these: any other text could carry
#: anything, so only its length is shown (the text itself stays on ``error_message``).
ERROR_MESSAGE_KEYS = (
    "the photo does not contain content",
    "url is unavailable",
    "incorrect image format",
    "ncorrect image format",
    "out of requests",
    "incorrect api_key or api_secret",
    "ncorrect api_key or api_secret",
    "incorrect format type",
    "ncorrect format type",
    "success",
    "successful",
    "uccessful",
    "",
)


def _media(content_type: str) -> str:
    media = content_type.split(";")[0].strip()
    return safe_token(media, "an unreadable content type") if media else "no content type"


def _service_text(text: str) -> str:
    if not text:
        return "(no message)"
    if is_known_text(text, ERROR_MESSAGE_KEYS):
        return " ".join(text.split())
    return f"(a message of {len(text)} characters, on .error_message)"


#: Headers a service names its requests by, in the order they are looked for.
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-correlation-id")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_of(headers: httpx.Headers | None, sent: str | None = None) -> str | None:
    """The request id an answer's headers carry: an opaque token of at most 128 characters
    (letters, digits and ``._:/+=-``); anything else is not taken (it could carry any text),
    nor the id the client sent (``sent``), which a gateway may echo."""
    if headers is None:
        return None
    return request_id_from(headers.get, sent)


def request_id_from(header: Callable[[str], str | None], sent: str | None = None) -> str | None:
    """``request_id_of`` with the headers looked up one by one through ``header``."""
    for name in REQUEST_ID_HEADERS:
        value = header(name)
        if not value or not isinstance(value, str):
            continue
        token = value.strip()
        if _REQUEST_ID.fullmatch(token) and token != sent:
            return token
    return None


class CVError(Exception):
    """Root of every error this library raises.

    Attributes:
        method: HTTP method of the request that failed, when one was built.
        path: URL path of that request (no query string), when one was built.
        attempts: how many HTTP attempts were made before giving up (0 when none was sent).
        elapsed: seconds spent across all attempts.
    """

    method: str | None
    path: str | None
    attempts: int
    elapsed: float
    #: The answer's headers, on errors raised for an answer (``None`` otherwise).
    headers: httpx.Headers | None = None
    #: The call's id (sent as ``X-Request-ID``), on every error a call raises.
    request_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.attempts = attempts
        self.elapsed = elapsed

    @property
    def service_request_id(self) -> str | None:
        """The service's own id of the request, when the answer behind this error carried one."""
        return request_id_of(self.headers, self.request_id)

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        return f"{self.message}{where}"


class ConfigurationError(CVError, ValueError):
    """The client was set up wrongly: missing credentials, an unsafe base URL, a bad option."""


class InvalidInputError(CVError, ValueError):
    """An input was refused before any request was sent (missing file, wrong type, too large...)."""


class ClientStateError(CVError):
    """The client cannot be used as it was: it is closed, or it was opened on another event
    loop (its connections belong to that loop)."""


class APIError(CVError):
    """The service answered with a non-zero ``errorCode``.

    Attributes:
        error_code: the ``errorCode`` the service sent.
        error_message: the ``errorMessage`` the service sent.
        status_code: the HTTP status of that answer.
        body: the whole answer as received (not shown in ``str()`` or ``repr()``).
        headers: the answer's headers.
    """

    def __init__(
        self,
        error_code: int,
        error_message: str,
        *,
        status_code: int = 200,
        body: bytes = b"",
        headers: httpx.Headers | None = None,
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        hint = _HINTS.get(
            error_code, "the service returned an error code this library does not know"
        )
        text = f"errorCode {error_code}: {_service_text(error_message)} - {hint}"
        super().__init__(text, method=method, path=path, attempts=attempts, elapsed=elapsed)
        self.error_code = error_code
        self.error_message = error_message
        self.status_code = status_code
        self.body = body
        self.headers = headers


class NoDocumentError(APIError):
    """errorCode 1: the photo holds no document the service can read."""


class URLUnavailableError(APIError):
    """errorCode 2: the service could not download the image URL."""


class InvalidImageError(APIError):
    """errorCode 3: the upload is not an image (or PDF) the service can read."""


class QuotaExceededError(APIError):
    """errorCode 4: the account has used up its requests."""


class AuthenticationError(APIError):
    """errorCode 5: the api_key or api_secret is wrong."""


class FormatTypeError(APIError):
    """errorCode 6: ``format_type`` does not match what the request carried."""


_HINTS: dict[int, str] = {
    1: "no ID card, passport or other document was found in the image",
    2: "the service could not download the image URL; check that it is public",
    3: "the upload is not an image or PDF the service can read",
    4: "the account's request quota is used up",
    5: "check the api_key and api_secret",
    6: "format_type does not match the data sent",
}

_BY_CODE: dict[int, type[APIError]] = {
    1: NoDocumentError,
    2: URLUnavailableError,
    3: InvalidImageError,
    4: QuotaExceededError,
    5: AuthenticationError,
    6: FormatTypeError,
}


def api_error_for_code(code: int) -> type[APIError]:
    """Return the ``APIError`` subclass for an ``errorCode`` (plain ``APIError`` if unknown)."""
    return _BY_CODE.get(code, APIError)


class APIStatusError(CVError):
    """The service answered with an HTTP status that is not 2xx and no ``errorCode``.

    The message gives the status, the body's content type and length and, for an HTML page (a
    proxy's), its title; never the body itself, which can hold card data.

    Attributes:
        status_code: the HTTP status.
        body: the whole body as received (not shown in ``str()`` or ``repr()``).
        content_type: the answer's ``Content-Type``.
        retry_after: seconds the service asked to wait (``Retry-After``), if it said.
        headers: the answer's headers.
    """

    def __init__(
        self,
        status_code: int,
        *,
        body: bytes = b"",
        content_type: str = "",
        retry_after: float | None = None,
        headers: httpx.Headers | None = None,
        url: str | None = None,
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        text = f"HTTP {status_code} from the service ({describe_body(body, content_type)})"
        if retry_after is not None:
            text += f" (Retry-After: {retry_after:g} s)"
        if status_code == 404 and url is not None:
            text += (
                f": nothing answers at {url}; check base_url, which must be the service's "
                "root (such as https://cloud.computervision.com.vn, with no /api or /v1)"
            )
        super().__init__(text, method=method, path=path, attempts=attempts, elapsed=elapsed)
        self.status_code = status_code
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after
        self.headers = headers
        #: The URL asked, without its query (``None`` when not known).
        self.url = url


class PermissionDeniedError(APIStatusError):
    """HTTP 401 or 403 without an ``errorCode``: the gateway refused the credentials or the
    caller (check ``api_key``/``api_secret``, and that this machine may call the service)."""


class NotFoundError(APIStatusError):
    """HTTP 404: no endpoint at that address; ``base_url`` is most likely wrong."""


class RateLimitError(APIStatusError):
    """HTTP 429: the service asks the client to slow down (see ``retry_after``)."""


class InternalServerError(APIStatusError):
    """HTTP 500 or above without an ``errorCode``: the service or a proxy in front of it failed."""


def status_error_for(status_code: int) -> type[APIStatusError]:
    """The ``APIStatusError`` subclass for an HTTP status (plain ``APIStatusError`` if none)."""
    if status_code in (401, 403):
        return PermissionDeniedError
    if status_code == 404:
        return NotFoundError
    if status_code == 429:
        return RateLimitError
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


class MalformedResponseError(CVError):
    """A 2xx answer whose body is not the JSON envelope the API documents, or an answer that is
    not valid HTTP (a garbage status line, conflicting lengths, a head over the size limits, a
    broken chunk). The request was read, so the service may have billed it: not retried.

    Attributes:
        status_code: the HTTP status (``None`` when the status line itself was unreadable).
        body: the whole body as received (not shown in ``str()`` or ``repr()``).
        content_type: the answer's ``Content-Type``.
        headers: the answer's headers.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None,
        body: bytes = b"",
        content_type: str = "",
        headers: httpx.Headers | None = None,
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        if status_code is None:
            text = f"the service sent an answer that is not valid HTTP ({reason})"
        else:
            text = (
                f"the service sent an answer that is not the expected JSON ({reason}; "
                f"HTTP {status_code}, {describe_body(body, content_type)})"
            )
        super().__init__(text, method=method, path=path, attempts=attempts, elapsed=elapsed)
        self.status_code = status_code
        self.body = body
        self.content_type = content_type
        self.headers = headers


class ResponseTooLargeError(MalformedResponseError):
    """An answer larger than the client's ``max_response_size``, whatever its status.

    Reading stopped at the limit (or before, when ``Content-Length`` announced more) and the
    connection was closed; the call is not retried, since the service may have billed it.

    Attributes:
        limit: the ``max_response_size`` in force, in bytes.
        body: empty: the body is not kept.
    """

    def __init__(
        self,
        limit: int,
        *,
        status_code: int,
        content_type: str = "",
        announced: int | None = None,
        headers: httpx.Headers | None = None,
        owner: str = "AsyncCVClient",
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        size = f"{announced:,} bytes announced" if announced is not None else "more than that"
        CVError.__init__(
            self,
            f"the service's answer is over max_response_size={limit:,} bytes ({size}; "
            f"HTTP {status_code}, {_media(content_type)}); "
            f"raise it with {owner}(max_response_size=...)",
            method=method,
            path=path,
            attempts=attempts,
            elapsed=elapsed,
        )
        self.status_code = status_code
        self.body = b""
        self.content_type = content_type
        self.limit = limit
        self.headers = headers


class APIConnectionError(CVError):
    """The request could not be sent, or its answer was not received (refused, reset, DNS...).

    Attributes:
        kind: where it failed: ``"connect"`` (the request never left: safe to resend),
            ``"transport"`` (the connection broke after sending began: the service may have done,
            and billed, the work) or ``"unknown"`` (the transport raised an error of its own,
            a caller's httpx event hook say: not retried). Timeouts use the timeout kinds below.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "transport",
        method: str | None = None,
        path: str | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(message, method=method, path=path, attempts=attempts, elapsed=elapsed)
        self.kind = kind


class APITimeoutError(APIConnectionError):
    """A connect, write, read or pool timeout, or the overall deadline.

    Attributes:
        kind: which timeout fired: ``"connect"``, ``"write"``, ``"read"``, ``"pool"`` or
            ``"total"`` (the overall deadline, ``total_timeout``).
    """


class QueueTimeoutError(APITimeoutError):
    """No concurrency slot came free within the client's ``queue_timeout``: the request was
    never sent (nothing billed) and is not retried, so a caller can fail fast under load.

    Attributes:
        waited: seconds spent waiting for a slot.
    """

    def __init__(self, waited: float, *, in_flight: int) -> None:
        super().__init__(
            f"no free slot within queue_timeout={waited:g} s ({in_flight} requests in flight); "
            "nothing was sent",
            kind="queue",
        )
        self.waited = waited
