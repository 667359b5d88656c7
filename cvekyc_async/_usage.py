"""Running counts of what a client sent and got back, billing included."""

from __future__ import annotations

import msgspec

from ._errors import CVError

__all__ = ["Usage"]


class Usage(msgspec.Struct, kw_only=True):
    """What a client has done so far. ``AsyncCVClient.usage`` returns a copy.

    The service bills every answer with ``errorCode`` 0. ``billed`` counts those the client
    received; an ambiguous retry (after a read timeout or a broken connection) may have been
    billed once more without the client seeing it, so ``billed + ambiguous_retries`` bounds
    what the account may have been charged.
    """

    requests: int = 0
    """HTTP attempts sent (retries included)."""
    answers: int = 0
    """Calls that returned a result."""
    billed: int = 0
    """Answers the service bills (``errorCode`` 0)."""
    retries: int = 0
    """Attempts that were retries."""
    ambiguous_retries: int = 0
    """Retries after a failure the service may already have processed (possibly billed twice)."""
    budget_exhausted: int = 0
    """Failures raised without retrying because the retry budget was empty."""
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    """Calls that raised, by error class name."""

    def count_error(self, error: CVError) -> None:
        name = type(error).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def copy(self) -> Usage:
        """A snapshot that later requests do not change."""
        return msgspec.structs.replace(self, errors=dict(self.errors))
