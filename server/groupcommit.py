"""Group commit: one writer thread decides waiting requests in order and commits them once.

Requests (a function of the :class:`~validator.service.Validator`) are queued with
a future. The writer takes everything waiting (up to ``max_batch``), opens one
store batch (:meth:`~validator.store.TokenStore.batch`), runs each decision with
the validator's usual rules and compare-and-set, commits once (one fsync for
the whole batch), and only then resolves the futures. A decision that raises
(a bug, a storage error) spoils the batch: it is rolled back whole and its
requests are decided again one by one, so one failure fails one request. If
the commit fails, every request of the batch gets the error and none is
answered as accepted. When the queue is empty the writer blocks on it, so a
lone request is decided at once: the batch grows only with the load.

The writer owns the store: SQLite connections belong to the thread that opened
them, and one writer is what SQLite allows anyway. Reads and admin work
(``unbatched``) run on the same thread, alone, between batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from validator.service import Validator
from validator.store import TokenStore
from vtoken.errors import StorageError, VTokenError

#: The most requests decided in one transaction.
DEFAULT_MAX_BATCH = 256

_STOP = object()

Job = Callable[[Validator], Any]


class _Spoiled(Exception):
    """A decision raised inside a batch: the batch is rolled back and its requests decided one by one."""


class ServiceUnavailableError(VTokenError):
    """The store could not commit (or the writer has stopped): nothing in the batch was accepted."""


class _Waiter:
    """A thread waiting for one answer: a pre-acquired lock the writer releases (the cheapest wake-up)."""

    __slots__ = ("_lock", "value", "failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        self.failed = False

    def settle(self, value: Any, failed: bool) -> None:
        self.value, self.failed = value, failed
        self._lock.release()

    def wait(self, timeout: float | None) -> Any:
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("no answer from the validator's writer in time")
        if self.failed:
            raise self.value
        return self.value


@dataclasses.dataclass
class _Request:
    job: Job
    batched: bool
    #: Decisions in a batch run ordered by this (the token's serial): every node locks rows in one
    #: order, so batches on two nodes sharing a database cannot deadlock. Same key: arrival order.
    key: str = ""
    #: Exactly one of these is set: a thread's future or waiter, or an asyncio future and its loop.
    future: concurrent.futures.Future[Any] | None = None
    afuture: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: _Waiter | None = None


BatchObserver = Callable[[int, float, bool], None]


class GroupCommitter:
    """The single writer. ``open_store`` and ``make_validator`` run on its thread."""

    def __init__(
        self,
        open_store: Callable[[], TokenStore],
        make_validator: Callable[[TokenStore], Validator],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._open_store = open_store
        self._make_validator = make_validator
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopped = False

    # --- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer; raises what opening the store raised."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="vtoken-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        """Finish what is queued, close the store, stop the writer."""
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> GroupCommitter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- submitting -----------------------------------------------------------------------

    def submit(self, job: Job, *, batched: bool = True, key: str = "") -> concurrent.futures.Future[Any]:
        """Queue ``job`` from any thread; the future resolves after its batch has committed.

        ``key``: the serial the job decides about (orders the batch; see :class:`_Request`).
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Request(job, batched, key, future=future))
        return future

    def run(self, job: Job, *, batched: bool = True, timeout: float | None = None, key: str = "") -> Any:
        """Submit from a thread and wait for the committed result."""
        waiter = _Waiter()
        self._put(_Request(job, batched, key, waiter=waiter))
        return waiter.wait(timeout)

    async def run_async(self, job: Job, *, batched: bool = True, key: str = "") -> Any:
        """Submit from an event loop and await the committed result."""
        loop = asyncio.get_running_loop()
        afuture = loop.create_future()
        self._put(_Request(job, batched, key, afuture=afuture, loop=loop))
        return await afuture

    def _put(self, request: _Request) -> None:
        if self._stopped or self._thread is None:
            raise ServiceUnavailableError("the validator's writer is not running")
        self._queue.put(request)

    # --- the writer -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            store = self._open_store()
            validator = self._make_validator(store)
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(store, validator)
        finally:
            # Whatever ends the writer, nothing may wait for it: refuse new work, fail what is queued.
            self._stopped = True
            store.close()
            error = ServiceUnavailableError("the validator's writer has stopped")
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Request):
                    _settle([(item, error, True)])

    def _loop(self, store: TokenStore, validator: Validator) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            first = get()
            if first is _STOP:
                return
            batch: list[_Request] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            pending: list[_Request] = []
            for request in batch:
                if request.batched:
                    pending.append(request)
                    continue
                if pending:  # keep the order: commit what came before
                    self._decide(store, validator, pending)
                    pending = []
                self._alone(validator, request)
            if pending:
                self._decide(store, validator, pending)
            if stop:
                return

    def _alone(self, validator: Validator, request: _Request) -> None:
        try:
            result: Any = request.job(validator)
        except BaseException as exc:
            _settle([(request, exc, True)])
            return
        _settle([(request, result, False)])

    def _decide(self, store: TokenStore, validator: Validator, batch: list[_Request]) -> None:
        outcomes: list[tuple[_Request, Any, bool]] = []
        failed: tuple[_Request, BaseException] | None = None
        start = time.perf_counter()
        if len(batch) > 1:
            batch = sorted(batch, key=_request_key)  # stable: one token's requests keep their order
        try:
            with store.batch():
                for request in batch:
                    try:
                        outcomes.append((request, request.job(validator), False))
                    except Exception as exc:  # spoils the batch: the store keeps nothing of it
                        failed = (request, exc)
                        raise _Spoiled from exc
        except _Spoiled:
            assert failed is not None
            self._observe(len(batch), time.perf_counter() - start, False)
            if len(batch) == 1:
                _settle([(failed[0], failed[1], True)])
                return
            # The failing request alone (it may only have failed with company, e.g. a deadlock), then
            # the rest together: one bad request costs two extra commits, not one per request.
            self._decide(store, validator, [failed[0]])
            rest = [request for request in batch if request is not failed[0]]
            self._decide(store, validator, rest)
            return
        except (StorageError, OSError) as exc:
            error = ServiceUnavailableError(f"the store could not commit; nothing in this batch was accepted ({exc})")
            _settle([(request, error, True) for request in batch])
            self._observe(len(batch), time.perf_counter() - start, False)
            return
        except BaseException as exc:  # a bug: fail the batch, keep the writer alive
            _settle([(request, exc, True) for request in batch])
            self._observe(len(batch), time.perf_counter() - start, False)
            return
        self._observe(len(batch), time.perf_counter() - start, True)
        _settle(outcomes)

    def _observe(self, size: int, seconds: float, committed: bool) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(size, seconds, committed)
            except Exception:  # metrics must never break the writer
                pass


def _request_key(request: _Request) -> str:
    return request.key


def _settle(outcomes: list[tuple[_Request, Any, bool]]) -> None:
    """Resolve futures: thread futures directly, asyncio ones with one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, bool]]] = {}
    for request, value, failed in outcomes:
        if request.waiter is not None:
            request.waiter.settle(value, failed)
        elif request.future is not None:
            if not request.future.set_running_or_notify_cancel():
                continue  # cancelled by its caller: nobody to answer
            if failed:
                request.future.set_exception(value)
            else:
                request.future.set_result(value)
        elif request.loop is not None and request.afuture is not None:
            by_loop.setdefault(request.loop, []).append((request.afuture, value, failed))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_async, items)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass


def _settle_async(items: list[tuple[asyncio.Future[Any], Any, bool]]) -> None:
    for afuture, value, failed in items:
        if afuture.done():  # the client went away
            continue
        if failed:
            afuture.set_exception(value)
        else:
            afuture.set_result(value)


__all__ = ["DEFAULT_MAX_BATCH", "GroupCommitter", "ServiceUnavailableError"]
