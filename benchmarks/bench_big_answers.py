"""Peak RSS of 32 concurrent calls that each get a 50 MB answer (a faulty or hostile server).

A server in its own process answers every request with 50 MB, either announced
(``Content-Length``) or streamed without a length (chunked). Each contender runs in a fresh
process and reports its peak RSS above what it held before the calls, and how the calls ended:

- ``cvekyc-async``: ``AsyncCVClient()`` as users build it (``max_response_size`` 32 MiB,
  ``max_concurrency`` 10), and with ``max_concurrency=32``;
- raw ``httpx.AsyncClient``, and ``aiohttp``, reading the whole answer as hand-written loops do.

    python -m benchmarks.bench_big_answers [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from benchmarks._harness import API_KEY, API_SECRET, parser, table, write_json
from cvekyc_async.emulator import synthetic_jpeg

ANSWER = 50 * 1024 * 1024

SERVER = r"""
import asyncio, sys
size, chunked = int(sys.argv[1]), sys.argv[2] == "chunked"
block = b" " * (1024 * 1024)

async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size)
        sent = 0
        while sent < size:
            part = block[: size - sent]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
            sent += len(part)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

CHILD = r"""
import gc, json, resource, sys
import anyio

base, contender, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = base + "/api/v2/ekyc/card?format_type=file&get_thumb=false"
image = open(sys.argv[4], "rb").read()

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

async def cvekyc(concurrency):
    from cvekyc_async import AsyncCVClient, CVError
    outcomes = {}
    kwargs = {} if concurrency is None else {"max_concurrency": concurrency}
    async with AsyncCVClient(%(key)r, %(secret)r, base_url=base, max_retries=0, **kwargs) as c:
        async def one():
            try:
                await c.extract_card(image)
                name = "ok"
            except CVError as exc:
                name = type(exc).__name__
            outcomes[name] = outcomes.get(name, 0) + 1
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
    return outcomes

async def raw_httpx():
    import httpx
    outcomes = {}
    async with httpx.AsyncClient(timeout=60) as http:
        async def one():
            r = await http.post(url, files={"img": ("a.jpg", image, "image/jpeg")})
            name = f"read {len(r.content) // 1024 // 1024} MB"
            outcomes[name] = outcomes.get(name, 0) + 1
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
    return outcomes

async def raw_aiohttp():
    import aiohttp
    outcomes = {}
    async with aiohttp.ClientSession() as session:
        async def one():
            form = aiohttp.FormData()
            form.add_field("img", image, filename="a.jpg", content_type="image/jpeg")
            async with session.post(url, data=form) as r:
                body = await r.read()
            name = f"read {len(body) // 1024 // 1024} MB"
            outcomes[name] = outcomes.get(name, 0) + 1
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
    return outcomes

runs = {
    "cvekyc-async": lambda: cvekyc(None),
    "cvekyc-async c=32": lambda: cvekyc(32),
    "raw httpx": raw_httpx,
    "aiohttp": raw_aiohttp,
}
gc.collect()
before = rss_mb()
outcomes = anyio.run(runs[contender])
print(json.dumps({"outcomes": outcomes, "before_mb": before, "peak_mb": rss_mb()}))
""" % {"key": API_KEY, "secret": API_SECRET}

CONTENDERS = ["cvekyc-async", "cvekyc-async c=32", "raw httpx", "aiohttp"]


def measure(port: int, contender: str, calls: int, image: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, f"http://127.0.0.1:{port}", contender, str(calls), image],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    calls = 4 if args.quick else 32
    size = 8 * 1024 * 1024 if args.quick else ANSWER
    contenders = CONTENDERS[:1] + CONTENDERS[2:3] if args.quick else CONTENDERS
    with tempfile.NamedTemporaryFile(suffix=".jpg", delete=False) as fh:
        fh.write(synthetic_jpeg(0, 50_000))
    results: dict[str, dict[str, dict]] = {}
    for mode in ("announced", "chunked"):
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(size), mode], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            results[mode] = {name: measure(port, name, calls, fh.name) for name in contenders}
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = []
    for mode, by_name in results.items():
        base = by_name["raw httpx"]["peak_mb"] - by_name["raw httpx"]["before_mb"]
        for name, r in by_name.items():
            added = r["peak_mb"] - r["before_mb"]
            shown = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
            rows.append([mode, name, f"{added:.0f}", f"{added / base:.3f}", shown])
    mb = size // 1024 // 1024
    print(
        table(
            f"Peak RSS added by {calls} concurrent calls, each answered with {mb} MB",
            ["answer", "contender", "RSS added (MB)", "x raw httpx", "outcomes"],
            rows,
        )
    )
    path = write_json(
        "big_answers", {"calls": calls, "answer_bytes": size, "results": results}, args.json
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
