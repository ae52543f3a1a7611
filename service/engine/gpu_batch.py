"""Dynamic batching for the torch kernels: concurrent requests' calls of one layer run as one batch.

Each model thread calls `run(w, x, threshold, budget)` and waits; one worker thread takes the oldest waiting call,
adds every other waiting call of the same layer (up to `max_batch`), waits up to `wait_ms` for more when
the batch is not full, and runs them with gpu.run_layers_on: one launch, each text with its own threshold,
its own decisions, its own FLOP budget (budget.LayerBudget or None) and so its own cost figures (packed, so
a short text does not pay for a long one). With wait_ms = 0 a lone request never waits: batches form only
from calls that queued while the device was busy.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future


class LayerBatcher:
    def __init__(self, run_many, max_batch: int, wait_ms: float):
        if max_batch < 1 or wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and wait_ms >= 0 (got {max_batch}, {wait_ms})")
        self.run_many, self.max_batch, self.wait_s = run_many, max_batch, wait_ms / 1000.0
        self._cv = threading.Condition()
        self._queue: list[tuple[object, object, float, object, Future]] = []
        self.batches = 0  # batches run (a test reads it)
        threading.Thread(target=self._loop, name="skimserve-gpu-batcher", daemon=True).start()

    def run(self, w, x, threshold: float, budget=None):
        fut: Future = Future()
        with self._cv:
            self._queue.append((w, x, float(threshold), budget, fut))
            self._cv.notify()
        return fut.result()

    def _take(self):
        with self._cv:
            while not self._queue:
                self._cv.wait()
            w = self._queue[0][0]
            deadline = time.monotonic() + self.wait_s
            while True:
                same = [item for item in self._queue if item[0] is w][:self.max_batch]
                left = deadline - time.monotonic()
                if len(same) >= self.max_batch or left <= 0:
                    break
                self._cv.wait(left)
            taken = {id(item) for item in same}  # by identity: == on the items would compare weight arrays
            self._queue = [item for item in self._queue if id(item) not in taken]
            return w, same

    def _loop(self):
        while True:  # nothing may end this thread: every later request would wait forever
            items = []
            try:
                w, items = self._take()
                outs = self.run_many(w, [it[1] for it in items], [it[2] for it in items],
                                     [it[3] for it in items])
                if len(outs) != len(items):
                    raise RuntimeError(f"batch of {len(items)} calls gave {len(outs)} results")
                self.batches += 1
                for it, out in zip(items, outs):
                    it[4].set_result(out)
            except BaseException as exc:  # noqa: BLE001  (every waiting request gets the error)
                for it in items:
                    it[4].set_exception(exc)
