"""Long fault runs over real sockets: 2,000 calls against a scripted hostile server, and every
specimen many times against the emulator with mixed faults. Every input ends exactly once as a
result or a CVError, and no message, repr or log line of the run holds a name or an ID number
from the cards that were served."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
from collections import Counter
from typing import Any

import pytest

from cvekyc_async import AsyncCVClient, BatchResult, CVError, RetryPolicy
from cvekyc_async.emulator import Faults, RunningEmulator, specimens
from cvekyc_async.emulator._truth import read_documents
from cvekyc_async.testing import specimen_personal_data
from tests import samples
from tests._raw import RawServer

pytestmark = pytest.mark.anyio
CALLS = 2_000


def calls(anyio_backend: str, slow_tier: bool) -> int:
    # The full run on asyncio; trio shares every line of the client, so a quarter of it there
    # (the whole run in the slow tier) keeps the suite fast.
    return CALLS if anyio_backend == "asyncio" or slow_tier else CALLS // 4


NO_WAIT = RetryPolicy(backoff_base=0.0, max_retry_after=0.0, budget_capacity=None)


def specimen_documents() -> list[dict[str, Any]]:
    docs = []
    for path in specimens().values():
        for page in read_documents(path.read_bytes()) or []:
            docs.extend(page)
    return docs


DOCUMENTS = specimen_documents()


def personal_values() -> set[str]:
    """The names and ID numbers on the served cards, as printed and without diacritics."""
    values = specimen_personal_data()
    assert len(values) > 10
    return values


def leaks(texts: list[str]) -> list[tuple[str, str]]:
    watched = personal_values()
    return [(value, text[:200]) for text in texts for value in watched if value in text]


def run_texts(results: list[BatchResult], records: list[logging.LogRecord]) -> list[str]:
    """Every message, repr and log line the run produced: the library's and the emulator's logs
    (DEBUG), other loggers' warnings, every error and result. httpcore's own DEBUG traces are
    not captured: they quote what a server sent on a protocol error (the README says to keep
    them off in production)."""
    texts = [r.getMessage() for r in records]
    assert any(r.name == "cvekyc_async" for r in records)
    for r in results:
        texts.append(repr(r))
        if r.error is not None:
            texts += [str(r.error), repr(r.error), r.error.message]
        if r.result is not None:
            texts.append(repr(r.result))
            texts += [f.message for f in r.result.assess().findings]
    return texts


# -- a hostile scripted server -------------------------------------------------------------------


def _answer(data: Any, code: str = "0") -> bytes:
    return json.dumps({"data": data, "errorCode": code, "errorMessage": ""}).encode()


def _response(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _hostile(rng: random.Random) -> tuple[str, bytes]:
    """One answer: 75 % a good card answer, 25 % one of many faults (kind, raw response)."""
    doc = rng.choice(DOCUMENTS)
    good = _answer(doc)
    if rng.random() < 0.75:
        return "good", _response("200 OK", good, "Content-Type: application/json")
    info = doc.get("info", {})
    leak = f"{info.get('name', '')} {info.get('id', '')} {info.get('person_number', '')}"
    kind = rng.choice(
        [
            "gzip_lie",
            "bad_utf8",
            "deep",
            "big_code",
            "odd_digits",
            "announced_50mb",
            "drop",
            "bad_status",
            "html_with_data",
            "text_with_data",
            "bad_chunks",
            "header_with_data",
            "truncated_gzip",
        ]
    )
    if kind == "gzip_lie":
        return kind, _response("200 OK", good, "Content-Encoding: gzip")
    if kind == "bad_utf8":
        return kind, _response("200 OK", good.replace(b'"0"', b'"0\xff"', 1))
    if kind == "deep":
        return kind, _response(
            "200 OK", _answer(None).replace(b"null", b"[" * 50_000 + b"]" * 50_000)
        )
    if kind == "big_code":
        return kind, _response("200 OK", _answer(doc, "9" * 5000))
    if kind == "odd_digits":
        return kind, _response("200 OK", _answer(doc, rng.choice(["²", "١٢", "０"])))
    if kind == "announced_50mb":
        head = "HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\nConnection: close\r\n\r\n"
        return kind, head.encode() + good
    if kind == "drop":
        full = _response("200 OK", good)
        return kind, full[: len(full) - len(good) // 2]
    if kind == "bad_status":
        return kind, f"HTTP/1.1 2xx {leak}\r\n\r\n".encode()
    if kind == "html_with_data":
        page = f"<html><head><title>502 Bad Gateway</title></head><body>{leak}</body></html>"
        return kind, _response("502 Bad Gateway", page.encode(), "Content-Type: text/html")
    if kind == "text_with_data":
        status = rng.choice(["200 OK", "400 Bad Request", "500 Internal Server Error"])
        return kind, _response(status, leak.encode(), "Content-Type: text/plain")
    if kind == "bad_chunks":
        head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        return kind, head.encode() + b"zz\r\n" + leak.encode() + b"\r\n"
    if kind == "header_with_data":
        return kind, f"HTTP/1.1 200 OK\r\n{leak}\r\n\r\n".encode()
    compressed = gzip.compress(good)
    return kind, _response("200 OK", compressed[: len(compressed) // 2], "Content-Encoding: gzip")


class HostileServer(RawServer):
    """Answers request ``n`` with ``_hostile(Random(seed + n))``, so a run's answers are the same
    whatever order the requests arrive in."""

    def __init__(self, seed: int) -> None:
        super().__init__(self._answer)
        self.seed = seed
        self.served: Counter[str] = Counter()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        kind, raw = _hostile(random.Random(self.seed * 1_000_003 + self.requests - 1))
        self.served[kind] += 1
        writer.write(raw)


async def test_2000_calls_against_a_hostile_server_end_in_the_error_tree(
    caplog: pytest.LogCaptureFixture, anyio_backend: str, slow_tier: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="cvekyc_async")
    n = calls(anyio_backend, slow_tier)
    inputs = [samples.JPEG + i.to_bytes(4, "big") for i in range(n)]
    with HostileServer(seed=7) as server:
        async with AsyncCVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=f"http://127.0.0.1:{server.port}",
            retry=NO_WAIT,
            trust_env=False,
        ) as client:
            results = await client.extract_many(inputs, concurrency=16, fatal_errors=())
    assert [r.index for r in results] == list(range(n))
    outcomes = Counter(type(r.error).__name__ if r.error else "ok" for r in results)
    assert all(r.error is None or isinstance(r.error, CVError) for r in results)
    # About a quarter of the answers are faults, and each kind was served.
    assert 0.2 < 1 - server.served["good"] / sum(server.served.values()) < 0.3
    assert len(server.served) == 14
    # Broken connections are retried (most then succeed); what is left ends typed.
    assert {"ok", "MalformedResponseError", "APIStatusError"} <= set(outcomes)
    assert outcomes["ResponseTooLargeError"] > 0
    assert leaks(run_texts(results, caplog.records)) == []


async def test_calls_against_the_emulator_with_mixed_faults_leak_nothing(
    cv_emulator: RunningEmulator,
    caplog: pytest.LogCaptureFixture,
    anyio_backend: str,
    slow_tier: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cvekyc_async")
    # Every specimen about 50 times (test_resilience runs 2,000 calls of one card with faults).
    n = calls(anyio_backend, slow_tier) * 3 // 10
    cv_emulator.set_faults(
        Faults(
            seed=11,
            rate_429=0.05,
            rate_500=0.05,
            rate_502=0.03,
            rate_503=0.03,
            rate_504=0.03,
            rate_drop=0.03,
            rate_malformed=0.03,
            retry_after="0",
        )
    )
    paths = list(specimens().values())
    inputs = [paths[i % len(paths)] for i in range(n)]
    async with cv_emulator.client(retry=NO_WAIT) as client:
        results = await client.extract_many(inputs, endpoint="ocr", concurrency=16)
    assert len(results) == n
    outcomes = Counter(type(r.error).__name__ if r.error else "ok" for r in results)
    assert outcomes["ok"] > n * 0.8
    assert cv_emulator.stats()["faults_total"] > n * 0.2
    assert leaks(run_texts(results, caplog.records)) == []
