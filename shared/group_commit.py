"""Units of work on one SQLite database that arrive while a transaction is being written share the next one.

SQLite has one writer: each service's units of work run one after another whatever the code does. What they cost
each on their own is the commit, which with ``synchronous=FULL`` waits for the disk (0.16 ms on an idle machine,
0.7 ms under a raid, when it was a third of the referral service's time). Run together, the units of work that
queued during one commit pay for one more commit between them, and nobody waits for a batch to fill: a unit of work
that finds the database idle starts at once.

Each unit of work still gets its own answer, from a run that committed or from a run alone. If one of a batch
raises, the batch is rolled back; those before it run again together, it runs again alone (unless it ran first, on
what it would have seen alone), and those after it go back to the head of the queue. So a unit of work must be safe
to run again after a rolled-back first run: plain reads and writes over the connection it is given, as every one
here is (a first run's log lines may then show twice). If the batch fails outside its units of work (the write lock
not had in time, the commit), nothing of it was committed and each caller gets that error, as it would have alone.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.util import greenlet_spawn

from shared import sqlite_inline

Work = Callable[[Connection], Any]

MOST_PER_TRANSACTION = 32
"""A bound on one batch: its units of work run on the loop's thread one after another, and the loop waits."""


@dataclass
class _Job:
    work: Work
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's: its unit of work logs under the caller's message and case, whoever's task runs the batch."""

    def wanted(self) -> bool:
        # A caller cancelled while it waited (its channel closed) gets its message again: its work may be skipped.
        return not self.answer.done()


class _UnitRaisedError(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class GroupCommit:
    """Runs units of work on ``engine`` (SQLite), several in one transaction when they queue for it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queued: deque[_Job] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def run(self, work: Work) -> Any:
        job = _Job(work)
        self._queued.append(job)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
            self._writer.add_done_callback(self._writer_ended)
        return await job.answer

    def _writer_ended(self, writer: asyncio.Task[None]) -> None:
        # A writer cancelled with its loop, even before its first step: nobody may wait for it any more.
        if self._writer is not writer:
            return
        self._writer = None
        for job in self._queued:
            job.answer.cancel()
        self._queued.clear()

    async def _write(self) -> None:
        while self._queued:
            batch: list[_Job] = []
            while self._queued and len(batch) < MOST_PER_TRANSACTION:
                job = self._queued.popleft()
                if job.wanted():
                    batch.append(job)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            answers = await greenlet_spawn(in_one_transaction, self._engine, [(job.work, job.context) for job in batch])
        except _UnitRaisedError as raised:
            failed_at, error = raised.index, raised.__cause__ or raised
        except BaseException as exc:
            for job in batch:
                _fail(job.answer, exc)
            if not isinstance(exc, Exception):
                raise
            return
        else:
            for job, answer in zip(batch, answers, strict=True):
                if job.wanted():
                    job.answer.set_result(answer)
            return
        before, alone, after = batch[:failed_at], batch[failed_at], batch[failed_at + 1 :]
        self._queued.extendleft(reversed(after))
        if not before:
            # It ran first, on what it would have seen alone: what it raised is its answer.
            _fail(alone.answer, error)
            return
        try:
            if wanted := [job for job in before if job.wanted()]:
                await self._commit(wanted)
            if alone.wanted():
                answer = await greenlet_spawn(in_a_transaction_of_its_own, self._engine, alone.work, alone.context)
                if alone.wanted():
                    alone.answer.set_result(answer)
        except BaseException as exc:
            _fail(alone.answer, exc)
            if not isinstance(exc, Exception):
                raise


def in_one_transaction(engine: Engine, works: list[tuple[Work, contextvars.Context]]) -> list[Any]:
    """Each of ``works`` in turn, in its context, in one transaction run in one greenlet. If one raises, the
    transaction is rolled back and ``_UnitRaisedError`` says which."""
    with engine.begin() as connection:
        marked = connection.execution_options(**{sqlite_inline.IN_ONE_GREENLET: True})
        answers = []
        for index, (work, context) in enumerate(works):
            try:
                answers.append(context.run(work, marked))
            except BaseException as exc:
                raise _UnitRaisedError(index) from exc
        return answers


def in_a_transaction_of_its_own(engine: Engine, work: Work, context: contextvars.Context | None = None) -> Any:
    """``work`` (in ``context``, if given) in one transaction run in one greenlet, as ``AsyncConnection.run_sync``
    runs it (``shared.database.in_transaction``)."""
    with engine.begin() as connection:
        marked = connection.execution_options(**{sqlite_inline.IN_ONE_GREENLET: True})
        return context.run(work, marked) if context is not None else work(marked)


def _fail(answer: asyncio.Future[Any], exc: BaseException) -> None:
    if answer.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        answer.cancel()
    else:
        answer.set_exception(exc)
