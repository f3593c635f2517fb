"""The single writer: one thread, one connection, many operations per commit (group commit).

Callers hand in operations (functions of a connection) and await their result;
the result arrives only after the transaction that ran the operation has
committed. Operations that arrive while a commit is in progress are run
together in the next transaction, so one fsync serves many callers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from o11n.errors import Unavailable

T = TypeVar("T")
Operation = Callable[[Connection], Any]
MAX_BATCH = 2000

log = logging.getLogger(__name__)

_Item = tuple[Operation, asyncio.Future[Any]]
_Result = tuple[asyncio.Future[Any], Any, BaseException | None]


class GroupCommitWriter:
    """Runs write operations on one connection in a background thread, in batches."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="o11n-writer", daemon=True)
        self._stopped = False
        self.commits = 0
        self.operations = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    async def run(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` in the next transaction; return its result once committed."""
        if self._stopped:
            raise Unavailable("the store is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((operation, future))
        return await future

    def stop(self) -> None:
        """Finish what was handed in, then stop the thread."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            while True:
                batch, stop = self._take()
                if batch:
                    self._commit(conn, batch)
                if stop:
                    return

    def _take(self) -> tuple[list[_Item], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, conn: Connection, batch: list[_Item]) -> None:
        try:
            with conn.begin():
                results: list[_Result] = [(future, op(conn), None) for op, future in batch]
        except Exception:
            # One bad operation must not fail the others: run each alone.
            results = [self._alone(conn, op, future) for op, future in batch]
        self.commits += 1
        self.operations += len(batch)
        _deliver(results)

    def _alone(self, conn: Connection, op: Operation, future: asyncio.Future[Any]) -> _Result:
        try:
            with conn.begin():
                return future, op(conn), None
        except Exception as exc:
            log.exception("write operation failed")
            return future, None, exc


def _deliver(results: list[_Result]) -> None:
    """Hand results to their event loops, in commit order."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for item in results:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, items in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[_Result]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
