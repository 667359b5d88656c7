"""The library's logger, and ``CVEKYC_LOG``, which turns it on without code.

The logger is ``cvekyc_async``; like any library's, it has no handler of its own, so an
application's logging setup decides what is shown. ``CVEKYC_LOG=debug|info|warning`` (read when
the package is imported, as ``OPENAI_LOG`` is) sets its level and adds one handler writing to
stderr, for a quick look without touching the application's code.

What is logged: at INFO, each retry (the call's id, method, path, attempt, reason, delay), a
retry budget that ran out, and a call that failed after retrying; at DEBUG, every attempt's
outcome. Each line starts with ``call <id>`` (the ``X-Request-ID`` sent), and carries it as
``record.cvekyc_request_id`` for structured logging. No line holds a card field, an image,
an image URL, a query string or the credentials: only methods, paths, counts, times and the
names of errors.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["ENV_LOG", "logger", "setup_logging"]

#: The environment variable read by ``setup_logging``.
ENV_LOG = "CVEKYC_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}

logger = logging.getLogger("cvekyc_async")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``CVEKYC_LOG`` adds (one, however often the setting is read)."""


def setup_logging(environ: dict[str, str] | None = None) -> None:
    """Apply ``CVEKYC_LOG`` (from ``environ``, default ``os.environ``) to the library's logger.

    An unknown value is reported with a warning and otherwise ignored.
    """
    value = (os.environ if environ is None else environ).get(ENV_LOG, "").strip()
    if not value:
        return
    level = _LEVELS.get(value.lower())
    if level is None:
        warnings.warn(
            f"{ENV_LOG} must be debug, info or warning; {value[:20]!r} is ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    logger.setLevel(level)
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        logger.addHandler(handler)
