from __future__ import annotations

import asyncio
import socket

import pytest
import structlog.testing
from fastapi import FastAPI, Request

from shared.service import Running, Service, log_tasks, stop_background


async def test_a_taken_port_fails_start_up_with_an_error_instead_of_exiting_the_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = Running([Service(name="intake", port=port, http=FastAPI())], "127.0.0.1")

        with pytest.raises(RuntimeError, match=f"port {port} could not start"):
            await running.start()


async def test_a_client_idle_for_six_seconds_can_still_send_on_its_keep_alive_connection() -> None:
    http = FastAPI()

    @http.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = Running([Service(name="intake", port=port, http=http)], "127.0.0.1")
    await running.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /healthz HTTP/1.1\r\nHost: intake\r\n\r\n"
    try:
        writer.write(request)
        first = await asyncio.wait_for(reader.readuntil(b"}"), timeout=10)
        await asyncio.sleep(6)  # past httpx's 5 s, and uvicorn's own default
        writer.write(request)
        second = await asyncio.wait_for(reader.readuntil(b"}"), timeout=10)
    finally:
        writer.close()
        await running.stop()

    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 200")


async def test_a_client_that_never_finishes_its_request_does_not_keep_the_service_from_stopping() -> None:
    http = FastAPI()

    @http.post("/v1/cases")
    async def report(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = Running([Service(name="intake", port=port, http=http)], "127.0.0.1", grace_seconds=1)
    await running.start()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/cases HTTP/1.1\r\nHost: intake\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(running.stop(), timeout=30)
    finally:
        writer.close()


async def test_a_task_dump_names_where_each_task_waits() -> None:
    release = asyncio.Event()

    async def waiting_for_the_broker() -> None:
        await release.wait()

    async def stopping() -> None:
        await waiting_for_the_broker()

    task = asyncio.create_task(stopping(), name="lifespan")
    await asyncio.sleep(0)

    with structlog.testing.capture_logs() as logged:
        log_tasks()

    release.set()
    await task
    [dump] = [entry for entry in logged if entry["event"] == "tasks_dumped"]
    [dumped] = [entry for entry in dump["tasks"] if entry.startswith("lifespan: ")]
    assert "stopping (unit/test_service.py:" in dumped
    assert dumped.index("stopping") < dumped.index("waiting_for_the_broker") < dumped.index("wait (asyncio/locks.py:")


async def test_stopping_background_work_ends_a_task_that_swallowed_its_cancellation() -> None:
    """As the retention sweep did when aio-pika, cancelled mid-call, raised another error in its place."""
    swallowed = asyncio.Event()

    async def sweep_every_hour() -> None:
        while True:
            try:
                await asyncio.sleep(3600)  # the round's broker call
            except asyncio.CancelledError:
                swallowed.set()  # "the broker is away: the next round does it"
            await asyncio.sleep(3600)

    task = asyncio.create_task(sweep_every_hour())
    await asyncio.sleep(0)

    await asyncio.wait_for(stop_background([task]), timeout=60)

    assert swallowed.is_set()
    assert task.cancelled()
