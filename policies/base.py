"""The one interface every decision maker implements: LLM policies and numeric baselines.

A decision is asked for with a :class:`DecisionRequest` (the role, the task, the window of
records the role may see) and answered with a :class:`Decision` (a proposed allocation in
task units, or ``None`` with a typed error, plus the raw text a model wrote). Proposals are
*not* yet feasible: the budget tool (``tools.budget``) projects them. Policies work on
lists of requests so backends can batch generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

from tools.task import Record, Task

Role = Literal["reasoner", "optimizer"]


@dataclass
class DecisionRequest:
    """What a policy sees for one decision.

    - reasoner: ``window`` is the task's few-shot history (``task.history``).
    - optimizer: ``window`` is the sliding window of the last ``w`` applied records
      (oldest first); the last record's allocation is the current plan.
    """

    role: Role
    task: Task
    window: list[Record]

    @cached_property
    def current(self) -> list[float]:
        """The allocation the next proposal starts from: the last record of the window,
        at this task's budget.

        A past period may have spent more or less than ``B`` (the shipped real logs: 0.02
        to 2.4 times it). A signed change added to such a row leaves the budget tool to
        shift every slot by the same amount, which moves money the wrong way, so a row
        whose total is off is rescaled to ``B`` (its mix kept) and projected onto the
        task's limits. A feasible row (every applied round) is returned unchanged.
        """
        import numpy as np

        from tools.budget import project

        row = np.asarray(self.window[-1].allocation, float)
        B = float(self.task.budget)
        tol = 1e-9 * max(1.0, B)
        lo, hi = self.task.limits(row)
        if abs(row.sum() - B) <= tol and np.all(row >= lo - tol) and np.all(row <= hi + tol):
            return row.tolist()
        total = row.sum()
        scaled = row * (B / total) if total > 0 else np.full(row.size, B / row.size)
        try:
            return project(scaled, B, lo, hi).tolist()
        except ValueError:  # a max_change window around this row cannot hold B
            return project(scaled, B, self.task.lower_array, self.task.upper_array).tolist()


@dataclass
class Decision:
    """A policy's answer: ``allocation`` in task units or ``None`` when unparseable."""

    allocation: list[float] | None
    text: str = ""
    error: str | None = None
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Anything that turns decision requests into decisions (batched)."""

    name: str

    def propose(self, requests: list[DecisionRequest]) -> list[Decision]: ...
