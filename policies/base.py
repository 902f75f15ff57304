"""The one interface every decision maker implements: LLM policies and numeric baselines.

A decision is asked for with a :class:`DecisionRequest` (the role, the task, the window of
records the role may see) and answered with a :class:`Decision` (a proposed allocation in
task units, or ``None`` with a typed error, plus the raw text a model wrote). Proposals are
*not* yet feasible: the budget tool (``tools.budget``) projects them. Policies work on
lists of requests so backends can batch generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def current(self) -> list[float]:
        """The allocation the next proposal starts from (last record of the window)."""
        return list(self.window[-1].allocation)


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
