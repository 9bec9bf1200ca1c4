"""Logs, metrics and traces, the same for every service.

- Logs: one JSON object per line on stdout, each carrying request_id and trace_id.
- Metrics: Prometheus counters and histograms per route (RED: rate, errors, duration).
- Traces: OpenTelemetry spans with W3C trace context. Spans are always created, so every
  log line has a trace id; they are exported only when an exporter is configured.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_propagator = TraceContextTextMapPropagator()

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, version: str) -> None:
        super().__init__()
        self.service, self.version = service, version

    def format(self, record: logging.LogRecord) -> str:
        span_context = trace.get_current_span().get_span_context()
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "version": self.version,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
            "trace_id": format(span_context.trace_id, "032x") if span_context.is_valid else "-",
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, version: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, version))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def make_tracer(service: str, exporter: str, endpoint: str) -> trace.Tracer:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif exporter != "none":
        raise SystemExit(f"SHOP_OTEL_EXPORTER={exporter!r} is not one of none, console, otlp")
    return provider.get_tracer("shop")


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests served", ["service", "method", "route", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.orders = Counter("shop_orders", "Orders by outcome", ["service", "outcome"], registry=self.registry)
        self.service = service


_REQUEST_ID = re.compile(r"[!-~]{1,64}")  # visible ASCII: it is logged and sent on to other services


def usable_request_id(value: str | None) -> str | None:
    """A caller's X-Request-ID if it is safe to log and to send on, else None (a new id is
    made): a non-ASCII one cannot go into the next request's headers."""
    return value if value and _REQUEST_ID.fullmatch(value) else None


def outbound_headers() -> dict:
    """Headers that carry the request id and the trace context to the next service."""
    headers = {"X-Request-ID": request_id_var.get()}
    _propagator.inject(headers)
    return headers


def instrument(app, service: str, version: str, tracer: trace.Tracer, metrics: Metrics, instance: str) -> None:
    """Add the per-request middleware: ids, span, metrics, one access log line."""
    access_log = logging.getLogger("shop.access")

    @app.middleware("http")
    async def observe(request, call_next):
        request_id = usable_request_id(request.headers.get("x-request-id")) or uuid.uuid4().hex[:16]
        id_token = request_id_var.set(request_id)
        ctx_token = otel_context.attach(_propagator.extract(dict(request.headers)))
        started = time.perf_counter()
        status = 500
        try:
            with tracer.start_as_current_span(
                f"{request.method} {request.url.path}", kind=trace.SpanKind.SERVER
            ) as span:
                try:
                    response = await call_next(request)
                    status = response.status_code
                finally:
                    # Inside the span, so the access line carries this request's trace id.
                    elapsed = time.perf_counter() - started
                    # A route template, never the raw path, keeps label cardinality low.
                    route = getattr(request.state, "route_label", None) or getattr(
                        request.scope.get("route"), "path", "unmatched")
                    metrics.requests.labels(service, request.method, route, str(status)).inc()
                    metrics.duration.labels(service, request.method, route).observe(elapsed)
                    span.set_attribute("http.response.status_code", status)
                    if not route.startswith(("/health", "/metrics")):
                        access_log.info(
                            "request",
                            extra={"method": request.method, "path": request.url.path, "status": status,
                                   "duration_ms": round(elapsed * 1000, 2)},
                        )
                response.headers["X-Request-ID"] = request_id
                response.headers["X-Trace-ID"] = format(span.get_span_context().trace_id, "032x")
                response.headers["X-Served-By"] = f"{service}/{version}"
                response.headers["X-Instance"] = instance
                return response
        finally:
            otel_context.detach(ctx_token)
            request_id_var.reset(id_token)
