"""A light server: an ASGI app under uvicorn (httptools) that reads each upload and answers a
fixed JSON as small as the real service's, so that the client, not the server, is the bound.

The emulator decodes every image with Pillow and tops out near 1,000 requests/s on one core;
this one answers several times faster, which is what measuring the client's own cost needs.

    python -m benchmarks.light_server --port 8765 [--latency 0.1] [--tls CERT KEY]

It prints ``light server listening on URL`` on stderr once it listens (``--port 0``: a free
port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

import uvicorn

#: One chip card front, as the service answers it (561 bytes of UTF-8).
ANSWER = json.dumps(
    {
        "data": [
            {
                "type": "chip_id_card_front",
                "valid": "True",
                "info": {
                    "id": "001099012345",
                    "id_confidence": "0.99",
                    "name": "NGUYỄN VĂN A",
                    "name_confidence": "0.98",
                    "dob": "01/01/1990",
                    "dob_confidence": "0.99",
                    "sex": "Nam",
                    "sex_confidence": "0.99",
                    "nationality": "Việt Nam",
                    "nationality_confidence": "0.99",
                    "hometown": "Hà Nội",
                    "hometown_confidence": "0.97",
                    "address": "Số 1 Phố Huế, Hai Bà Trưng, Hà Nội",
                    "address_confidence": "0.95",
                    "due_date": "01/01/2030",
                    "due_date_confidence": "0.99",
                },
            }
        ],
        "errorCode": "0",
        "errorMessage": "",
    },
    ensure_ascii=False,
).encode()
_HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


def make_app(latency: float = 0.0) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:  # the whole upload is read, as a real server does
            message = await receive()
            more = message.get("more_body", False)
        if latency:
            await asyncio.sleep(latency)
        await send({"type": "http.response.start", "status": 200, "headers": _HEAD})
        await send({"type": "http.response.body", "body": ANSWER})

    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8765, help="port to listen on")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with these")
    args = p.parse_args(argv)
    tls = {"ssl_certfile": args.tls[0], "ssl_keyfile": args.tls[1]} if args.tls else {}
    config = uvicorn.Config(
        make_app(args.latency),
        host=args.host,
        port=args.port,
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
        # nginx's default: uvicorn's 5 s closes the idle connections of a slow client between
        # two of its requests, and a benchmark would count that race as the client's failure.
        timeout_keep_alive=75,
        **tls,
    )
    _Announcing(config).run()


class _Announcing(uvicorn.Server):
    """Says where it listens once it does, so that ``--port 0`` can be used and a benchmark
    waits for the banner (as ``_harness.server`` does) rather than polling a port."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            scheme = "https" if self.config.is_ssl else "http"
            print(
                f"light server listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True
            )


if __name__ == "__main__":
    main()
