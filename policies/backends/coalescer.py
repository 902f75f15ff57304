"""Gather concurrent generation requests into batched calls (the one batching layer).

``dara run`` (and LangGraph Studio) run one graph thread per episode; each ``reason`` /
``optimize`` node asks its policy for ONE decision, which reaches the chat model as a
one-prompt call. A model generates a batch of prompts in about the time of one on CPU,
so the ``local`` and ``vllm`` backends send every call through a
:class:`RequestCoalescer`: requests in flight at the same moment that share a key (the
same adapter, answer-token cap, sampling settings, ...) become one batched generate.
The ``openai`` backend needs none: the server batches concurrent HTTP requests itself.

A daemon worker takes the oldest pending request, waits for more with the same key
until ``window_s`` passes without a new request (at most ``straggler_s`` in all) or
``max_batch`` are pending, then runs them as one call of ``fn(key, items)``. Requests
with another key, or arriving while a batch runs, go in a later batch. The worker ends
after 30 s without requests; the next submit restarts it.

**Stragglers.** The callers of one batch come back as a wave: each episode thread runs
its graph nodes (budget tool, environment, checkpoint write) before asking again, and
under the GIL those returns spread over 0.1-2 s, longer than the window. Gathering only
the first few split every later round into two or more generates (``dara bench``: 3
then 13), and on CPU a batch of eight costs more than half of one of sixteen (16 episodes
through the graph ran 1.22x fewer decisions/s, docs/benchmarks.md). So while fewer
requests are pending than the last batch held, the worker also waits until
``straggler_s`` after that batch ended (at most a quarter of the batch's own run time, so
a short batch never waits long); a request arriving later than that, or when fewer
callers remain (episodes that ended), waits only the window.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Hashable, Sequence

IDLE_EXIT_S = 30.0
HISTORY = 10_000  # batches whose size and span are kept (a long-lived server makes many)


class RequestCoalescer:
    """Batches concurrent ``submit`` / ``submit_many`` calls into calls of ``fn(key, items)``.

    ``fn`` returns one result per item, in order; each caller's future gets its result
    (or the exception ``fn`` raised).
    """

    def __init__(self, fn: Callable[[Any, list], Sequence[Any]], max_batch: int, window_s: float,
                 name: str = "dara-coalescer", straggler_s: float = 2.0):
        self.fn, self.name = fn, name
        self.max_batch, self.window_s = max(1, int(max_batch)), max(0.0, float(window_s))
        self.straggler_s = max(0.0, float(straggler_s))
        self._last_size, self._last_end, self._last_secs = 1, 0.0, 0.0  # the previous batch
        self._last_submit = 0.0
        self._cv = threading.Condition()
        self._pending: list[tuple[Hashable, Any, Future]] = []
        self._worker: threading.Thread | None = None
        self.calls = 0  # batched calls made
        self.sizes: list[int] = []  # items per batched call (the last HISTORY)
        self.spans: list[tuple[float, float]] = []  # (start, end) monotonic time per batched call (same)

    def submit(self, key: Hashable, item: Any) -> Future:
        return self.submit_many(key, [item])[0]

    def submit_many(self, key: Hashable, items: Sequence[Any]) -> list[Future]:
        futs: list[Future] = [Future() for _ in items]
        with self._cv:
            self._pending.extend((key, item, fut) for item, fut in zip(items, futs))
            self._last_submit = time.monotonic()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._worker.start()
            self._cv.notify_all()
        return futs

    def run(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Submit ``items`` and wait for their results (in order)."""
        return [f.result() for f in self.submit_many(key, items)]

    def _batch_done(self, size: int, t0: float) -> None:
        """Remember the batch whose callers are about to come back (see Stragglers)."""
        with self._cv:
            self._last_end = time.monotonic()
            self._last_size, self._last_secs = size, self._last_end - t0
            self.spans.append((t0, self._last_end))
            del self.spans[:-HISTORY]

    def _take(self) -> tuple[Hashable, list] | None:
        with self._cv:
            while not self._pending:
                if not self._cv.wait(timeout=IDLE_EXIT_S) and not self._pending:
                    return None
            key = self._pending[0][0]
            first = time.monotonic()
            straggler_end = self._last_end + min(self.straggler_s, 0.25 * self._last_secs)
            while True:
                n = sum(1 for k, _, _ in self._pending if k == key)
                # the window restarts with every arrival (up to straggler_s in all) ...
                deadline = min(max(first, self._last_submit) + self.window_s, first + max(self.window_s,
                                                                                          self.straggler_s))
                if n < self._last_size:  # ... and the last batch's callers are waited for
                    deadline = max(deadline, straggler_end)
                left = deadline - time.monotonic()
                if n >= self.max_batch or left <= 0:
                    break
                self._cv.wait(timeout=left)
            batch, rest = [], []
            for entry in self._pending:
                (batch if entry[0] == key and len(batch) < self.max_batch else rest).append(entry)
            self._pending = rest
            return key, batch

    def _run(self) -> None:
        while True:
            got = self._take()
            if got is None:
                with self._cv:
                    if not self._pending:  # idle: end; the next submit starts a worker
                        self._worker = None
                        return
                continue
            key, batch = got
            self.calls += 1
            self.sizes.append(len(batch))
            del self.sizes[:-HISTORY]
            t0 = time.monotonic()
            try:
                results = list(self.fn(key, [item for _, item, _ in batch]))
                self._batch_done(len(batch), t0)
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} requests")
                for (_, _, fut), r in zip(batch, results):
                    fut.set_result(r)
            except BaseException as e:  # noqa: BLE001 - handed to every waiting caller
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
