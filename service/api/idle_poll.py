"""Keep a worker's event loop polling for a moment after each answer instead of sleeping at once.

A client that sends its next request right after reading an answer (one connection, back to back; any
interactive caller) finds the worker asleep: its event loop blocked in epoll, its CPU halted. Waking it
costs a scheduler wake-up and, on a VM whose guest does not halt-poll (this repository's 2-core
Firecracker VMs: cpuidle `haltpoll` with `guest_halt_poll_ns` = 0), an exit to the hypervisor and an
interrupt across cores: about 60-75 µs a request there, a third of a short sentence's whole request
(docs/request-path.md, "Idle polling", has the measurement). So after an answer the loop is kept busy
for up to `idle_poll_us` (one ready callback that re-schedules itself, so the loop polls its sockets
with a zero timeout) and a request arriving meanwhile is read with no wake-up at all: the trade Linux's
own halt-polling and SO_BUSY_POLL make, CPU for latency, done where this server can make it.

It costs at most `idle_poll_us` of CPU per idle stretch, and only when the CPU has nothing else to do
for this worker. It does not poll:
- when the worker started with no more CPUs than there are workers (started under `taskset` on one core,
  or as many workers as cores): there the poll would take the CPU the client, or another worker, needs
  next. (Judged once, at the worker's start: a worker pinned later keeps its choice.);
- while the worker has model jobs on its pool (their completion wakes the loop anyway, and a pool thread
  on the same core would wait for the poll);
- when `idle_poll_us` is 0.
"""
from __future__ import annotations

import os
import time

from . import admission


def _cpus() -> int:
    """How many CPUs this process may run on (affinity); the CPU count where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class IdlePoll:
    """One per worker process (POLL below): `answered(loop)` after each response written."""

    def __init__(self, seconds: float, workers: int, cpus: int):
        self.seconds = seconds if cpus > workers else 0.0
        self.until = 0.0
        self.polling = False
        self.ticks = 0  # loop iterations spent polling (tests)

    def answered(self, loop) -> None:
        if self.seconds <= 0:
            return
        self.until = time.perf_counter() + self.seconds
        if not self.polling and not self._pool_busy():
            self.polling = True
            loop.call_soon(self._tick, loop)

    def _tick(self, loop) -> None:
        if time.perf_counter() < self.until and not self._pool_busy():
            self.ticks += 1
            loop.call_soon(self._tick, loop)
        else:
            self.polling = False

    @staticmethod
    def _pool_busy() -> bool:
        state = admission.ACTIVE
        return state is not None and state.pool.admitted > 0


POLL: IdlePoll | None = None


def idle_poll(settings) -> IdlePoll:
    """This worker's IdlePoll, built from its settings on first use."""
    global POLL
    if POLL is None:
        POLL = IdlePoll(settings.idle_poll_us / 1e6, settings.workers, _cpus())
    return POLL
