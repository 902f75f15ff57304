"""langchain-core tools over the DARA world, for copilots and LangGraph tool nodes.

Three tools, each with a pydantic argument schema and JSON-able results:

- ``query_mroi`` — apply an allocation to an environment and return the observed
  marginal ROI per slot (with the environment's feedback noise);
- ``enforce_budget`` — make a proposal feasible for a task and say what changed and why;
- ``oracle_allocation`` — the optimal allocation of an environment (hidden from agents in
  evaluation; useful to analysts and tests).

An environment is named either by the ``EnvBatch`` given to ``make_tools(env)`` plus a
row ``index``, or by a JSON ``spec`` (``EnvBatch.spec``) plus ``index``, so a tool call
that crosses a process or a checkpoint boundary still reaches the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from tools.budget import enforce_budget as _enforce_budget
from tools.envs import EnvBatch
from tools.envs.cache import cached_env_from_spec
from tools.oracle import oracle_allocation as _oracle
from tools.task import load_task

__all__ = ["make_tools", "QueryMROIArgs", "EnforceBudgetArgs", "OracleArgs"]


class QueryMROIArgs(BaseModel):
    allocation: list[float] = Field(description="Spend per slot (length = periods); should sum to the budget.")
    index: int = Field(0, ge=0, description="Row of the environment batch.")
    spec: dict[str, Any] | None = Field(
        None, description="EnvBatch.spec of the environment batch (omit when the tool was built with an env)."
    )
    seed: int | None = Field(None, description="Seed for the feedback noise (None: fresh randomness).")


class EnforceBudgetArgs(BaseModel):
    proposal: list[float] | None = Field(description="Proposed allocation (None if the model output did not parse).")
    task: dict[str, Any] = Field(description="The task JSON: budget, periods, history, lower?, upper?, labels?.")
    fallback: list[float] | None = Field(None, description="Allocation to use if the proposal is unusable.")


class OracleArgs(BaseModel):
    index: int = Field(0, ge=0, description="Row of the environment batch.")
    spec: dict[str, Any] | None = Field(
        None, description="EnvBatch.spec of the environment batch (omit when the tool was built with an env)."
    )


class _EnvResolver:
    """Find environment row ``index`` from the bound batch or a spec (specs go through the
    per-process environment cache shared with the graph's simulator feedback)."""

    def __init__(self, env: EnvBatch | None) -> None:
        self.env = env

    def __call__(self, spec: dict | None, index: int) -> EnvBatch:
        if spec is None:
            if self.env is None:
                raise ValueError("no environment: pass spec= (an EnvBatch.spec) or build the tools with make_tools(env)")
            if not 0 <= index < self.env.n:
                raise ValueError(f"index={index} out of range for an environment batch of n={self.env.n}")
            return self.env.subset([index])
        try:
            return cached_env_from_spec(spec, index)
        except IndexError as e:
            raise ValueError(str(e)) from None


def make_tools(env: EnvBatch | None = None) -> list[BaseTool]:
    """``[query_mroi, enforce_budget, oracle_allocation]`` bound to ``env`` (optional)."""
    resolve = _EnvResolver(env)

    def query_mroi(allocation: list[float], index: int = 0, spec: dict | None = None, seed: int | None = None) -> dict:
        e = resolve(spec, index)
        b = np.asarray(allocation, dtype=float)
        if b.shape != (e.periods,):
            raise ValueError(f"allocation has {b.size} values, expected periods={e.periods}")
        r = e.observe(b[None, :], np.random.default_rng(seed))[0]
        return {
            "mroi": [float(x) for x in r],
            "labels": list(e.labels),
            "allocation": [float(x) for x in b],
            "budget": float(e.budget[0]),
            "sum_allocation": float(b.sum()),
        }

    def enforce_budget(proposal: list[float] | None, task: dict, fallback: list[float] | None = None) -> dict:
        t = load_task(task, require_history=False)  # one-line errors, units checked (as the graph node)
        return _enforce_budget(proposal, t, fallback).model_dump()

    def oracle_allocation(index: int = 0, spec: dict | None = None) -> dict:
        e = resolve(spec, index)
        b = _oracle(e)
        r = e.mroi(b)[0]
        return {
            "allocation": [float(x) for x in b[0]],
            "value": float(e.value(b)[0]),
            "mroi": [float(x) for x in r],
            "labels": list(e.labels),
        }

    return [
        StructuredTool.from_function(
            query_mroi,
            name="query_mroi",
            description="Apply an allocation to the environment and return the observed marginal ROI per slot.",
            args_schema=QueryMROIArgs,
        ),
        StructuredTool.from_function(
            enforce_budget,
            name="enforce_budget",
            description=(
                "Make a proposed allocation feasible (bounds, sum = budget) via the nearest feasible "
                "allocation; returns the allocation and the reasons for every change."
            ),
            args_schema=EnforceBudgetArgs,
        ),
        StructuredTool.from_function(
            oracle_allocation,
            name="oracle_allocation",
            description="The value-maximising allocation of the environment (water-filling on marginal ROI).",
            args_schema=OracleArgs,
        ),
    ]
