"""Keep a worker's event loop polling for a moment after each answer instead of sleeping at once.

A client that sends its next request right after reading an answer (one connection, back to back; any
interactive caller) finds the worker asleep: its event loop blocked in epoll, its CPU halted. Waking it
costs a scheduler wake-up and, on a VM whose guest does not halt-poll (cpuidle `haltpoll` with
`guest_halt_poll_ns` = 0, as on the 2-core Xeon Firecracker VMs this was measured on), an exit to the
hypervisor and an interrupt across cores: there a trivial FastAPI endpoint took twice as long per request
with the client on the other core as on the same one (docs/request-path.md, "Round three: idle polling"). So after an answer the loop is kept busy
for up to `idle_poll_us` (one ready callback that re-schedules itself, so the loop polls its sockets
with a zero timeout) and a request arriving meanwhile is read with no wake-up at all: the trade Linux's
own halt-polling and SO_BUSY_POLL make, CPU for latency, done where this server can make it.

It costs at most `idle_poll_us` of CPU per idle stretch, and only when the CPU has nothing else to do
for this worker. Unset (the default), it is on (AUTO_US) only where the guest kernel does not poll
itself: cpuidle's `haltpoll` driver with `guest_halt_poll_ns` 0, the machine it was measured to help on.
Elsewhere (bare metal, or a VM whose idle is cheap to leave) it was measured not to help: on a 2-core AMD
EPYC VM (cpuidle driver `none`) it moved whole requests by no more than that machine's noise, either way,
in two runs (benchmarks/results/http.md keeps a server with the opposite choice side by side). It does not poll:
- when the worker may run on no more CPUs than there are workers (under `taskset` on one core, or as
  many workers as cores): there the poll would take the CPU the client, or another worker, needs next.
  Re-judged every RECHECK_S, so a worker pinned after its start follows within a second;
- while the worker has model jobs on its pool (their completion wakes the loop anyway, and a pool thread
  on the same core would wait for the poll);
- when `idle_poll_us` is 0.
"""
from __future__ import annotations

import os
import time

from . import admission


AUTO_US = 50  # the window where the guest does not halt-poll (measured on the Xeon VM, docs/request-path.md)
RECHECK_S = 1.0  # how often the CPU affinity is read again
CPUIDLE_DRIVER = "/sys/devices/system/cpu/cpuidle/current_driver"
GUEST_HALT_POLL_NS = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def _cpus() -> int:
    """How many CPUs this process may run on (affinity); the CPU count where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_us(driver_path: str = CPUIDLE_DRIVER, halt_poll_path: str = GUEST_HALT_POLL_NS) -> int:
    """AUTO_US where the guest kernel does not halt-poll before it halts (haltpoll driver, poll time 0):
    every idle wake-up there is a hypervisor exit. 0 elsewhere, and where the files cannot be read."""
    try:
        with open(driver_path) as f:
            driver = f.read().strip()
        with open(halt_poll_path) as f:
            halt_poll_ns = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    return AUTO_US if driver == "haltpoll" and halt_poll_ns == 0 else 0


class IdlePoll:
    """One per worker process (POLL below): `answered(loop)` after each response written. `cpus`: the
    CPUs the worker may use, a number or a function read again every RECHECK_S."""

    def __init__(self, seconds: float, workers: int, cpus=_cpus):
        self.window, self.workers = seconds, workers
        self.cpus = cpus if callable(cpus) else (lambda: cpus)
        self.seconds, self.recheck = 0.0, 0.0
        self.until = 0.0
        self.polling = False
        self.ticks = 0  # loop iterations spent polling (tests)
        if seconds > 0:
            self._judge(time.perf_counter())

    def _judge(self, now: float) -> None:
        self.seconds = self.window if self.cpus() > self.workers else 0.0
        self.recheck = now + RECHECK_S

    def answered(self, loop) -> None:
        if self.window <= 0:
            return
        now = time.perf_counter()
        if now >= self.recheck:
            self._judge(now)
        if self.seconds <= 0:
            return
        self.until = now + self.seconds
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
    """This worker's IdlePoll, built from its settings on first use (unset idle_poll_us: auto_us())."""
    global POLL
    if POLL is None:
        us = auto_us() if settings.idle_poll_us is None else settings.idle_poll_us
        POLL = IdlePoll(us / 1e6, settings.workers, _cpus)
    return POLL
