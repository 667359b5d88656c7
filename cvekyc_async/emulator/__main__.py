"""``python -m cvekyc_async.emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

import uvicorn

from ._app import EmulatorApp
from ._server import bind_socket, quiet_deliberate_drops, uvicorn_config
from ._state import FAULT_KINDS, EmulatorSettings, EmulatorState, Faults

__all__ = ["build_parser", "main"]

_DEFAULTS = EmulatorSettings()


def build_parser(prog: str = "python -m cvekyc_async.emulator") -> argparse.ArgumentParser:
    """The emulator's command-line options (shared with ``cvekyc emulator``)."""
    p = argparse.ArgumentParser(prog=prog, description="Serve a local emulator of the card API.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--api-key", default=_DEFAULTS.api_key, help="API key it accepts")
    p.add_argument("--api-secret", default=_DEFAULTS.api_secret, help="API secret it accepts")
    p.add_argument("--quota", type=int, default=None, help="billed answers before errorCode 4")
    p.add_argument(
        "--strict", action="store_true", help="errorCode 1 for images without ground truth"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of fault and jitter draws")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.add_argument("--jitter", type=float, default=0.0, help="plus uniform [0, jitter) seconds")
    for kind in FAULT_KINDS:
        p.add_argument(
            f"--rate-{kind}", type=float, default=0.0, metavar="P", help=f"rate of {kind} faults"
        )
    p.add_argument("--retry-after", default="1", help="Retry-After sent with 429 and 503")
    p.add_argument("--stall-seconds", type=float, default=120.0, help="how long a stall lasts")
    p.add_argument(
        "--capacity", type=int, default=0, help="requests served at once (default 0: no limit)"
    )
    p.add_argument(
        "--queue", type=int, default=0, help="requests that may wait for a slot; then 429"
    )
    p.add_argument(
        "--slowdown", type=float, default=0.0, help="latency growth with slots in use (0-...)"
    )
    p.add_argument(
        "--workers-loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="the event loop uvicorn serves with (default auto: uvloop when installed)",
    )
    return p


def app_from_args(args: argparse.Namespace) -> EmulatorApp:
    settings = EmulatorSettings(
        api_key=args.api_key, api_secret=args.api_secret, quota=args.quota, strict=args.strict
    )
    rates = {f"rate_{k}": getattr(args, f"rate_{k}") for k in FAULT_KINDS}
    faults = Faults(
        seed=args.seed,
        latency=args.latency,
        jitter=args.jitter,
        retry_after=args.retry_after,
        stall_seconds=args.stall_seconds,
        capacity=args.capacity,
        queue=args.queue,
        slowdown=args.slowdown,
        **rates,
    )
    return EmulatorApp(EmulatorState(settings, faults))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog or "python -m cvekyc_async.emulator")
    args = parser.parse_args(argv)
    try:
        app = app_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    quiet_deliberate_drops()
    # Bound before the banner, so that a line on stderr means connections are accepted (they
    # wait in the backlog until the server loop takes them); port 0 picks a free port.
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{port}"
    print(
        f"cvekyc emulator listening on {base_url} (counts at /_emulator/stats)\n"
        "To point cvekyc, AsyncCVClient() and CVClient() at it, paste in another shell:\n"
        f"export CVEKYC_BASE_URL={shlex.quote(base_url)}\n"
        f"export CVEKYC_API_KEY={shlex.quote(args.api_key)}\n"
        f"export CVEKYC_API_SECRET={shlex.quote(args.api_secret)}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn_config(app, args.host, port, loop=args.workers_loop)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
