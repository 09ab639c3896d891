"""A TCP proxy between the services and the throwaway broker, so a scenario can cut every connection or stall
them (bytes held, neither side closed) without touching the node itself."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from tests.system import free_port


class TcpProxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self._host = host
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._answering = asyncio.Event()
        self._answering.set()
        self.cuts = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self._flowing.set()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        """Every open connection is torn down at once (an RST each way), as a failing network would."""
        self.cuts += 1
        for pair in list(self._pairs):
            for writer in pair:
                writer.transport.abort()
        self._pairs.clear()
        self._answering.set()

    def hold_answers(self) -> None:
        """The broker's bytes stop reaching the clients while theirs still reach it, until the next cut: a publish
        the broker takes, and confirms, without the confirm ever arriving."""
        self._answering.clear()

    def stall(self) -> None:
        """Bytes stop moving both ways; connections stay open, so only heartbeats and timeouts notice."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, upstream_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(client_reader, upstream_writer),
                self._pump(upstream_reader, client_writer, answers=True),
            )
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool = False) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if answers:
                    await self._answering.wait()
                writer.write(data)
                await writer.drain()
        # One side gone: the other must see it too, or a half-open connection would outlive the fault.
        writer.transport.abort()
