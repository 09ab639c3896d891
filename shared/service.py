"""Running services: each is a FastAPI app whose lifespan owns its broker and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
import uvicorn
import uvloop
from fastapi import FastAPI

_T = TypeVar("_T")

log = structlog.get_logger(__name__)

HTTP_KEEP_ALIVE_SECONDS = 75
"""How long an idle HTTP connection stays open. Longer than HTTP clients keep idle connections by default (httpx
5 s, aiohttp 15 s, a load balancer's 60 s): at uvicorn's own 5 s, a client's next request on a connection could
cross the server's close, and failed with "server disconnected" (seen in the test suite)."""
HTTP_GRACE_SECONDS = 10
"""How long a stopping service lets running HTTP requests finish; its consumers have their own grace (FastStream's
``graceful_timeout``), and a container runtime kills a process that takes longer than both."""


def run_on_uvloop(main: Coroutine[Any, Any, _T]) -> _T:
    """``main`` on uvloop's event loop: the services spend less CPU per message on it than on asyncio's own
    (README, "Performance"), the difference in its socket I/O and scheduling, which is all C."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class ServiceStartError(RuntimeError):
    """Raised by ``Running.start`` when a service could not start: its port taken, or its start-up failed."""


async def stop_background(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancels each of a service's background tasks and waits for it to end, cancelling it again while it runs.

    A loop that retries on ``Exception`` can swallow a cancellation: aio-pika, cancelled in the middle of a call,
    may close its channel and raise another error in the CancelledError's place. The loop then takes it for the
    broker being away and sleeps until its next round (an hour, for the retention sweep), and a stopping
    service, or one whose port was taken at start-up, waited on it forever."""
    for task in tasks:
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    http: FastAPI


def log_tasks() -> None:
    """Every task of the running loop and the chain of awaits it is suspended in, innermost last: for a service
    that is slow to stop, or stuck, ``kill -USR1 <pid>`` shows what it waits for."""
    log.warning(
        "tasks_dumped", tasks=sorted(f"{task.get_name()}: {' > '.join(_awaits(task))}" for task in asyncio.all_tasks())
    )


def _awaits(task: asyncio.Task[Any]) -> list[str]:
    chain: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and (frame := getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)):
        where = "/".join(Path(frame.f_code.co_filename).parts[-2:])
        chain.append(f"{frame.f_code.co_name} ({where}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return chain


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Several servers share one process in `rujukan run`; signals are handled once, in `serve`.
        yield


def _server(service: Service, host: str, grace_seconds: int) -> _Server:
    # httptools parses HTTP in C: intake spent 15-20 % less CPU per case than with h11 (README, "Performance").
    config = uvicorn.Config(
        service.http,
        host=host,
        port=service.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="httptools",
        # A request still running then is cancelled (a report not yet confirmed is answered by nobody and sent
        # again by its reporter): without a bound, one stuck client kept the service from stopping at all.
        timeout_graceful_shutdown=grace_seconds,
        timeout_keep_alive=HTTP_KEEP_ALIVE_SECONDS,
    )
    return _Server(config)


async def _serve(server: _Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process when a port is taken or start-up fails; in a shared event loop that
        # would take the other services (or a test runner) down with it.
        raise ServiceStartError(
            f"HTTP server on port {server.config.port} could not start (exit {exc.code}; see the log)"
        ) from None


class Running:
    """Services started in this event loop (the CLI, the demo and the tests use it)."""

    def __init__(self, services: Sequence[Service], host: str, *, grace_seconds: int = HTTP_GRACE_SECONDS) -> None:
        self._servers = [_server(service, host, grace_seconds) for service in services]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(_serve(server)) for server in self._servers]
        while not all(server.started for server in self._servers):
            if failed := [task for task in self._tasks if task.done()]:
                await self.stop()
                failed[0].result()
                raise ServiceStartError("a service stopped during start-up (see its log)")
            await asyncio.sleep(0.05)

    def request_stop(self) -> None:
        for server in self._servers:
            server.should_exit = True

    async def stop(self) -> None:
        self.request_stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)


async def serve(services: Sequence[Service], host: str, *, on_hangup: Callable[[], object] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (in-flight handlers finish or are redelivered);
    SIGHUP calls ``on_hangup`` (the directory reload); SIGUSR1 logs where every task waits."""
    running = Running(services, host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, running.request_stop)
    if on_hangup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks)
    await running.start()
    await running.wait()
    if any(not server.started for server in running._servers):
        raise SystemExit(1)
