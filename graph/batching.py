"""Gather concurrent single decisions into one batched ``Policy.propose`` call.

``dara run`` runs one graph thread per episode; each ``reason``/``optimize`` node asks its
policy for ONE decision. Wrapping the policy in :class:`CoalescingPolicy` turns the
decisions that are in flight at the same moment into one ``propose([...])`` call, which
an LLM policy sends to its backend as one batched generation. This works for every
backend (local, vLLM, OpenAI-compatible) because it sits above them.

A daemon worker takes the oldest pending request, waits up to ``window_s`` for more (or
until ``max_batch`` are pending), runs the batch and hands each caller its decision.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from policies.base import Decision, DecisionRequest, Policy


class CoalescingPolicy:
    """A :class:`Policy` wrapper that batches concurrent ``propose`` calls."""

    def __init__(self, policy: Policy, max_batch: int = 16, window_s: float = 0.05):
        self.policy = policy
        self.name = getattr(policy, "name", "policy")
        self.max_batch = max(1, int(max_batch))
        self.window_s = max(0.0, float(window_s))
        self._cv = threading.Condition()
        self._pending: list[tuple[DecisionRequest, Future]] = []
        self._worker: threading.Thread | None = None
        self.calls = 0  # batched propose calls made
        self.sizes: list[int] = []

    def propose(self, requests: list[DecisionRequest]) -> list[Decision]:
        requests = list(requests)
        if len(requests) != 1:
            return self.policy.propose(requests)
        fut: Future = Future()
        with self._cv:
            self._pending.append((requests[0], fut))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="dara-policy-batcher", daemon=True)
                self._worker.start()
            self._cv.notify_all()
        return [fut.result()]

    def _take(self):
        with self._cv:
            while not self._pending:
                if not self._cv.wait(timeout=10.0) and not self._pending:
                    self._worker = None
                    return None
            deadline = time.monotonic() + self.window_s
            while len(self._pending) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(timeout=left)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            return batch

    def _run(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            self.calls += 1
            self.sizes.append(len(batch))
            try:
                out = self.policy.propose([r for r, _ in batch])
                if len(out) != len(batch):
                    raise RuntimeError(f"policy {self.name!r} returned {len(out)} decisions for {len(batch)} requests")
                for (_, fut), d in zip(batch, out):
                    fut.set_result(d)
            except BaseException as e:  # noqa: BLE001 - every waiting caller gets it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
