"""Units of work on one SQLite database that arrive while a transaction is being written share the next one.

SQLite has one writer: each service's units of work run one after another whatever the code does. What they cost
each on their own is the commit, which with ``synchronous=FULL`` waits for the disk (0.2 ms on an idle machine,
0.7 ms under a raid, when it was a third of the referral service's time). Run together, the units of work that
queued during one commit pay for one more commit between them, and nobody waits for a batch to fill: a unit of work
that finds the database idle starts at once.

Each unit of work still gets its own answer. If one of a batch raises, or the commit fails, the batch is rolled back
and each of its units of work runs again in a transaction of its own, so one never commits or fails with another's
writes. A unit of work must therefore be safe to run twice when the first run was rolled back: plain reads and
writes over the connection it is given, as every one here is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.util import greenlet_spawn

from shared import sqlite_inline

Work = Callable[[Connection], Any]
log = structlog.get_logger(__name__)

MOST_PER_TRANSACTION = 32
"""A bound on one batch: its units of work run on the loop's thread one after another, and the loop waits."""


@dataclass
class _Job:
    work: Work
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """Runs units of work on ``engine`` (SQLite), several in one transaction when they queue for it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queued: deque[_Job] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def run(self, work: Work) -> Any:
        job = _Job(work)
        self._queued.append(job)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        return await job.answer

    async def _write(self) -> None:
        try:
            while self._queued:
                batch: list[_Job] = []
                while self._queued and len(batch) < MOST_PER_TRANSACTION:
                    job = self._queued.popleft()
                    # A handler cancelled while it waited (its channel closed) gets its message again: skip its work.
                    if not job.answer.cancelled():
                        batch.append(job)
                if batch:
                    await self._commit(batch)
        finally:
            self._writer = None
            for job in self._queued:
                if not job.answer.done():
                    job.answer.cancel()
            self._queued.clear()

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            if len(batch) > 1 and await self._together(batch):
                return
            for job in batch:
                try:
                    answers = await greenlet_spawn(in_one_transaction, self._engine, [job.work])
                except Exception as exc:
                    # The caller's to handle, as if it had run the work itself.
                    _fail(job.answer, exc)
                else:
                    _settle(job.answer, answers[0])
        except BaseException as exc:
            # Cancelled with the loop's end: nobody may wait for an answer that will never come.
            for job in batch:
                _fail(job.answer, exc)
            raise

    async def _together(self, batch: list[_Job]) -> bool:
        """Whether ``batch`` committed as one transaction; if it did not, none of it did."""
        try:
            answers = await greenlet_spawn(in_one_transaction, self._engine, [job.work for job in batch])
        except Exception as exc:
            log.debug("shared_transaction_rolled_back", units_of_work=len(batch), error=type(exc).__name__)
            return False
        for job, answer in zip(batch, answers, strict=True):
            _settle(job.answer, answer)
        return True


def in_one_transaction(engine: Engine, works: list[Work]) -> list[Any]:
    """Each of ``works`` in turn, in one transaction run in one greenlet (``shared.database.in_transaction``)."""
    with engine.begin() as connection:
        marked = connection.execution_options(**{sqlite_inline.IN_ONE_GREENLET: True})
        return [work(marked) for work in works]


def _settle(answer: asyncio.Future[Any], value: Any) -> None:
    if not answer.done():
        answer.set_result(value)


def _fail(answer: asyncio.Future[Any], exc: BaseException) -> None:
    if answer.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        answer.cancel()
    else:
        answer.set_exception(exc)
