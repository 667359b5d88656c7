"""Serving the emulator: in a background thread (tests, user code) or as the main program."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import uvicorn

from ._app import DeliberateDrop, EmulatorApp
from ._state import EmulatorSettings, EmulatorState, Faults

if TYPE_CHECKING:
    from .._client import AsyncCVClient
    from .._sync import CVClient

__all__ = [
    "RunningEmulator",
    "bind_socket",
    "quiet_deliberate_drops",
    "run_emulator",
    "serve_emulator",
    "uvicorn_config",
]

_START_TIMEOUT = 30.0


class _QuietDrops(logging.Filter):
    """Keeps the server's error log free of the connection drops injected on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DeliberateDrop):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def quiet_deliberate_drops() -> None:
    """Install the filter on uvicorn's error logger (once)."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in log.filters):
        log.addFilter(_QuietDrops())


def uvicorn_config(app: EmulatorApp, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings the emulator runs with."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 1,
        "backlog": 4096,
        "limit_concurrency": None,
        "timeout_keep_alive": 30,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class RunningEmulator:
    """A running emulator: where it is, the credentials it takes, and its controls.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``, to pass to ``AsyncCVClient(base_url=...)``.
        api_key: the API key it accepts.
        api_secret: the API secret it accepts.
        state: its live settings, faults and counts (shared with the server thread).
    """

    def __init__(self, base_url: str, state: EmulatorState) -> None:
        self.base_url = base_url
        self.state = state

    def __repr__(self) -> str:
        return f"RunningEmulator(base_url={self.base_url!r})"

    @property
    def api_key(self) -> str:
        return self.state.settings.api_key

    @property
    def api_secret(self) -> str:
        return self.state.settings.api_secret

    def client(self, **kwargs: Any) -> AsyncCVClient:
        """An ``AsyncCVClient`` pointed at this emulator with its credentials.

        It ignores proxies named by the environment (``trust_env=False``) unless told
        otherwise: the emulator is on this machine, where a proxy cannot be meant.
        """
        from .._client import AsyncCVClient

        kwargs.setdefault("base_url", self.base_url)
        kwargs.setdefault("trust_env", False)
        return AsyncCVClient(self.api_key, self.api_secret, **kwargs)

    def sync_client(self, **kwargs: Any) -> CVClient:
        """A ``CVClient`` (the synchronous client) pointed at this emulator, as ``client()``."""
        from .._sync import CVClient

        kwargs.setdefault("base_url", self.base_url)
        kwargs.setdefault("trust_env", False)
        return CVClient(self.api_key, self.api_secret, **kwargs)

    def specimen_url(self, name: str) -> str:
        """The URL this emulator serves a bundled specimen at (for ``format_type=url``)."""
        return f"{self.base_url}/specimens/{quote(name)}"

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Change the injected faults (see ``Faults``); restarts the seeded draws."""
        return self.state.set_faults(faults, **changes)

    def clear_faults(self) -> Faults:
        """Stop injecting faults."""
        return self.state.set_faults(Faults())

    def stats(self) -> dict[str, Any]:
        """Counts of what it served (see ``EmulatorState.stats``)."""
        return self.state.stats()

    def reset(self) -> None:
        """Zero the counts."""
        self.state.reset_counts()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the emulator handles no request (see ``EmulatorState.wait_idle``)."""
        return self.state.wait_idle(timeout)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0 for a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def serve_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: EmulatorSettings | None = None,
    faults: Faults | None = None,
) -> Iterator[RunningEmulator]:
    """Run the emulator in a background thread for the duration of a ``with`` block.

    Args:
        host: loopback address to listen on.
        port: port to listen on; 0 picks a free one.
        settings: credentials, quota, strict mode.
        faults: faults to inject from the start.

    Yields:
        The running emulator; its ``base_url`` names the port it got.
    """
    quiet_deliberate_drops()
    state = EmulatorState(settings, faults)
    app = EmulatorApp(state)
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = _Server(uvicorn_config(app, host, bound_port))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="cvekyc-emulator", daemon=True
    )
    thread.start()
    try:
        if not server.ready.wait(_START_TIMEOUT):
            raise RuntimeError("the emulator did not start in time")
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningEmulator(f"http://{shown}:{bound_port}", state)
    finally:
        server.should_exit = True
        thread.join(_START_TIMEOUT)
        sock.close()


@contextlib.asynccontextmanager
async def run_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: EmulatorSettings | None = None,
    faults: Faults | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Run the emulator for the duration of an ``async with`` block (asyncio or trio).

    It runs on its own thread and event loop, so it works under any async library and never
    competes with the caller's loop. Arguments as ``serve_emulator``.
    """
    cm = serve_emulator(host=host, port=port, settings=settings, faults=faults)
    emulator = await anyio.to_thread.run_sync(cm.__enter__)
    try:
        yield emulator
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cm.__exit__, None, None, None)
