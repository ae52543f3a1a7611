"""A bounded thread pool for model work, so CPU-bound inference never runs on the event loop.

Threads (not processes) because the kernels (NumPy BLAS, ONNX Runtime, the C kernel) release the GIL
while they compute. The pool admits at most `threads` running jobs plus `max_queue` waiting ones; past
that, submit() raises QueueFull at once (the API answers 503 + Retry-After) instead of letting a queue
grow without bound and every request's latency with it.

A request can hold its place from before its body is read: `reserve()` takes one of those places (a
`Slot`, bound to the current context), and the context's next `submit()` runs on it without a second
check. service/api/admission.py reserves for each /classify and /qa request at its head, so every 503
for a full pool is decided from the head, cheaply, and a request whose body was read and parsed is
never refused for load afterwards (issue 20: those late 503s waited behind the event loop's queue).
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

from . import metrics

T = TypeVar("T")


class QueueFull(RuntimeError):
    """All pool threads are busy and the wait queue is at its limit."""


class Slot:
    """One place in a WorkPool taken ahead of the job (WorkPool.reserve): used by the next submit() in
    the context that holds it, else given back by release() (idempotent)."""

    __slots__ = ("pool", "held")

    def __init__(self, pool: "WorkPool"):
        self.pool, self.held = pool, True

    def release(self) -> None:
        with self.pool._lock:
            if not self.held:
                return
            self.held = False
            self.pool._admitted -= 1

    def __del__(self):  # a safety net: a slot dropped unused (a request that never reached its release)
        if self.held:
            self.release()


# The slot the current request holds (a task inherits the value current when it was created).
pool_slot: contextvars.ContextVar[Slot | None] = contextvars.ContextVar("skimserve_pool_slot", default=None)


class WorkPool:
    def __init__(self, threads: int, max_queue: int):
        if threads < 1 or max_queue < 0:
            raise ValueError(f"threads must be >= 1 and max_queue >= 0 (got {threads}, {max_queue})")
        self.threads, self.max_queue = threads, max_queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="skimserve-model")
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._waiting = 0
        self.closed = False

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def full(self) -> bool:
        """No room for another job of this caller: what callers that run small work themselves check, to
        refuse alike (a caller holding a reserved slot has room: its own)."""
        return self._admitted >= self.threads + self.max_queue and self._held_slot() is None

    def _held_slot(self) -> Slot | None:
        slot = pool_slot.get()
        return slot if slot is not None and slot.pool is self and slot.held else None

    def reserve(self, bind: bool = True) -> Slot | None:
        """Take a place for a job ahead of it (None when there is none); release() it if no job comes.
        bind: make it the current context's slot (`pool_slot`), which the context's next submit() uses."""
        with self._lock:
            if self._admitted >= self.threads + self.max_queue:
                return None
            self._admitted += 1
        slot = Slot(self)
        if bind:
            pool_slot.set(slot)
        return slot

    def held_slot(self) -> Slot | None:
        """The current context's slot in this pool, if it holds one still unused."""
        return self._held_slot()

    def submit(self, fn: Callable[..., T], *args) -> Future:
        """Start fn(*args) on a pool thread, or raise QueueFull. Usable from any thread."""
        slot = pool_slot.get()
        with self._lock:
            if slot is not None and slot.pool is self and slot.held:
                slot.held = False  # its place becomes this job's (released when the job ends)
            elif self._admitted >= self.threads + self.max_queue:
                raise QueueFull(f"{self._admitted} model jobs in flight (limit {self.threads} running "
                                f"+ {self.max_queue} waiting)")
            else:
                self._admitted += 1
            self._waiting += 1
            metrics.QUEUE_DEPTH.inc()
        started = threading.Event()

        def job():
            self._left_queue(started)
            return fn(*args)

        try:
            future = self._executor.submit(job)
        except RuntimeError:  # executor shut down
            self._left_queue(started)
            self._release()
            raise QueueFull("the server is shutting down") from None
        # Released when the job ends, however it ends (also when cancelled before it started, which
        # happens when the client goes away while waiting).
        future.add_done_callback(lambda _f: (self._left_queue(started), self._release()))
        return future

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Await fn(*args) on the pool without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _left_queue(self, started: threading.Event) -> None:
        with self._lock:
            if started.is_set():
                return
            started.set()
            self._waiting -= 1
            metrics.QUEUE_DEPTH.dec()

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self, wait: bool = True) -> None:
        self.closed = True
        self._executor.shutdown(wait=wait, cancel_futures=True)
