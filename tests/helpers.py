"""Small helpers shared by tests: ``from tests.helpers import free_port, wait_until``.

Tests wait on conditions, never on fixed sleeps: poll the real thing (a row, a consumed
message, an HTTP answer) with :func:`wait_until` / :func:`await_until`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that value.

    Raises ``AssertionError(f"{message} (after {timeout}s)")`` on timeout. Exceptions of the
    types in ``ignore`` (e.g. ``ConnectionError`` while a server starts) count as "not yet";
    the last one is chained to the AssertionError. The predicate is always tried once more
    at the deadline, so a slow machine does not fail a condition that has just become true.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            result = predicate()
        except ignore as exc:
            last_exc, result = exc, None
        if result:
            return result
        if expired:
            raise AssertionError(f"{message} (after {timeout}s)") from last_exc
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def await_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """The asyncio twin of :func:`wait_until`; ``predicate`` may be sync or async."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: BaseException | None = None
    while True:
        expired = loop.time() >= deadline
        try:
            result = predicate()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except ignore as exc:
            last_exc, result = exc, None
        if result:
            return result
        if expired:
            raise AssertionError(f"{message} (after {timeout}s)") from last_exc
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


@contextmanager
def served(app, port: int) -> Iterator[str]:
    """``app`` on 127.0.0.1:``port`` (uvicorn in a thread), until the block ends; its URL."""
    import uvicorn  # lazily: only the tests that serve an app over real HTTP need it

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=30, message="the app did not start")
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
