"""Prometheus metrics: one way to expose ``/metrics`` for HTTP services and workers.

Label values must never carry personal data: use centre slugs, municipality codes,
decision types and reason codes only.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest, start_http_server

#: Set to 1 by a worker once it consumes (the runtime contract's ``worker_ready``); defined
#: here once so several workers imported into one process do not register it twice.
WORKER_READY = Gauge("henvis_worker_ready", "1 once this worker consumes its topics")


def metrics_response_body() -> tuple[bytes, str]:
    """Body and content type for an HTTP ``/metrics`` endpoint."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Expose ``/metrics`` on its own port, for workers that have no HTTP API of their own."""
    if port:
        start_http_server(port, addr=host)


def mount_metrics(app) -> None:
    """Add ``GET /metrics`` to a FastAPI app."""
    from fastapi import Response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = metrics_response_body()
        return Response(content=body, media_type=content_type)
