from __future__ import annotations

import socket

import pytest
from fastapi import FastAPI

from shared.service import Running, Service


async def test_a_taken_port_fails_start_up_with_an_error_instead_of_exiting_the_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = Running([Service(name="intake", port=port, http=FastAPI())], "127.0.0.1")

        with pytest.raises(RuntimeError, match=f"port {port} could not start"):
            await running.start()
