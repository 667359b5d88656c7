"""Event hooks: the caller's functions, called as each attempt goes out, as each attempt ends
and before each retry, on every transport.

``event_hooks={"request": [...], "response": [...], "retry": [...]}`` on a client (or a view
made by ``with_options``). Each hook is called with one ``HookEvent``, in the task of the call;
a hook may be a plain function or a coroutine function. A hook that raises fails that call
with the hook's own exception: nothing more is sent for it, and the concurrency slot it held is
given back.

An event carries what an operator's dashboard needs and nothing more: the call's id, the
method, the URL without its query (an image URL can hold a token) and never the credentials,
the attempt's number, status and time. Never a card field or an image byte.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigurationError

__all__ = [
    "HOOK_KINDS",
    "EventHook",
    "EventHooks",
    "HookEvent",
    "HookFailed",
    "coerce_hooks",
    "run_hooks",
]

#: When hooks are called: before an attempt is sent, when it ends, before a retry's wait.
HOOK_KINDS = ("request", "response", "retry")


@dataclass(frozen=True, slots=True)
class HookEvent:
    """What a hook is told.

    Attributes:
        kind: ``"request"`` (an attempt is about to be sent), ``"response"`` (an attempt ended,
            with an answer or without) or ``"retry"`` (a failed attempt is retried after
            ``delay``).
        request_id: the call's id (sent as ``X-Request-ID``; the same for every attempt).
        operation: the method called: ``"extract_card"``, ``"extract_cards"`` or ``"ocr_card"``.
        method: the HTTP method.
        url: the request's URL without its query string (and never with credentials).
        attempt: the attempt's number, from 1.
        status_code: the answer's HTTP status (``None`` before an answer, or without one).
        elapsed: seconds the attempt took (``None`` for ``"request"``).
        error: on ``"response"`` and ``"retry"``: the error the attempt ended with, by class
            name (``None`` when it succeeded).
        reason: on ``"retry"``: why it is retried (``"http_503"``, ``"read_timeout"``, ...;
            the same labels as the ``cvekyc.client.retries`` metric).
        delay: on ``"retry"``: seconds before the next attempt.
    """

    kind: Literal["request", "response", "retry"]
    request_id: str
    operation: str
    method: str
    url: str
    attempt: int
    status_code: int | None = None
    elapsed: float | None = None
    error: str | None = None
    reason: str | None = None
    delay: float | None = None


EventHook = Callable[[HookEvent], "Awaitable[None] | None"]
#: ``{"request": [...], "response": [...], "retry": [...]}``; every key is optional.
EventHooks = Mapping[str, Sequence[EventHook]]


def coerce_hooks(hooks: object) -> dict[str, tuple[EventHook, ...]]:
    """Check ``event_hooks`` and return it as a dict of tuples (empty kinds left out).

    Raises:
        ConfigurationError: not a mapping, an unknown kind, or a hook that is not callable.
    """
    if hooks is None:
        return {}
    if not isinstance(hooks, Mapping):
        raise ConfigurationError(
            "event_hooks must be a dict such as {'request': [...], 'response': [...], "
            f"'retry': [...]}}, not {type(hooks).__name__}"
        )
    checked: dict[str, tuple[EventHook, ...]] = {}
    for kind, listed in hooks.items():
        if kind not in HOOK_KINDS:
            raise ConfigurationError(
                f"event_hooks has an unknown kind {kind!r}: use 'request', 'response' or 'retry'"
            )
        if callable(listed) or isinstance(listed, (str, bytes)) or not isinstance(listed, Sequence):
            raise ConfigurationError(
                f"event_hooks[{kind!r}] must be a list of callables, not {type(listed).__name__}"
            )
        for hook in listed:
            if not callable(hook):
                raise ConfigurationError(
                    f"event_hooks[{kind!r}] holds a {type(hook).__name__}, which is not callable"
                )
        if listed:
            checked[kind] = tuple(listed)
    return checked


class HookFailed(Exception):
    """Carries what a hook raised out of the attempt loop, which would take a ``CVError`` for
    the attempt's own failure (and retry it); the call raises ``error`` itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


async def run_hooks(hooks: Sequence[EventHook], event: HookEvent) -> None:
    """Call each hook with ``event``, awaiting those that return an awaitable.

    Raises:
        HookFailed: a hook raised; it holds the hook's exception.
    """
    for hook in hooks:
        try:
            outcome = hook(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            raise HookFailed(exc) from None
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            # The hook's own work was cancelled, not the call: an error of the hook, which
            # must not pass for the call's cancellation (a batch would lose the input).
            raise HookFailed(
                RuntimeError("an event hook raised CancelledError, but the call was not cancelled")
            ) from exc


def _being_cancelled() -> bool:
    """Whether the running asyncio task has been asked to cancel (always ``True`` where Python
    cannot tell, before 3.11)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is None or cancelling is None or cancelling() > 0
