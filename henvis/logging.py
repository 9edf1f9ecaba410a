"""The one logging setup: structlog JSON lines on stdout, personal data redacted.

Every service calls :func:`configure_logging` once at start.  Standard-library loggers
(uvicorn, aiokafka, kafka-python, alembic) are routed through the same processors,
so a third-party log line that happens to contain a phone number is scrubbed as well.

Redaction works on two levels:
* keys: any value stored under a personal-data key (``full_name``, ``phone``, ``cpr``,
  ``case_ref`` ...) is replaced, at any depth of the event dict;
* values: strings are scanned for the shapes of Danish phone numbers, CPR numbers and
  e-mail addresses, which are masked wherever they appear.

While the Kafka broker is unreachable, aiokafka and kafka-python log every
failed reconnect attempt, about a thousand near-identical lines a minute per worker.
:class:`RepeatThrottle` lets the first of a kind through and counts the identical repeats
that follow within a window; the next line of that kind after the window carries
``repeated=N``.  henvis's own loggers are never throttled.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from structlog.typing import EventDict

REDACTED = "[redacted]"

PERSONAL_KEYS = frozenset(
    {
        "person",
        "full_name",
        "name",
        "phone",
        "email",
        "postal_address",
        "address",
        "street",
        "cpr",
        "case_ref",
        "password",
        "token",
        "authorization",
        "cookie",
    }
)

_PATTERNS = [
    # e-mail addresses
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    # Danish phone numbers: optional +45/0045, then 8 digits grouped by spaces or not at all.
    # Dashes are not separators here so that dates and UUIDs stay readable in logs.
    re.compile(r"(?<![\w-])(?:(?:\+|00)45 ?)?(?:\d ?){7}\d(?![\w-])"),
    # CPR numbers, with or without the dash
    re.compile(r"(?<![\w-])\d{6}-?\d{4}(?![\w-])"),
]


def scrub_text(text: str) -> str:
    """Mask anything in free text that looks like a phone number, CPR number or e-mail."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any) -> Any:
    """Return ``value`` with personal data removed, recursing into mappings and sequences."""
    if isinstance(value, Mapping):
        return {key: (REDACTED if str(key).lower() in PERSONAL_KEYS else redact(item)) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _redact_processor(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    return redact(event_dict)


def _as_loggable(value: Any) -> Any:
    """A log-call argument as data the key-based redaction can see into."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (bytes, bytearray)):
        try:
            return json.loads(value)
        except ValueError:
            return f"<{len(value)} bytes>"
    return value


def _redact_stdlib_arguments(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Re-render a standard-library message from redacted arguments.

    A library that logs ``"failed to send %s", event`` would otherwise put the event's
    name and address into the message as plain text, where only the shape-based scrubbing
    could catch some of it.  Rendering from redacted arguments removes it by key.
    """
    record = event_dict.get("_record")
    args = event_dict.pop("positional_args", None)
    if record is None or not args:
        return event_dict
    args = args if isinstance(args, tuple) else (args,)
    try:
        event_dict["event"] = str(record.msg) % tuple(redact(_as_loggable(arg)) for arg in args)
    except (TypeError, ValueError):
        event_dict["event"] = f"{record.msg} [arguments withheld]"
    return event_dict


# Third-party loggers that repeat themselves while the broker is away (a name matches
# itself and its children: "kafka" covers "kafka.conn", not "kafka_foo").
THROTTLED_LOGGERS = ("aiokafka", "kafka")
REPEAT_WINDOW_SECONDS = 30.0


def _logger_matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


class RepeatThrottle(logging.Filter):
    """Drop identical repeats of noisy third-party log records, and say how many were dropped.

    Records are of one kind when logger name, level and message template (``record.msg``,
    not the formatted arguments) are equal, so "Unable connect to %s" for different hosts
    or errors is one kind.  The first record of a kind passes and opens a window of
    ``window`` seconds; repeats inside it are dropped and counted.  The first record of the
    kind after the window passes with ``record.repeated`` set to the count (when non-zero)
    and opens the next window.  Only loggers in ``loggers`` (and their children) are
    throttled; ``henvis`` and its children never are.
    """

    MAX_KINDS = 512

    def __init__(
        self,
        window: float = REPEAT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        loggers: tuple[str, ...] = THROTTLED_LOGGERS,
    ) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.loggers = tuple(loggers)
        self._lock = threading.Lock()
        # kind -> [start of its window, records suppressed since]
        self._kinds: dict[tuple[str, int, str], list[float | int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if _logger_matches(record.name, ("henvis",)) or not _logger_matches(record.name, self.loggers):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is not None and now - state[0] < self.window:
                state[1] += 1
                return False
            if state is not None and state[1]:
                record.repeated = state[1]
            if state is None and len(self._kinds) >= self.MAX_KINDS:
                self._forget_expired(now)
            self._kinds[kind] = [now, 0]
        return True

    def _forget_expired(self, now: float) -> None:
        # Kinds are templates, a bounded set in practice; this guards against a library
        # that puts variable text into the template.  A dropped count is never reported.
        for kind in [k for k, (start, _) in self._kinds.items() if now - start >= self.window]:
            del self._kinds[kind]


def _add_repeated(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Carry the count of suppressed repeats (set by :class:`RepeatThrottle`) into the line."""
    record = event_dict.get("_record")
    repeated = getattr(record, "repeated", None)
    if repeated:
        event_dict["repeated"] = repeated
    return event_dict


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]


def configure_logging(
    service: str,
    level: str = "INFO",
    stream=None,
    *,
    repeat_window: float = REPEAT_WINDOW_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send every log record of this process, redacted, to ``stream`` (stdout): one JSON
    object a line, or readable columns when a person watches it in a terminal.

    Identical repeats from the noisy third-party loggers are throttled (:class:`RepeatThrottle`,
    ``repeat_window`` seconds measured on ``clock``).
    """
    stream = stream or sys.stdout
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if stream.isatty()
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED_PROCESSORS, _redact_stdlib_arguments, _add_repeated],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatThrottle(window=repeat_window, clock=clock))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that install handlers of their own propagate to ours instead.
    for name in ("aiokafka", "kafka", "uvicorn", "uvicorn.access", "uvicorn.error", "alembic"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers[:] = []
        lib_logger.propagate = True
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))

    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
