"""The contenders: the same uploads to the same server, each the way its users would write it.

Every contender reads each file from disk when it sends it, uploads it as multipart
``format_type=file`` to ``/api/v2/ekyc/card``, and reads the answer's ``errorCode``. Each is an
async context manager that opens the contender's client and yields a function sending a list of
files with ``in_flight`` requests at once, so a run can be timed with its connections already
open (warm) or including opening them (cold).

Two keyword options, off by default, for the runs that need them: ``verify``, a CA bundle
file to trust (a server with a certificate of a local CA), handed over as each library's users
do it; and ``failures``, a list that collects one line per failed request instead of the first
failure ending the run, so that a run can count them.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import httpx
import requests

from benchmarks._harness import API_KEY, API_SECRET
from cvekyc_async import AsyncCVClient

PATH = "/api/v2/ekyc/card"
QUERY = {"format_type": "file", "get_thumb": "false"}

Send = Callable[[list[Path]], Awaitable[int]]
Contender = Callable[[str, int], AbstractAsyncContextManager[Send]]


def _check(code: object) -> None:
    if code != "0":
        raise RuntimeError(f"the server answered errorCode {code!r}")


@asynccontextmanager
async def cvekyc(
    base_url: str,
    in_flight: int,
    transport: str = "auto",
    *,
    verify: str | None = None,
    failures: list[str] | None = None,
) -> AsyncIterator[Send]:
    """``AsyncCVClient(max_concurrency=N)`` and its batch helper ``extract_many``."""
    async with AsyncCVClient(
        API_KEY,
        API_SECRET,
        base_url=base_url,
        max_concurrency=in_flight,
        transport=transport,  # type: ignore[arg-type]
        verify=verify or True,
    ) as client:

        async def send(files: list[Path]) -> int:
            results = await client.extract_many(files, concurrency=in_flight)
            failed = [r.error for r in results if not r.ok]
            if failed and failures is None:
                raise RuntimeError(f"{len(failed)} failed, first: {failed[0]}")
            if failures is not None:
                failures.extend(repr(error) for error in failed)
            return len(results)

        yield send


async def _workers(
    files: list[Path],
    in_flight: int,
    one: Callable[[Path], Awaitable[None]],
    failures: list[str] | None = None,
) -> int:
    inputs: Iterator[Path] = iter(files)

    async def worker() -> None:
        for path in inputs:
            if failures is None:
                await one(path)
                continue
            try:
                await one(path)
            except Exception as exc:  # counted by the caller: every kind of failure alike
                failures.append(repr(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)
    return len(files)


def _trusting(verify: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=verify) if verify else None


@asynccontextmanager
async def raw_httpx(
    base_url: str,
    in_flight: int,
    *,
    verify: str | None = None,
    failures: list[str] | None = None,
) -> AsyncIterator[Send]:
    """One ``httpx.AsyncClient`` with a pool as large as the requests in flight."""
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(
        base_url=base_url,
        auth=(API_KEY, API_SECRET),
        limits=limits,
        timeout=120,
        verify=_trusting(verify) or True,
    ) as client:

        async def one(path: Path) -> None:
            data = path.read_bytes()
            r = await client.post(
                PATH, params=QUERY, files={"img": (path.name, data, "image/jpeg")}
            )
            _check(r.json()["errorCode"])

        async def send(files: list[Path]) -> int:
            return await _workers(files, in_flight, one, failures)

        yield send


@asynccontextmanager
async def raw_aiohttp(
    base_url: str,
    in_flight: int,
    *,
    verify: str | None = None,
    failures: list[str] | None = None,
) -> AsyncIterator[Send]:
    """One ``aiohttp.ClientSession`` with a connector as large as the requests in flight."""
    connector = aiohttp.TCPConnector(limit=in_flight, ssl=_trusting(verify) or True)
    token = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        base_url, connector=connector, headers=headers, timeout=timeout
    ) as s:

        async def one(path: Path) -> None:
            form = aiohttp.FormData()
            form.add_field("img", path.read_bytes(), filename=path.name, content_type="image/jpeg")
            async with s.post(PATH, params=QUERY, data=form) as r:
                _check((await r.json())["errorCode"])

        async def send(files: list[Path]) -> int:
            return await _workers(files, in_flight, one, failures)

        yield send


def requests_loop(base_url: str, files: list[Path]) -> int:
    """The vendor's sample: ``requests.post`` for one file after another."""
    for path in files:
        with path.open("rb") as fh:
            response = requests.post(
                f"{base_url}{PATH}?format_type=file&get_thumb=false",
                auth=(API_KEY, API_SECRET),
                files={"img": fh},
                timeout=120,
            )
        _check(response.json()["errorCode"])
    return len(files)
