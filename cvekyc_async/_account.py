"""Who a view calls as: its credentials, base URL, default headers and request id header, and
the usage counts those credentials run up.

A client and the views ``with_options`` makes with the same credentials share one ``Account``;
a view given other credentials (one key per tenant, say) gets its own, and so its own usage
counts, while it shares the client's connection pool when its host is the same.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from ._errors import ConfigurationError
from ._usage import Usage

__all__ = [
    "DEFAULT_REQUEST_ID_HEADER",
    "Account",
    "Secret",
    "check_headers",
    "check_request_id_header",
    "new_request_id",
    "origin_of",
]

#: The header each call's id is sent in (``request_id_header=None``: not sent).
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the client sets itself on every request: a default header cannot replace them.
_RESERVED = frozenset(
    {
        "authorization",
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "accept-encoding",
        "te",
        "upgrade",
        "traceparent",
        "tracestate",
    }
)


class Secret:
    """Holds the Authorization header so that no repr, vars() dump or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"


# A random UUID's version (4) and variant (RFC 9562) bits.
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


class _IdBits:
    """The system's random bytes, fetched 4 KiB at a time for 256 request ids: a system call
    per call was a visible share of the client's cost. Never the ``random`` module, which an
    application (or a test framework) may seed: its ids would repeat. Fetched again in a
    forked child (by its process id, which a fork from C without Python's hooks changes too),
    so two processes never share ids; a lock, so two threads never take the same bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        self._pid = -1

    def take(self) -> int:
        with self._lock:
            at, pid = self._at, os.getpid()
            if at >= len(self._pool) or pid != self._pid:
                self._pool, at, self._pid = os.urandom(4096), 0, pid
            self._at = at + 16
            return int.from_bytes(self._pool[at : at + 16], "big")


_id_bits = _IdBits()


def new_request_id() -> str:
    """A fresh id for one call: a random (version 4) UUID, as text."""
    h = f"{(_id_bits.take() & _VERSION_MASK) | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def origin_of(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a checked base URL, the port filled in by scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme
    return scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80)


def _described(name: object) -> str:
    """A bad header name as a message shows it: never its text, which can hold a pasted
    ``Name: value`` line and so a token."""
    if isinstance(name, str):
        return f"a name of {len(name)} characters"
    return f"a {type(name).__name__}"


def check_request_id_header(name: object) -> str | None:
    """Check ``request_id_header`` (a header name, or ``None`` to send no id)."""
    if name is None:
        return None
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"request_id_header must be a header name (letters, digits, '-') or None, not "
            f"{_described(name)}"
        )
    if name.lower() in _RESERVED:
        raise ConfigurationError(f"request_id_header cannot be {name!r}: the client sets it")
    return name


def check_headers(headers: object, request_id_header: str | None) -> tuple[tuple[str, str], ...]:
    """Check ``default_headers`` and return them as pairs, in order.

    Raises:
        ConfigurationError: not a mapping of strings, a name that is not a header name, a value
            with a line break or control character, or a header the client sets itself. The
            message names the header, never its value (it may be a token).
    """
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"default_headers must be a dict of header names to values, not "
            f"{type(headers).__name__}"
        )
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigurationError(
                f"default_headers: {_described(name)} is not a header name (a name holds "
                "letters, digits and '-', with no ':' or spaces: give the value apart)"
            )
        if name.lower() in _RESERVED or (
            request_id_header is not None and name.lower() == request_id_header.lower()
        ):
            raise ConfigurationError(
                f"default_headers cannot set {name!r}: the client sets it on every request"
            )
        if not isinstance(value, str):
            raise ConfigurationError(
                f"default_headers[{name!r}] must be a str, not {type(value).__name__}"
            )
        if any(c in value for c in "\r\n\0") or not all(
            c == "\t" or (c >= " " and c != "\x7f") for c in value
        ):
            raise ConfigurationError(
                f"default_headers[{name!r}] holds a line break or control character"
            )
        if not value.isascii():
            # Latin-1 would do for HTTP, but httpx sends header values as ASCII (and fails on
            # anything else at the first request); aiohttp would send UTF-8. Refused alike.
            raise ConfigurationError(
                f"default_headers[{name!r}] holds characters a header cannot carry "
                "(encode it, e.g. as percent-escapes)"
            )
        if name.lower() in seen:
            raise ConfigurationError(
                f"default_headers names {name!r} twice (header names ignore case)"
            )
        seen.add(name.lower())
        pairs.append((name, value))
    return tuple(pairs)


class Account:
    """Credentials, base URL and headers of the calls of a view, and their usage counts."""

    __slots__ = (
        "_fixed",
        "auth",
        "base_url",
        "headers",
        "host",
        "port",
        "request_id_header",
        "urls",
        "usage",
    )

    def __init__(
        self,
        *,
        auth: Secret,
        base_url: str,
        headers: tuple[tuple[str, str], ...] = (),
        request_id_header: str | None = DEFAULT_REQUEST_ID_HEADER,
        usage: Usage | None = None,
    ) -> None:
        self.auth = auth
        self.base_url = base_url
        self.headers = headers
        self.request_id_header = request_id_header
        self.usage = usage if usage is not None else Usage()
        _, self.host, self.port = origin_of(base_url)
        #: POST URLs, parsed once each (httpx's URL handling is a visible share of the cost of
        #: a request at a thousand requests a second), and as text (what a transport that takes
        #: a request's parts is given).
        self.urls: dict[tuple[str, str, bool], tuple[httpx.URL, str]] = {}
        self._fixed: list[tuple[str, str]] | None = None

    def __repr__(self) -> str:
        return f"<Account {self.base_url!r}>"

    def fixed_headers(
        self, client_headers: httpx.Headers, accept_encoding: str
    ) -> list[tuple[str, str]]:
        """The headers every POST through the client's own pool sends, as httpx would send
        them: ``Host``, the client's defaults (replaced by ``default_headers`` of the same
        name), then the credentials."""
        fixed = self._fixed
        if fixed is None:
            own = {name.lower() for name, _ in self.headers}
            host = httpx.URL(self.base_url).netloc.decode("ascii")
            fixed = [("Host", host)]
            fixed += [
                (k, v)
                for k, v in client_headers.multi_items()
                if k.lower() != "accept-encoding" and k.lower() not in own
            ]
            fixed += [*self.headers, ("Accept-Encoding", accept_encoding)]
            self._fixed = fixed
        return [*fixed, ("Authorization", self.auth.reveal())]
