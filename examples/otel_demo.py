"""The FastAPI example under uvicorn with the OpenTelemetry SDK: what the client records.

Run it (no account or network needed: the emulator answers)::

    pip install 'cvekyc-async[emulator,otel]' opentelemetry-sdk fastapi python-multipart
    python examples/otel_demo.py            # --requests 100 --calls 2000 --seed 7

1. ``--requests`` concurrent requests to the app, all in one trace (the driver's span): each
   has the app's server span, the client's call span and its attempt spans. The tree of one
   request that was retried is printed.
2. A fault run of ``--calls`` requests, the emulator injecting 429, 500, 502, 503 and 504
   answers and dropped connections (seeded): the client's metrics beside the emulator's counts.
   Every injected fault is one retry, by its reason.
3. Every span, metric point and log line of the fault run (the library's logger at DEBUG) is
   searched for the names and ID numbers on the specimen cards the emulator served: the hits.

The same app, client and telemetry run in one process, so in-memory exporters see it all.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cvekyc_async import RetryPolicy
from cvekyc_async.emulator import Faults, RunningEmulator, serve_emulator, specimens
from cvekyc_async.testing import specimen_personal_data

HERE = Path(__file__).resolve().parent
#: The reason each of the emulator's faults is retried for.
REASONS = {
    "429": "http_429",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "504": "http_504",
    "drop": "connection_lost",
}


def load_app_module() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app", HERE / "fastapi_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Captured(logging.Handler):
    """Keeps every line the library logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app under uvicorn (httptools) on a loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def uploads() -> list[tuple[str, bytes]]:
    return [(name, path.read_bytes()) for name, path in sorted(specimens().items())]


async def post_all(app_url: str, count: int, concurrency: int, traced: bool) -> Counter[int]:
    """``count`` uploads of the specimens to the app, ``concurrency`` at once; the statuses."""
    files = itertools.cycle(uploads())
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=app_url, timeout=120, limits=limits) as http:

        async def one(name: str, data: bytes) -> None:
            headers: dict[str, str] = {}
            if traced:
                propagate.inject(headers)  # the driver's trace goes on in the app
            async with gate:
                answer = await http.post(
                    "/cards/read", files={"image": (name, data)}, headers=headers
                )
            statuses[answer.status_code] += 1

        await asyncio.gather(*(one(*next(files)) for _ in range(count)))
    return statuses


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> list[str]:
    children: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        attrs = dict(span.attributes or {})
        shown = {
            k: v
            for k, v in attrs.items()
            if k
            in (
                "http.response.status_code",
                "http.request.resend_count",
                "cvekyc.retry.reason",
                "cvekyc.attempts",
                "cvekyc.billed",
                "cvekyc.input_style",
                "error.type",
            )
        }
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        kind = span.kind.name.lower()
        lines.append(f"{'  ' * depth}{span.name} [{kind}, {took:.1f} ms] {shown}")
        for child in sorted(
            children.get(span.context.span_id, []), key=lambda s: s.start_time or 0
        ):
            walk(child, depth + 1)

    walk(root, 0)
    return lines


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (getattr(point, "count", 0), getattr(point, "sum", 0.0))
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def texts_of(
    spans: list[ReadableSpan], points: dict[str, list[tuple[dict[str, Any], Any]]], lines: list[str]
) -> list[str]:
    texts = list(lines)
    for span in spans:
        texts.append(span.name)
        texts += [f"{k}={v!s}" for k, v in (span.attributes or {}).items()]
        texts += [str(span.status.description or "")]
        for event in span.events:
            texts.append(event.name)
            texts += [f"{k}={v!s}" for k, v in (event.attributes or {}).items()]
    for name, found in points.items():
        texts.append(name)
        texts += [f"{k}={v}" for attributes, _ in found for k, v in attributes.items()]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="concurrent traced requests")
    parser.add_argument("--calls", type=int, default=2000, help="requests of the fault run")
    parser.add_argument("--seed", type=int, default=7, help="the emulator's fault seed")
    args = parser.parse_args(argv)

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    captured = Captured()
    library_logger = logging.getLogger("cvekyc_async")
    library_logger.addHandler(captured)
    library_logger.setLevel(logging.DEBUG)

    module = load_app_module()
    # Fast retries, enough of them that no call runs out: every fault is retried once.
    policy = RetryPolicy(max_retries=8, backoff_base=0.01, backoff_cap=0.05, budget_capacity=None)
    with serve_emulator() as emulator:
        app = module.create_app(
            api_key=emulator.api_key,
            api_secret=emulator.api_secret,
            base_url=emulator.base_url,
            retry=policy,
            max_concurrency=32,
            total_timeout=60.0,
        )
        with serve(app) as app_url:
            traced(emulator, app_url, exporter, args)
            faulted(emulator, app_url, exporter, reader, captured, args)
    return 0


def traced(
    emulator: RunningEmulator, app_url: str, exporter: InMemorySpanExporter, args: Any
) -> None:
    print(f"== {args.requests} concurrent requests in one trace ==")
    emulator.set_faults(Faults(seed=args.seed, rate_503=0.1, retry_after="0"))
    tracer = trace.get_tracer("otel_demo")
    with tracer.start_as_current_span(f"driver: {args.requests} concurrent requests") as root:
        statuses = asyncio.run(post_all(app_url, args.requests, args.requests, traced=True))
    emulator.clear_faults()
    spans = list(exporter.get_finished_spans())
    trace_id = root.get_span_context().trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    kinds = Counter(f"{s.name} ({s.kind.name.lower()})" for s in in_trace)
    print(f"answers: {dict(sorted(statuses.items()))}")
    print(f"trace {trace_id:032x}: {len(in_trace)} spans of {len(spans)} recorded")
    for name, count in sorted(kinds.items()):
        print(f"  {count:4d} x {name}")
    calls = [s for s in in_trace if s.name.startswith("cvekyc.")]
    retried = [s for s in calls if (s.attributes or {}).get("cvekyc.attempts") != 1]
    # The request the call was made for: its ancestor just under the driver's span.
    by_id = {s.context.span_id: s for s in in_trace}
    request = (retried or calls)[0]
    while request.parent is not None and request.parent.span_id != root.get_span_context().span_id:
        request = by_id[request.parent.span_id]
    print("one request, whose call was retried:" if retried else "one request:")
    for line in tree(spans, request):
        print("  " + line)
    exporter.clear()


def faulted(
    emulator: RunningEmulator,
    app_url: str,
    exporter: InMemorySpanExporter,
    reader: InMemoryMetricReader,
    captured: Captured,
    args: Any,
) -> None:
    print(f"\n== fault run: {args.calls} requests ==")
    reader.get_metrics_data()  # what came before is not counted below
    before = metric_points(reader)
    captured.lines.clear()
    emulator.reset()
    emulator.set_faults(
        Faults(
            seed=args.seed,
            rate_429=0.02,
            rate_500=0.02,
            rate_502=0.02,
            rate_503=0.03,
            rate_504=0.02,
            rate_drop=0.02,
            retry_after="0",
        )
    )
    started = time.perf_counter()
    statuses = asyncio.run(post_all(app_url, args.calls, 64, traced=False))
    took = time.perf_counter() - started
    stats = emulator.stats()
    emulator.clear_faults()
    points = metric_points(reader)

    def total(name: str, by: str | None = None) -> Counter[str]:
        counts: Counter[str] = Counter()
        for source, sign in ((points, 1), (before, -1)):
            for attributes, value in source.get(name, []):
                amount = value[0] if isinstance(value, tuple) else value
                counts[str(attributes.get(by, "")) if by else ""] += sign * amount
        return counts

    retries = total("cvekyc.client.retries", "cvekyc.retry.reason")
    injected = Counter({REASONS[k]: v for k, v in stats["faults"].items()})
    print(f"answers: {dict(sorted(statuses.items()))} in {took:.1f} s")
    print(f"emulator: {stats['requests']} requests, {stats['billed']} billed")
    print(f"{'reason':18} {'injected':>9} {'retries':>8}")
    for reason in sorted(set(injected) | set(retries)):
        print(f"{reason:18} {injected[reason]:9d} {retries[reason]:8d}")
    same = +injected == +retries
    print(f"{'total':18} {sum(injected.values()):9d} {sum(retries.values()):8d}  equal: {same}")
    calls = total("cvekyc.client.call.duration")[""]
    attempts = total("http.client.request.duration")[""]
    billed = total("cvekyc.client.billed")[""]
    print(f"calls {calls}, attempts {attempts}, billed {billed}")
    spans = list(exporter.get_finished_spans())
    texts = texts_of(spans, points, captured.lines)
    watched = specimen_personal_data()
    hits = [value for text in texts for value in watched if value in text]
    print(
        f"searched {len(spans)} spans, {sum(len(v) for v in points.values())} metric points "
        f"and {len(captured.lines)} log lines ({len(texts)} texts) for {len(watched)} names "
        f"and numbers: {len(hits)} hits"
    )
    if hits or not same or statuses.get(200, 0) == 0:
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
