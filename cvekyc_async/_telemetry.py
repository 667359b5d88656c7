"""OpenTelemetry: a span per call, a child span per attempt, and the client's metrics.

Only ``opentelemetry-api`` is needed (``pip install 'cvekyc-async[otel]'``), and nothing is
recorded until the application installs an SDK (a tracer or meter provider): without one, a
call costs one check here. Recorded in the attempt loop, so every transport looks the same.

Spans:

- ``cvekyc.<operation>`` (internal; ``cvekyc.extract_card`` ...) for each call, with the
  client's attributes: ``cvekyc.operation``, ``cvekyc.endpoint``, ``cvekyc.input_style``,
  ``cvekyc.request_id``, ``cvekyc.attempts``, ``cvekyc.billed``, ``error.type``; an event
  ``retry`` (``cvekyc.retry.reason``, ``cvekyc.retry.delay``) before each retry's wait.
- ``<METHOD> <path>`` (client) for each attempt, as HTTP client spans are described by the
  semantic conventions: ``http.request.method``, ``server.address``, ``server.port``,
  ``url.full`` (without its query), ``url.template``, ``http.request.resend_count``,
  ``http.response.status_code``, ``network.protocol.version``, ``error.type``, and
  ``cvekyc.retry.reason`` on an attempt that is retried. Its context goes out as
  ``traceparent``.

Metrics (``cvekyc_async`` meter): ``cvekyc.client.call.duration`` (histogram, s),
``http.client.request.duration`` (histogram, s, per attempt), ``cvekyc.client.calls.active``
(calls in flight), ``cvekyc.client.queue.wait`` (histogram, s: the wait for a concurrency slot),
``cvekyc.client.retries`` (by ``cvekyc.retry.reason``), ``cvekyc.client.billed`` (answers the
service bills).

No attribute ever holds a card field, an image byte, an image URL or the credentials: messages
are not recorded either, only error class names and the labels of ``failure_label``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import __version__
from ._errors import APIStatusError
from ._retry import failure_label

if TYPE_CHECKING:
    from ._models import ExtractionResult

__all__ = ["AttemptSpan", "CallTelemetry", "quiet_http_instrumentation", "telemetry_for"]

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace

    _AVAILABLE = True
except ImportError:  # pragma: no cover - the otel extra is installed in the tests
    _AVAILABLE = False

_SCOPE = "cvekyc_async"
# Bucket bounds of the duration histograms, in seconds: the service answers in about a second.
_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)


def _installed(provider: object) -> bool:
    """Whether a provider is an SDK's, not the API's stand-in (proxy or no-op)."""
    name = type(provider).__name__
    return not name.startswith(("_Proxy", "Proxy", "NoOp"))


class _Instruments:
    """The client's metric instruments, made once an SDK's meter provider is in place."""

    def __init__(self, provider: Any) -> None:
        meter = provider.get_meter(_SCOPE, __version__)
        self.provider = provider
        self.call_duration = meter.create_histogram(
            "cvekyc.client.call.duration",
            unit="s",
            description="Duration of client calls, all attempts and waits included.",
            explicit_bucket_boundaries_advisory=_BOUNDS,
        )
        self.attempt_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_BOUNDS,
        )
        self.active = meter.create_up_down_counter(
            "cvekyc.client.calls.active", unit="{call}", description="Calls in progress."
        )
        self.queue_wait = meter.create_histogram(
            "cvekyc.client.queue.wait",
            unit="s",
            description="Time attempts waited for a concurrency slot.",
            explicit_bucket_boundaries_advisory=_BOUNDS,
        )
        self.retries = meter.create_counter(
            "cvekyc.client.retries", unit="{retry}", description="Attempts retried, by reason."
        )
        self.billed = meter.create_counter(
            "cvekyc.client.billed",
            unit="{answer}",
            description="Answers the service bills (errorCode 0).",
        )


_instruments: _Instruments | None = None


def _meter() -> _Instruments | None:
    global _instruments
    provider = _metrics.get_meter_provider()
    if not _installed(provider):
        return None
    if _instruments is None or _instruments.provider is not provider:
        _instruments = _Instruments(provider)
    return _instruments


_tracers: tuple[Any, Any] | None = None  # (provider, its tracer)


def _tracer() -> Any:
    global _tracers
    provider = _trace.get_tracer_provider()
    if not _installed(provider):
        return None
    if _tracers is None or _tracers[0] is not provider:
        _tracers = (provider, provider.get_tracer(_SCOPE, __version__))
    return _tracers[1]


class AttemptSpan:
    """One attempt's span and start, between ``CallTelemetry.attempt`` and ``attempt_ended``."""

    __slots__ = ("ended", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        #: How it ended (status, error, seconds, HTTP version), until its span is ended.
        self.ended: tuple[int | None, BaseException | None, float, str | None] | None = None


class CallTelemetry:
    """The span and measures of one call; made only while an SDK is installed."""

    __slots__ = ("_call", "_context", "_http", "_meter", "_operation", "_tracer", "url")

    def __init__(
        self,
        tracer: Any,
        meter: _Instruments | None,
        *,
        operation: str,
        path: str,
        url: str,
        host: str,
        port: int,
        request_id: str,
    ) -> None:
        self._tracer = tracer
        self._meter = meter
        self._operation = {"cvekyc.operation": operation, "server.address": host}
        self.url = url
        self._http: dict[str, Any] = {"server.address": host, "server.port": port}
        self._call: Any = None
        self._context: Any = None
        if tracer is not None:
            self._call = tracer.start_span(
                f"cvekyc.{operation}",
                kind=_trace.SpanKind.INTERNAL,
                attributes={
                    "cvekyc.operation": operation,
                    "cvekyc.endpoint": path,
                    "cvekyc.request_id": request_id,
                    "server.address": host,
                    "server.port": port,
                },
            )
            self._context = _trace.set_span_in_context(self._call)
        if meter is not None:
            meter.active.add(1, self._operation)

    def input_style(self, style: str) -> None:
        if self._call is not None:
            self._call.set_attribute("cvekyc.input_style", style)

    def queue_waited(self, seconds: float) -> None:
        if self._meter is not None:
            self._meter.queue_wait.record(seconds, self._operation)

    def attempt(
        self, method: str, attempt: int, path: str, headers: list[tuple[str, str]]
    ) -> AttemptSpan:
        """Start an attempt's span; its trace context is added to ``headers``."""
        self._http["http.request.method"] = method
        span = None
        if self._tracer is not None:
            attributes = dict(self._http)
            attributes["url.full"] = self.url
            attributes["url.template"] = path
            if attempt > 1:
                attributes["http.request.resend_count"] = attempt - 1
            span = self._tracer.start_span(
                f"{method} {path}",
                context=self._context,
                kind=_trace.SpanKind.CLIENT,
                attributes=attributes,
            )
            carrier: dict[str, str] = {}
            _propagate.inject(carrier, context=_trace.set_span_in_context(span))
            headers.extend(carrier.items())
        return AttemptSpan(span)

    def attempt_ended(
        self,
        handle: AttemptSpan,
        *,
        status: int | None,
        error: BaseException | None,
        elapsed: float,
        http_version: str | None,
        retry_reason: str | None = None,
    ) -> None:
        labels = dict(self._http)
        if status is not None:
            labels["http.response.status_code"] = status
        if error is not None:
            labels["error.type"] = _error_type(error)
        span = handle.span
        if span is not None:
            span.set_attributes(labels)
            if http_version:
                span.set_attribute("network.protocol.version", http_version.split("/")[-1])
            if retry_reason is not None:
                span.set_attribute("cvekyc.retry.reason", retry_reason)
            if error is not None:
                span.set_status(_trace.StatusCode.ERROR, type(error).__name__)
            span.end()
        if self._meter is not None:
            self._meter.attempt_duration.record(elapsed, labels)

    def retried(self, reason: str, delay: float) -> None:
        if self._call is not None:
            self._call.add_event(
                "retry", {"cvekyc.retry.reason": reason, "cvekyc.retry.delay": delay}
            )
        if self._meter is not None:
            self._meter.retries.add(1, {**self._operation, "cvekyc.retry.reason": reason})

    def ended(
        self,
        *,
        result: ExtractionResult | None,
        error: BaseException | None,
        attempts: int,
        elapsed: float,
    ) -> None:
        labels = dict(self._operation)
        if error is not None:
            labels["error.type"] = _error_type(error)
        call = self._call
        if call is not None:
            call.set_attribute("cvekyc.attempts", attempts)
            call.set_attribute("cvekyc.billed", bool(result is not None and result.billed))
            if error is not None:
                call.set_attribute("error.type", labels["error.type"])
                call.set_status(_trace.StatusCode.ERROR, type(error).__name__)
            call.end()
        meter = self._meter
        if meter is not None:
            meter.active.add(-1, self._operation)
            meter.call_duration.record(elapsed, labels)
            if result is not None and result.billed:
                meter.billed.add(1, self._operation)


_quiet: Callable[[], AbstractContextManager[None]] | None = None


def quiet_http_instrumentation() -> AbstractContextManager[None]:
    """OpenTelemetry's "suppress HTTP instrumentation" for what runs inside (from the
    ``opentelemetry-instrumentation`` package, present wherever an HTTP client is instrumented;
    without it there is nothing to hold off)."""
    global _quiet
    if _quiet is None:
        try:
            utils = importlib.import_module("opentelemetry.instrumentation.utils")
            _quiet = utils.suppress_http_instrumentation
        except (ImportError, AttributeError):
            _quiet = contextlib.nullcontext
    return _quiet()


def _error_type(error: BaseException) -> str:
    # As the HTTP conventions ask: the status code for an HTTP error, else the error's class.
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    if hasattr(error, "error_code"):
        return type(error).__name__
    label = failure_label(error)
    return label if label.endswith(("_timeout", "_error", "_lost")) else type(error).__name__


def telemetry_for(
    *,
    operation: str,
    path: str,
    url: str,
    host: str,
    port: int,
    request_id: str,
) -> CallTelemetry | None:
    """The telemetry of a call about to start, or ``None`` while no SDK is installed."""
    if not _AVAILABLE:
        return None
    tracer = _tracer()
    meter = _meter()
    if tracer is None and meter is None:
        return None
    return CallTelemetry(
        tracer,
        meter,
        operation=operation,
        path=path,
        url=url,
        host=host,
        port=port,
        request_id=request_id,
    )
