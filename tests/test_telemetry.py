"""OpenTelemetry: a span per call with a child span per attempt, the client's metrics, the
trace context sent as ``traceparent``, and no personal data or secret in any of them.

OpenTelemetry's global providers can be set once per process: each test here installs fresh
SDK providers the way opentelemetry's own tests do (resetting the set-once guards), and puts
back whatever was installed before, so other test files in the same worker see no change."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import respx
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from cvekyc_async import (
    AsyncCVClient,
    BatchResult,
    CVClient,
    CVError,
    HookEvent,
    InternalServerError,
    RetryPolicy,
)
from cvekyc_async.emulator import EmulatorSettings, Faults, RunningEmulator, specimens
from cvekyc_async.testing import specimen_personal_data
from tests import samples
from tests._flavours import flavoured
from tests._raw import RawServer

pytestmark = pytest.mark.anyio

PATH = "/api/v2/ekyc/card"
CARD_SPECIMEN = "chip_front.jpg"
NO_WAIT = RetryPolicy(backoff_base=0.0, budget_capacity=None)
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


# -- installing an SDK -----------------------------------------------------------------------


@dataclass
class Otel:
    """The SDK installed for one test: finished spans, and the metrics read back."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of the client's metric ``name``."""
        found: list[Any] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                if scope.scope.name != "cvekyc_async":
                    continue
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric_names(self) -> set[str]:
        data = self.reader.get_metrics_data()
        return {
            metric.name
            for resource in (data.resource_metrics if data is not None else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


def _globals() -> tuple[Any, Any, Any, Any]:
    return (
        trace._TRACER_PROVIDER_SET_ONCE,
        trace._TRACER_PROVIDER,
        metrics_internal._METER_PROVIDER_SET_ONCE,
        metrics_internal._METER_PROVIDER,
    )


def _restore(saved: tuple[Any, Any, Any, Any]) -> None:
    (
        trace._TRACER_PROVIDER_SET_ONCE,
        trace._TRACER_PROVIDER,
        metrics_internal._METER_PROVIDER_SET_ONCE,
        metrics_internal._METER_PROVIDER,
    ) = saved


def _unset() -> None:
    """No provider installed: as in an application that never set one up."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


@pytest.fixture
def no_otel() -> Iterator[None]:
    saved = _globals()
    _unset()
    try:
        yield
    finally:
        _restore(saved)


def install(*, tracing: bool = True, metering: bool = True) -> tuple[Otel, Any, Any]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tracer_provider = meter_provider = None
    if tracing:
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
    if metering:
        meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        metrics.set_meter_provider(meter_provider)
    return Otel(exporter, reader), tracer_provider, meter_provider


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Fresh SDK tracer and meter providers, installed globally for the test."""
    saved = _globals()
    _unset()
    installed, tracer_provider, meter_provider = install()
    try:
        yield installed
    finally:
        installed.exporter.clear()
        tracer_provider.shutdown()
        meter_provider.shutdown()
        _restore(saved)


# -- helpers ---------------------------------------------------------------------------------


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


def ok() -> httpx.Response:
    return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))


def unavailable(retry_after: str = "0") -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": retry_after}, text="<html>busy</html>")


def hex_id(span: ReadableSpan) -> tuple[str, str]:
    """The span's trace id and span id as ``traceparent`` writes them."""
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def tree(spans: Sequence[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one call span and its attempt spans (in order), checking how they hang together."""
    [call] = [s for s in spans if s.kind is SpanKind.INTERNAL]
    children = sorted((s for s in spans if s is not call), key=lambda s: s.start_time or 0)
    assert call.context is not None
    for child in children:
        assert child.kind is SpanKind.CLIENT
        assert child.parent is not None
        assert child.parent.span_id == call.context.span_id
        assert child.context is not None
        assert child.context.trace_id == call.context.trace_id
        assert call.start_time is not None
        assert child.start_time is not None
        assert child.end_time is not None
        assert call.end_time is not None
        assert call.start_time <= child.start_time <= child.end_time <= call.end_time
    return call, children


def sent_context(request: httpx.Request) -> tuple[str, str]:
    [value] = request.headers.get_list("traceparent")
    found = TRACEPARENT.fullmatch(value)
    assert found is not None, value
    assert int(found[3], 16) & 1  # sampled
    return found[1], found[2]


def check_url_full(span: ReadableSpan, host: str, port: int, path: str = PATH) -> None:
    parts = urlsplit(str(span.attributes["url.full"]))  # type: ignore[index]
    assert (parts.hostname, parts.port or port, parts.path) == (host, port, path)
    assert (parts.query, parts.fragment, parts.username, parts.password) == ("", "", None, None)


# -- spans -----------------------------------------------------------------------------------


async def test_a_call_is_a_span_with_a_child_span_per_attempt(
    otel: Otel, mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(retry_after="2"), ok()])
    async with client(flavour) as c:
        res = await c.extract_card(samples.JPEG)
    assert sleeps == [2.0]
    call, (first, second) = tree(otel.spans())
    assert call.name == "cvekyc.extract_card"
    assert first.name == second.name == "POST /api/v2/ekyc/card"
    assert call.instrumentation_scope is not None
    assert call.instrumentation_scope.name == "cvekyc_async"
    assert call.parent is None  # no span of the application's was current
    assert dict(call.attributes or {}) == {
        "cvekyc.operation": "extract_card",
        "cvekyc.endpoint": PATH,
        "cvekyc.request_id": res.request_id,
        "cvekyc.input_style": "file",
        "cvekyc.attempts": 2,
        "cvekyc.billed": True,
        "server.address": "api.test",
        "server.port": 443,
    }
    assert call.status.status_code is StatusCode.UNSET
    assert [(e.name, dict(e.attributes or {})) for e in call.events] == [
        ("retry", {"cvekyc.retry.reason": "http_503", "cvekyc.retry.delay": 2.0})
    ]
    for span in (first, second):
        check_url_full(span, "api.test", 443)
    common = {
        "http.request.method": "POST",
        "server.address": "api.test",
        "server.port": 443,
        "url.template": PATH,
    }
    assert {k: v for k, v in (first.attributes or {}).items() if k != "url.full"} == {
        **common,
        "http.response.status_code": 503,
        "error.type": "503",
        "cvekyc.retry.reason": "http_503",
    }
    assert (first.status.status_code, first.status.description) == (
        StatusCode.ERROR,
        "InternalServerError",
    )
    assert {k: v for k, v in (second.attributes or {}).items() if k != "url.full"} == {
        **common,
        "http.request.resend_count": 1,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert second.status.status_code is StatusCode.UNSET
    # Each attempt sent its own span's context: same trace, the attempt span's id.
    assert [sent_context(call.request) for call in route.calls] == [
        hex_id(first),
        hex_id(second),
    ]
    # And the call's id, which the call span carries.
    assert {call.request.headers["X-Request-ID"] for call in route.calls} == {res.request_id}


async def test_a_call_that_fails_after_retrying(
    otel: Otel, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    mock.post(PATH).mock(return_value=unavailable())
    async with client(retry=NO_WAIT) as c:
        with pytest.raises(InternalServerError) as info:
            await c.extract_card(samples.JPEG)
    call, attempts = tree(otel.spans())
    assert len(attempts) == 3
    assert (call.status.status_code, call.status.description) == (
        StatusCode.ERROR,
        "InternalServerError",
    )
    attrs = call.attributes or {}
    assert (attrs["error.type"], attrs["cvekyc.attempts"], attrs["cvekyc.billed"]) == (
        "503",
        3,
        False,
    )
    assert attrs["cvekyc.request_id"] == info.value.request_id
    assert [e.name for e in call.events] == ["retry", "retry"]
    resends = [(a.attributes or {}).get("http.request.resend_count") for a in attempts]
    assert resends == [None, 1, 2]
    # The last attempt was not retried: it has no retry reason.
    reasons = [(a.attributes or {}).get("cvekyc.retry.reason") for a in attempts]
    assert reasons == ["http_503", "http_503", None]
    for a in attempts:
        assert a.status.status_code is StatusCode.ERROR
        assert (a.attributes or {})["error.type"] == "503"


@pytest.mark.parametrize(
    ("answer", "error_type", "status"),
    [
        (httpx.Response(500, json={"detail": "Internal Server Error"}), "500", 500),
        (httpx.Response(404, json={"detail": "Not Found"}), "404", 404),
        (
            httpx.Response(200, content=samples.answer(None, "3", "Incorrect image format")),
            "InvalidImageError",
            200,
        ),
        (httpx.Response(200, content=b"<html>"), "MalformedResponseError", 200),
        (
            httpx.Response(200, content=samples.answer(None, "4", "quota")),
            "QuotaExceededError",
            200,
        ),
        # Failures without an answer are named by their kind (as the retry reasons are).
        (httpx.ConnectError("refused"), "connect_error", None),
        (httpx.ReadTimeout("slow"), "read_timeout", None),
        (httpx.RemoteProtocolError("closed"), "connection_lost", None),
    ],
)
async def test_a_failed_call_says_what_failed(
    otel: Otel,
    mock: respx.MockRouter,
    sleeps: list[float],
    answer: Any,
    error_type: str,
    status: int | None,
) -> None:
    mock.post(PATH).mock(side_effect=[answer])
    async with client(max_retries=0) as c:
        with pytest.raises(CVError) as info:
            await c.extract_card(samples.JPEG)
    call, [attempt] = tree(otel.spans())
    for span in (call, attempt):
        assert (span.attributes or {})["error.type"] == error_type
        assert (span.status.status_code, span.status.description) == (
            StatusCode.ERROR,
            type(info.value).__name__,
        )
    assert (attempt.attributes or {}).get("http.response.status_code") == status
    assert (call.attributes or {})["cvekyc.billed"] is False


@pytest.mark.parametrize(
    ("kind", "first"),
    [
        ("request", 503),
        ("response", 503),
        ("response", 200),
        ("retry", 503),
    ],
)
async def test_a_hook_that_raises_ends_every_span_with_its_error(
    otel: Otel, mock: respx.MockRouter, sleeps: list[float], kind: str, first: int
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable() if first == 503 else ok(), ok()])

    def hook(event: HookEvent) -> None:
        raise KeyError("refused")

    async with client(event_hooks={kind: [hook]}, retry=NO_WAIT) as c:
        with pytest.raises(KeyError):
            await c.extract_card(samples.JPEG)
        assert c.in_flight == 0
    assert route.call_count == (0 if kind == "request" else 1)
    call, attempts = tree(otel.spans())
    assert (call.status.status_code, (call.attributes or {})["error.type"]) == (
        StatusCode.ERROR,
        "KeyError",
    )
    [attempt] = attempts
    # The attempt itself ended as it did: refused by the hook before it went out, or answered.
    if kind == "request":
        assert attempt.status.status_code is StatusCode.ERROR
        assert (attempt.attributes or {})["error.type"] == "KeyError"
    else:
        assert (attempt.attributes or {})["http.response.status_code"] == first
    assert otel.points("cvekyc.client.calls.active")[0].value == 0
    assert sum(p.count for p in otel.points("http.client.request.duration")) == 1
    # An answer received before the hook raised was billed, and the telemetry says so.
    billed = kind == "response" and first == 200
    assert (call.attributes or {})["cvekyc.billed"] is billed
    assert sum(p.value for p in otel.points("cvekyc.client.billed")) == int(billed)


async def test_spans_of_an_image_by_url_hold_no_query(
    otel: Otel, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    token = "sig-0c1d2e3f4a5b"
    route = mock.get(PATH).mock(side_effect=[unavailable(), ok()])
    async with client(retry=NO_WAIT) as c:
        res = await c.extract_card(f"https://bucket.example/front.jpg?token={token}")
    assert all(token in str(call.request.url) for call in route.calls)
    call, attempts = tree(otel.spans())
    assert [a.name for a in attempts] == ["GET /api/v2/ekyc/card"] * 2
    assert (call.attributes or {})["cvekyc.input_style"] == "url"
    assert (call.attributes or {})["cvekyc.request_id"] == res.request_id
    for span in attempts:
        check_url_full(span, "api.test", 443)
        assert (span.attributes or {})["http.request.method"] == "GET"
    shown = repr([(s.name, dict(s.attributes or {}), s.events) for s in otel.spans()])
    assert token not in shown
    assert "bucket.example" not in shown
    assert [sent_context(c.request) for c in route.calls] == [hex_id(a) for a in attempts]


@pytest.mark.parametrize(
    ("method", "path", "images"),
    [("extract_cards", "/api/v2/ekyc/cards", 2), ("ocr_card", "/api/v2/ocr/card", 1)],
)
async def test_each_operation_names_its_spans(
    otel: Otel, mock: respx.MockRouter, method: str, path: str, images: int
) -> None:
    mock.post(path).mock(return_value=ok())
    async with client() as c:
        await getattr(c, method)(*[samples.JPEG] * images)
    call, [attempt] = tree(otel.spans())
    assert call.name == f"cvekyc.{method}"
    assert (call.attributes or {})["cvekyc.endpoint"] == path
    assert attempt.name == f"POST {path}"
    assert (attempt.attributes or {})["url.template"] == path


async def test_the_call_span_is_a_child_of_the_applications_span(
    otel: Otel, mock: respx.MockRouter, flavour: str
) -> None:
    mock.post(PATH).mock(return_value=ok())
    tracer = trace.get_tracer("the-application")
    async with client(flavour) as c:
        with tracer.start_as_current_span("handle upload") as outer:
            # (CVClient is called from a worker thread here, the span current in it.)
            await c.extract_card(samples.JPEG)
    spans = otel.spans()
    [app] = [s for s in spans if s.name == "handle upload"]
    call, _ = tree([s for s in spans if s is not app])
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id
    assert call.context is not None
    assert call.context.trace_id == outer.get_span_context().trace_id


async def test_url_full_is_the_url_requested_under_a_base_url_with_a_path(otel: Otel) -> None:
    base = "https://api.test/gateway"
    events: list[HookEvent] = []
    with respx.mock() as router:
        route = router.post(base + PATH).mock(return_value=ok())
        async with AsyncCVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=base,
            event_hooks={"request": [events.append]},
        ) as c:
            await c.extract_card(samples.JPEG)
    sent = route.calls[0].request.url
    assert [e.url for e in events] == [base + PATH]  # the hooks have it right
    _, [attempt] = tree(otel.spans())
    full = urlsplit(str((attempt.attributes or {})["url.full"]))
    assert (full.hostname, full.path, full.query) == (sent.host, sent.path, "")


# -- the trace context and the call's id on the wire, on every transport ---------------------


@pytest.fixture(params=["sharded", "pool", "aiohttp"])
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")
    return str(request.param)


class Recording:
    """A server's handler: keeps each request's head; answers 503 first, then a card."""

    def __init__(self) -> None:
        self.heads: list[dict[str, list[str]]] = []

    async def __call__(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        headers: dict[str, list[str]] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        self.heads.append(headers)
        if len(self.heads) == 1:
            body = b"<html>busy</html>"
            status = b"503 Service Unavailable\r\nRetry-After: 0"
        else:
            body = samples.answer(samples.CHIP_FRONT)
            status = b"200 OK\r\nContent-Type: application/json"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


async def test_each_attempt_sends_its_span_context_and_the_call_id_on_every_transport(
    otel: Otel, transport: str
) -> None:
    recording = Recording()
    with RawServer(recording) as server:
        async with AsyncCVClient(
            "k",
            "s",
            base_url=f"http://127.0.0.1:{server.port}",
            transport=transport,  # type: ignore[arg-type]
            retry=NO_WAIT,
            trust_env=False,
        ) as c:
            res = await c.extract_card(samples.JPEG)
    call, attempts = tree(otel.spans())
    assert len(recording.heads) == len(attempts) == 2
    for head, attempt in zip(recording.heads, attempts, strict=True):
        assert head["x-request-id"] == [res.request_id]
        [value] = head["traceparent"]
        found = TRACEPARENT.fullmatch(value)
        assert found is not None
        assert (found[1], found[2]) == hex_id(attempt)
    assert (call.attributes or {})["cvekyc.request_id"] == res.request_id


@pytest.fixture
def httpx_instrumented(otel: Otel) -> Iterator[None]:
    """httpx instrumented globally, as an application does (with the test's SDK)."""
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()


SIGNED = "Sig-httpx-5e0b7d19c3"


@pytest.mark.parametrize("pool", ["pool", "sharded", "http_client"])
async def test_an_applications_httpx_instrumentation_adds_no_span_under_the_clients_call(
    otel: Otel, httpx_instrumented: None, pool: str
) -> None:
    # Its span would record the URL with its query (the image URL and its token) and send
    # its own traceparent in place of the attempt span's.
    recording = Recording()
    image_url = f"https://bucket.example/kyc/front.jpg?X-Amz-Signature={SIGNED}&X-Amz-Expires=60"
    with RawServer(recording) as server:
        base_url = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(trust_env=False) as http:
            options: dict[str, Any] = (
                {"http_client": http} if pool == "http_client" else {"transport": pool}
            )
            async with AsyncCVClient(
                "k", "s", base_url=base_url, retry=NO_WAIT, trust_env=False, **options
            ) as c:
                res = await c.extract_card(image_url)
            ours = otel.spans()
            # The application's own requests are still traced: the instrumentation is on.
            await http.get(base_url + "/health")
    # Only the client's own spans: its call, and a span per attempt under it.
    assert [s.instrumentation_scope.name for s in ours if s.instrumentation_scope] == [
        "cvekyc_async"
    ] * len(ours)
    call, attempts = tree(ours)
    assert [a.name for a in attempts] == ["GET /api/v2/ekyc/card"] * 2
    assert (call.attributes or {})["cvekyc.request_id"] == res.request_id
    # Each attempt went out with its own span's context, not an httpx span's.
    assert len(recording.heads) == 3
    for head, attempt in zip(recording.heads[:2], attempts, strict=True):
        [value] = head["traceparent"]
        found = TRACEPARENT.fullmatch(value)
        assert found is not None
        assert (found[1], found[2]) == hex_id(attempt)
    [app] = [s for s in otel.spans() if s not in ours]
    assert app.instrumentation_scope is not None
    assert app.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"
    assert app.parent is None  # not under the client's call, which had ended
    # No span, nor any metric, holds the image URL's token.
    assert [text for text in telemetry_texts(otel) if SIGNED in text] == []
    assert SIGNED not in repr([(s.name, dict(s.attributes or {})) for s in otel.spans()])


@pytest.mark.parametrize(
    ("own", "expected"),
    [({"Request-Id": "svc-own-42"}, "svc-own-42"), ({}, None)],
    ids=["and its own", "echoed only"],
)
async def test_a_gateways_echo_of_the_calls_id_is_not_the_services_request_id(
    mock: respx.MockRouter, flavour: str, own: dict[str, str], expected: str | None
) -> None:
    # A gateway echoes the X-Request-ID it was sent; the service names its request in
    # Request-Id. The echo is the client's own id back, not the service's.
    def echoing(status: int) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            headers = {"X-Request-ID": request.headers["X-Request-ID"], **own}
            content = samples.answer(samples.CHIP_FRONT) if status == 200 else b""
            return httpx.Response(status, content=content, headers=headers)

        return answer

    route = mock.post(PATH).mock(side_effect=echoing(200))
    async with client(flavour, max_retries=0) as c:
        res = await c.extract_card(samples.JPEG)
        raw = await c.with_raw_response.extract_card(samples.JPEG)
        route.mock(side_effect=echoing(500))
        with pytest.raises(InternalServerError) as info:
            await c.extract_card(samples.JPEG)
    sent = [call.request.headers["X-Request-ID"] for call in route.calls]
    assert sent == [res.request_id, raw.request_id, info.value.request_id]
    assert [call.response.headers["X-Request-ID"] for call in route.calls] == sent
    assert res.service_request_id == expected
    assert raw.service_request_id == expected
    assert raw.parse().service_request_id == expected
    assert info.value.service_request_id == expected
    assert res.to_dict()["service_request_id"] == expected


def span_shape(spans: Sequence[ReadableSpan], base_port: int) -> list[tuple[Any, ...]]:
    """The spans as compared across transports: ids, times and ports left out."""
    shaped = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        attrs = {
            k: v
            for k, v in (span.attributes or {}).items()
            if k not in ("cvekyc.request_id", "url.full", "server.port")
        }
        if span.kind is SpanKind.CLIENT:
            check_url_full(span, "127.0.0.1", base_port)
        shaped.append(
            (
                span.name,
                span.kind,
                span.status.status_code,
                span.status.description,
                sorted(attrs.items()),
                [(e.name, sorted((e.attributes or {}).items())) for e in span.events],
            )
        )
    return shaped


def attempt_shape(status: int, *extra: tuple[str, Any]) -> tuple[Any, ...]:
    attrs = [
        ("http.request.method", "POST"),
        ("server.address", "127.0.0.1"),
        ("url.template", PATH),
        ("http.response.status_code", status),
        *extra,
    ]
    name = "POST " + PATH
    if status == 503:
        attrs.append(("error.type", "503"))
        return (name, SpanKind.CLIENT, StatusCode.ERROR, "InternalServerError", sorted(attrs), [])
    return (name, SpanKind.CLIENT, StatusCode.UNSET, None, sorted(attrs), [])


def call_shape(billed: bool, attempts: int, *extra: tuple[str, Any]) -> tuple[Any, ...]:
    attrs = [
        ("cvekyc.attempts", attempts),
        ("cvekyc.billed", billed),
        ("cvekyc.endpoint", PATH),
        ("cvekyc.input_style", "file"),
        ("cvekyc.operation", "extract_card"),
        ("server.address", "127.0.0.1"),
        *extra,
    ]
    if billed:
        return ("cvekyc.extract_card", SpanKind.INTERNAL, StatusCode.UNSET, None, sorted(attrs), [])
    retry = [("cvekyc.retry.delay", 0.0), ("cvekyc.retry.reason", "http_503")]
    return (
        "cvekyc.extract_card",
        SpanKind.INTERNAL,
        StatusCode.ERROR,
        "InternalServerError",
        sorted([*attrs, ("error.type", "503")]),
        [("retry", retry)],
    )


EXPECTED_SHAPES = [
    # a call meeting 503 twice (max_retries=1): the call span starts first
    call_shape(False, 2),
    attempt_shape(503, ("cvekyc.retry.reason", "http_503")),
    attempt_shape(503, ("http.request.resend_count", 1)),
    # then one answered
    call_shape(True, 1),
    attempt_shape(200, ("network.protocol.version", "1.1")),
]


async def test_spans_and_hooks_are_the_same_on_every_transport(
    otel: Otel, cv_emulator: RunningEmulator, transport: str
) -> None:
    events: list[HookEvent] = []
    hooks: dict[str, Any] = {k: [events.append] for k in ("request", "response", "retry")}
    port = urlsplit(cv_emulator.base_url).port
    assert port is not None
    cv_emulator.set_faults(rate_503=1.0, retry_after="0")
    async with cv_emulator.client(
        transport=transport,
        event_hooks=hooks,
        retry=RetryPolicy(max_retries=1, backoff_base=0.0),
    ) as c:
        with pytest.raises(InternalServerError) as info:
            await c.extract_card(samples.JPEG)
        failed = otel.spans()
        otel.exporter.clear()
        cv_emulator.clear_faults()
        res = await c.extract_card(samples.JPEG)
        answered = otel.spans()
    assert span_shape(failed, port) + span_shape(answered, port) == EXPECTED_SHAPES
    for spans, request_id in ((failed, info.value.request_id), (answered, res.request_id)):
        call, _ = tree(spans)
        assert (call.attributes or {})["cvekyc.request_id"] == request_id
    assert [(e.kind, e.attempt, e.status_code, e.reason) for e in events] == [
        ("request", 1, None, None),
        ("response", 1, 503, None),
        ("retry", 1, 503, "http_503"),
        ("request", 2, None, None),
        ("response", 2, 503, None),
        ("request", 1, None, None),
        ("response", 1, 200, None),
    ]
    assert [e.request_id for e in events] == [info.value.request_id] * 5 + [res.request_id] * 2


# -- without an SDK --------------------------------------------------------------------------


async def test_without_an_sdk_nothing_is_recorded_and_no_traceparent_is_sent(
    no_otel: None, mock: respx.MockRouter, sleeps: list[float], flavour: str
) -> None:
    route = mock.post(PATH).mock(side_effect=[unavailable(), ok()])
    events: list[HookEvent] = []
    async with client(flavour, retry=NO_WAIT, event_hooks={"retry": [events.append]}) as c:
        res = await c.extract_card(samples.JPEG)
    assert res.attempts == 2
    assert [e.reason for e in events] == ["http_503"]
    for call in route.calls:
        assert "traceparent" not in call.request.headers
        assert call.request.headers["X-Request-ID"] == res.request_id
    # The API's stand-ins are in place, and stay empty.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


async def test_a_tracer_provider_alone_gives_spans(no_otel: None, mock: respx.MockRouter) -> None:
    installed, tracer_provider, _ = install(metering=False)
    try:
        route = mock.post(PATH).mock(return_value=ok())
        async with client() as c:
            await c.extract_card(samples.JPEG)
        _, [attempt] = tree(installed.spans())
        assert sent_context(route.calls[0].request) == hex_id(attempt)
        assert installed.metric_names() == set()
    finally:
        tracer_provider.shutdown()


async def test_a_meter_provider_alone_gives_metrics_and_sends_no_traceparent(
    no_otel: None, mock: respx.MockRouter
) -> None:
    installed, _, meter_provider = install(tracing=False)
    try:
        route = mock.post(PATH).mock(return_value=ok())
        async with client() as c:
            await c.extract_card(samples.JPEG)
        assert "traceparent" not in route.calls[0].request.headers
        assert [p.value for p in installed.points("cvekyc.client.billed")] == [1]
        assert [p.count for p in installed.points("cvekyc.client.call.duration")] == [1]
    finally:
        meter_provider.shutdown()


# -- metrics ---------------------------------------------------------------------------------

# The retry reason of each fault the emulator injects.
REASONS = {
    "429": "http_429",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "504": "http_504",
    "drop": "connection_lost",
}
ERROR_TYPES = {fault: reason.removeprefix("http_") for fault, reason in REASONS.items()}


def total(points: Sequence[Any]) -> int:
    return sum(int(p.value) for p in points)


async def test_metrics_of_a_fault_run_match_the_usage_and_the_faults_injected(
    otel: Otel, cv_emulator: RunningEmulator
) -> None:
    calls = 120
    cv_emulator.set_faults(
        Faults(
            seed=21,
            rate_429=0.05,
            rate_500=0.04,
            rate_502=0.03,
            rate_503=0.08,
            rate_504=0.03,
            rate_drop=0.04,
            retry_after="0",
        )
    )
    found = specimens()
    inputs = [found[n] for n in ("chip_front.jpg", "cmnd_front.jpg", "passport.jpg")] * (calls // 3)
    # Retries enough that every call ends answered: each fault injected is then one retry.
    policy = RetryPolicy(max_retries=12, backoff_base=0.0, budget_capacity=None)
    async with cv_emulator.client(retry=policy) as c:
        results = await c.extract_many(inputs, concurrency=8)
        usage = c.usage
    assert all(r.error is None for r in results)
    stats = cv_emulator.stats()
    faults = stats["faults"]
    assert set(faults) == set(REASONS)  # the seed injects every kind
    retries = otel.points("cvekyc.client.retries")
    assert total(retries) == usage.retries == stats["faults_total"]
    by_reason = {p.attributes["cvekyc.retry.reason"]: p.value for p in retries}
    assert by_reason == {REASONS[fault]: n for fault, n in faults.items()}
    for p in retries:
        assert p.attributes["cvekyc.operation"] == "extract_card"
        assert p.attributes["server.address"] == "127.0.0.1"
    # Every attempt, measured; the failed ones by their error.
    attempts = otel.points("http.client.request.duration")
    assert sum(p.count for p in attempts) == usage.requests == stats["requests"]
    failed = Counter[str]()
    for p in attempts:
        if "error.type" in p.attributes:
            failed[p.attributes["error.type"]] += p.count
    assert failed == {ERROR_TYPES[fault]: n for fault, n in faults.items()}
    # Every call, once; none left in progress; the billed answers, as the service counted.
    assert sum(p.count for p in otel.points("cvekyc.client.call.duration")) == calls
    assert [p.value for p in otel.points("cvekyc.client.calls.active")] == [0]
    assert total(otel.points("cvekyc.client.billed")) == usage.billed == calls
    # The service also billed the answers it dropped half-way, which the client never saw.
    assert stats["billed"] == calls + faults["drop"]
    assert sum(p.count for p in otel.points("cvekyc.client.queue.wait")) == usage.requests
    # One call span per call, one attempt span per request sent.
    spans = otel.spans()
    assert sum(s.kind is SpanKind.INTERNAL for s in spans) == calls
    assert sum(s.kind is SpanKind.CLIENT for s in spans) == stats["requests"]
    assert sum(len(s.events) for s in spans) == usage.retries


async def test_the_metrics_names_and_units(otel: Otel, mock: respx.MockRouter) -> None:
    mock.post(PATH).mock(return_value=ok())
    async with client() as c:
        await c.extract_card(samples.JPEG)
    data = otel.reader.get_metrics_data()
    assert data is not None
    units = {
        m.name: m.unit
        for r in data.resource_metrics
        for s in r.scope_metrics
        if s.scope.name == "cvekyc_async"
        for m in s.metrics
    }
    assert units == {
        "cvekyc.client.call.duration": "s",
        "http.client.request.duration": "s",
        "cvekyc.client.calls.active": "{call}",
        "cvekyc.client.queue.wait": "s",
        "cvekyc.client.billed": "{answer}",
    }  # no retry happened: that counter has no data point yet


# -- personal data ---------------------------------------------------------------------------

KEY = "otel-key-3b7e21"
SECRET = "otel-secret-c94f0a5d"
TOKEN = "urltok-9d2e6b41f0"


def personal_values() -> set[str]:
    """The names and ID numbers of every specimen's cards, as printed and folded."""
    values = specimen_personal_data()
    assert len(values) > 10
    return values


def telemetry_texts(otel: Otel) -> list[str]:
    """Every name, attribute, event and status of every span, and every metric's name and
    data point attributes, as text."""
    texts: list[str] = []
    for span in otel.spans():
        texts.append(span.name)
        texts.append(str(span.status.description))
        texts += [f"{k}={v!r}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts.append(event.name)
            texts += [f"{k}={v!r}" for k, v in (event.attributes or {}).items()]
        texts += [f"{k}={v!r}" for k, v in span.resource.attributes.items()]
    data = otel.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts += [metric.name, str(metric.description), str(metric.unit)]
                for point in metric.data.data_points:
                    texts += [f"{k}={v!r}" for k, v in (point.attributes or {}).items()]
    return texts


async def test_a_fault_run_puts_no_personal_data_or_secret_in_spans_metrics_logs_or_hooks(
    otel: Otel,
    cv_emulator: RunningEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cvekyc_async")
    cv_emulator.state.settings = EmulatorSettings(api_key=KEY, api_secret=SECRET)
    cv_emulator.set_faults(
        Faults(
            seed=13,
            rate_429=0.04,
            rate_500=0.04,
            rate_502=0.03,
            rate_503=0.05,
            rate_504=0.03,
            rate_drop=0.04,
            rate_malformed=0.03,
            retry_after="0",
        )
    )
    paths = list(specimens().values())
    images = [p for p in paths if p.suffix != ".pdf"]
    inputs: list[Any] = [paths[i % len(paths)] for i in range(240)]
    # Images given by URL, signed with a token, every fourth call on top.
    inputs += [
        cv_emulator.specimen_url(images[i % len(images)].name) + f"?token={TOKEN}&n={i}"
        for i in range(80)
    ]
    events: list[HookEvent] = []
    hooks: dict[str, Any] = {k: [events.append] for k in ("request", "response", "retry")}
    async with cv_emulator.client(event_hooks=hooks, retry=NO_WAIT) as c:
        results: list[BatchResult] = await c.extract_many(
            inputs, endpoint="ocr", concurrency=16, fatal_errors=()
        )
        usage = c.usage
    # The run did what it is meant to: answers with cards, retries, failures, URLs.
    assert sum(r.result is not None and len(r.result.cards) > 0 for r in results) > 240
    assert usage.retries > 50
    assert cv_emulator.stats()["faults_total"] > 80
    assert any(r.error is not None for r in results)
    spans = otel.spans()
    assert sum((s.attributes or {}).get("cvekyc.input_style") == "url" for s in spans) == 80
    texts = telemetry_texts(otel)
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(a) for r in caplog.records for a in (r.args or ())]
    texts += [repr(e) for e in events]
    assert any(r.name == "cvekyc_async" for r in caplog.records)
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    watched = personal_values() | {KEY, SECRET, basic, TOKEN}
    hits = [(value, text[:120]) for text in texts for value in watched if value in text]
    assert hits == []


def test_cvclient_spans_are_recorded_from_its_own_thread(
    otel: Otel, mock: respx.MockRouter
) -> None:
    route = mock.post(PATH).mock(return_value=ok())
    with CVClient(samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL) as c:
        res = c.extract_card(samples.JPEG)
    call, [attempt] = tree(otel.spans())
    assert (call.attributes or {})["cvekyc.request_id"] == res.request_id
    assert sent_context(route.calls[0].request) == hex_id(attempt)
