"""Adaptive concurrency against five services written apart from the emulator's capacity model.

Each service is a small raw asyncio HTTP/1.1 server on 127.0.0.1, in a process of its own, that
answers like the API (``{"errorCode": "0", "errorMessage": "", "data": [...]}``):

- ``hard``: takes 16 at once (50 ms +0-20 %), answers 429 at once beyond that;
- ``knee``: takes all, but latency doubles for every 16 in service past the first 16;
- ``queue``: 16 workers (50 ms +0-20 %) and an unbounded queue: never says no;
- ``bursts``: takes all (100 ms +0-20 %), but answers 503 at once for the last second of every
  five;
- ``steps``: as ``hard``, taking 40 at once for the first third of the run, 8 for the second,
  40 again for the last.

For each, a sweep of fixed ``max_concurrency`` settings finds the best fixed throughput; then
``max_concurrency="auto"`` runs from its start of 4. Every run uses the client's default retries
(2, with backoff); a call that still fails counts as failed, not as an answer. Reported: answers/s
of auto against the best fixed, and auto's 429 and 503 shares of the requests the server saw.

    python -m benchmarks.bench_adaptive_servers [--quick] [--only hard --only steps ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks._harness import (
    drive_limit,
    loop_name,
    make_files,
    parser,
    pin_to_core,
    server,
    table,
    write_json,
)
from cvekyc_async._runner import run

ANSWER = json.dumps(
    {
        "errorCode": "0",
        "errorMessage": "",
        "data": [
            {
                "type": "chip_id_card_front",
                "valid": "True",
                "invalidMessage": "Successful",
                "info": {"id": "001099012345", "name": "NGUYỄN VĂN A", "dob": "01/01/1990"},
            }
        ],
    }
).encode()
# Overload answers carry no errorCode (one would make them API errors), as a gateway's do.
BUSY = b'{"message":"Too Many Requests"}'
DOWN = b'{"message":"Service Unavailable"}'

# name: (title, what the server does, fixed settings swept)
SERVERS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "hard": (
        "hard capacity 16 (429 beyond)",
        {"capacity": 16, "latency": 0.05},
        (8, 12, 16, 20, 24, 32, 48),
    ),
    "knee": (
        "latency doubling past 16 in service",
        {"knee": 16, "latency": 0.05},
        (8, 16, 24, 32, 48, 64),
    ),
    "queue": (
        "queueing: 16 workers, unbounded queue",
        {"workers": 16, "latency": 0.05},
        (8, 16, 24, 32, 48, 64),
    ),
    "bursts": (
        "503 for 1 s in every 5 s",
        {"period": 5.0, "burst": 1.0, "latency": 0.1},
        (16, 32, 48, 64),
    ),
    "steps": (
        "hard capacity 40 -> 8 -> 40 (thirds of the run)",
        {"steps": (40, 8, 40), "latency": 0.05},
        (8, 16, 24, 40, 64),
    ),
}


# -- the services ------------------------------------------------------------------------------


class Service:
    """One service's behaviour and counts; ``configure`` starts it afresh."""

    def __init__(self) -> None:
        self.kind = "hard"
        self.options: dict[str, Any] = {}
        self.started = time.monotonic()
        self.in_service = 0
        self.free: list[float] = []
        self.counts = {"requests": 0, "200": 0, "429": 0, "503": 0, "peak": 0}
        self.rng = random.Random(1)

    def configure(self, kind: str, options: dict[str, Any]) -> None:
        self.kind, self.options = kind, options
        self.started = time.monotonic()
        self.free = [0.0] * options.get("workers", 0)
        self.counts = dict.fromkeys(self.counts, 0)
        self.rng = random.Random(1)

    def capacity(self, now: float) -> int:
        o = self.options
        if "steps" in o:
            steps = o["steps"]
            third = int((now - self.started) / (o["length"] / len(steps)))
            return int(steps[min(third, len(steps) - 1)])
        return int(o.get("capacity", 1 << 30))

    async def answer(self) -> tuple[int, bytes]:
        o = self.options
        now = time.monotonic()
        self.counts["requests"] += 1
        latency = o["latency"] * (1 + 0.2 * self.rng.random())
        if self.kind == "bursts" and (now - self.started) % o["period"] >= o["period"] - o["burst"]:
            self.counts["503"] += 1
            return 503, DOWN
        if self.in_service >= self.capacity(now):
            self.counts["429"] += 1
            return 429, BUSY
        if self.kind == "knee":
            latency *= 2 ** (max(0, self.in_service + 1 - o["knee"]) / o["knee"])
        elif self.kind == "queue":
            end = max(now, heapq.heappop(self.free)) + latency
            heapq.heappush(self.free, end)
            latency = end - now
        self.in_service += 1
        self.counts["peak"] = max(self.counts["peak"], self.in_service)
        try:
            await asyncio.sleep(latency)
        finally:
            self.in_service -= 1
        self.counts["200"] += 1
        return 200, ANSWER


async def _read(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """One request: its target and body (by Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    target = lines[0].split(b" ")[1].decode()
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return target, await reader.readexactly(length)
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return target, bytes(body)


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 503: "Service Unavailable"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def serve() -> None:
    service = Service()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                target, body = await _read(reader)
                if target.startswith("/_configure"):
                    spec = json.loads(body)
                    service.configure(spec["kind"], spec["options"])
                    status, answer = 200, b"{}"
                elif target.startswith("/_counts"):
                    status, answer = 200, json.dumps(service.counts).encode()
                else:
                    status, answer = await service.answer()
                writer.write(_response(status, answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    """The services in a process of their own (on core 1 where there are two); its base URL."""
    cmd = [sys.executable, "-m", "benchmarks.bench_adaptive_servers", "--serve"]
    with server(cmd, 1, "the test server") as (_, base_url, _log):
        yield base_url


# -- the client --------------------------------------------------------------------------------


def measure(
    control: httpx.Client,
    base_url: str,
    files: list[Path],
    kind: str,
    options: dict[str, Any],
    setting: Any,
    seconds: float,
) -> dict[str, Any]:
    control.post("/_configure", json={"kind": kind, "options": options}).raise_for_status()
    result = run(drive_limit, base_url, files, setting, seconds)
    counts = control.get("/_counts").json()
    result["rate"] = result["answers"] / result["elapsed"]
    result["server"] = counts
    requests = max(1, counts["requests"])
    result["share_429"] = counts["429"] / requests
    result["share_503"] = counts["503"] / requests
    # Let retries still waiting and answers still in service end before the next run.
    time.sleep(1.0)
    return result


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--only", choices=SERVERS, action="append", help="run this service only")
    args = p.parse_args()
    if args.serve:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(serve())
        return
    pin_to_core(0)
    files = make_files(100, size=20_000)
    results: dict[str, Any] = {}
    rows = []
    with server_process() as base_url, httpx.Client(base_url=base_url, timeout=30) as control:
        for kind, (title, options, fixed) in SERVERS.items():
            if args.only and kind not in args.only:
                continue
            long = kind in ("bursts", "steps")  # long enough for their pattern to show
            if args.quick:
                sweep_s, auto_s, fixed = 1.0, 2.0, fixed[1::3]
            else:
                sweep_s, auto_s = (15.0, 20.0) if long else (5.0, 15.0)
            sweep: dict[int, dict[str, Any]] = {}
            for k in fixed:
                length = sweep_s
                sweep[k] = measure(
                    control, base_url, files, kind, {**options, "length": length}, k, sweep_s
                )
            auto = measure(
                control, base_url, files, kind, {**options, "length": auto_s}, "auto", auto_s
            )
            best_k = max(sweep, key=lambda k: sweep[k]["rate"])
            best = sweep[best_k]["rate"]
            results[kind] = {
                "title": title,
                "options": options,
                "sweep": {str(k): v for k, v in sweep.items()},
                "auto": auto,
                "best_fixed": {"in_flight": best_k, "rate": best},
                "auto_over_best": auto["rate"] / best if best else 0.0,
            }
            rows.append(
                [
                    title,
                    f"{best_k}",
                    f"{best:.0f}",
                    f"{auto['rate']:.0f}",
                    f"{auto['rate'] / best:.0%}" if best else "-",
                    f"{auto['share_429']:.2%}",
                    f"{auto['share_503']:.2%}",
                    f"{sweep[best_k]['failed']} / {auto['failed']}",
                ]
            )
            print(f"{kind}: auto concurrency by second:", " ".join(map(str, auto["levels"])))
    text = table(
        f"max_concurrency='auto' against services written apart from the emulator, "
        f"{'quick run' if args.quick else 'full run'}, {loop_name()}",
        [
            "service",
            "best fixed",
            "its answers/s",
            "auto answers/s",
            "auto / best",
            "auto 429",
            "auto 503",
            "failed (best / auto)",
        ],
        rows,
    )
    print()
    print(text)
    path = write_json("adaptive_servers", {"servers": results}, args.json)
    path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
