"""Fresh event loops, for the ``cvekyc`` command and ``CVClient``'s loop thread.

On asyncio they run on uvloop when it is installed (the ``cli`` extra installs it): measured,
it takes 7-9 % off the client's CPU per request. ``CVEKYC_UVLOOP=0`` keeps asyncio's own loop.
An ``AsyncCVClient`` runs on whatever loop its caller runs (uvicorn also picks uvloop when it
is installed).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio

__all__ = ["ENV_UVLOOP", "backend_options", "run"]

#: Set to ``0`` to run the command and ``CVClient`` on asyncio's own loop.
ENV_UVLOOP = "CVEKYC_UVLOOP"

T = TypeVar("T")


def backend_options(backend: str) -> dict[str, Any]:
    """anyio's options for a loop of ``backend``: uvloop for asyncio when it is installed."""
    if backend != "asyncio" or sys.platform == "win32":
        return {}
    if os.environ.get(ENV_UVLOOP, "").strip() in ("0", "false", "no", "off"):
        return {}
    if importlib.util.find_spec("uvloop") is None:
        return {}
    return {"use_uvloop": True}


def run(
    func: Callable[..., Awaitable[T]],
    *args: Any,
    backend: Literal["asyncio", "trio"] = "asyncio",
) -> T:
    """``anyio.run`` with ``backend_options``."""
    return anyio.run(func, *args, backend=backend, backend_options=backend_options(backend))
