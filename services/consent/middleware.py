"""ASGI middleware of the consent API: counting refused requests by reason."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from henvis.services.consent.metrics import REJECTED
from henvis.services.consent.refusals import REASON_BY_STATUS, RejectReason


class CountRejections:
    """Counts refused POSTs by reason (the handler's ``request.state.reject_reason``, else the
    status). A plain ASGI middleware: ``@app.middleware("http")`` costs a task and a memory
    stream per request (bench/README.md, profiling)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # request.state below us writes here

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                reason = _noted_reason(state) or REASON_BY_STATUS.get(message["status"])
                if reason is not None:
                    REJECTED.labels(reason.value).inc()
            await send(message)

        await self.app(scope, receive, send_counting)


def _noted_reason(state) -> RejectReason | None:
    """The reason a handler noted on ``request.state``, if any."""
    return state.get("reject_reason") if isinstance(state, dict) else getattr(state, "reject_reason", None)
