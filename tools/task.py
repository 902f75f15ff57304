"""The task contract: what every part of DARA reads and writes.

One budget-allocation problem as JSON:
``{"budget": B, "periods": T, "history": [{"allocation": [...T], "mroi": [...T]}, ...],
"lower": [...]?, "upper": [...]?, "labels": [...]?}``.

Validation lives here, once, and names the bad field and value so a user fixing a
hand-written task file knows exactly what to change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _check_finite(name: str, values: list[float]) -> None:
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{name}[{i}] = {v!r} is not a finite number")


class Record(BaseModel):
    """One applied allocation and the marginal ROI observed per slot."""

    model_config = ConfigDict(extra="forbid")

    allocation: list[float] = Field(description="Spend per slot, in budget units.")
    mroi: list[float] = Field(description="Observed marginal ROI per slot.")

    @model_validator(mode="after")
    def _check(self) -> "Record":
        _check_finite("allocation", self.allocation)
        _check_finite("mroi", self.mroi)
        if len(self.allocation) != len(self.mroi):
            raise ValueError(
                f"allocation has {len(self.allocation)} entries but mroi has {len(self.mroi)}"
            )
        for i, v in enumerate(self.allocation):
            if v < 0:
                raise ValueError(f"allocation[{i}] = {v!r} is negative")
        return self


class Task(BaseModel):
    """A budget-allocation task: budget B over T slots with a few-shot history."""

    model_config = ConfigDict(extra="forbid")

    budget: Annotated[float, Field(description="Total budget B to spend (> 0).")]
    periods: Annotated[int, Field(description="Number of slots T (time periods or channels).")]
    history: list[Record] = Field(
        default_factory=list, description="Past allocations with their observed marginal ROI."
    )
    lower: list[float] | None = Field(default=None, description="Per-slot minimum spend.")
    upper: list[float] | None = Field(default=None, description="Per-slot maximum spend.")
    labels: list[str] | None = Field(default=None, description="Per-slot names.")

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"budget must be a finite positive number, got {v!r}")
        return v

    @field_validator("periods")
    @classmethod
    def _periods(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"periods must be >= 1, got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "Task":
        T = self.periods
        for k, rec in enumerate(self.history):
            if len(rec.allocation) != T:
                raise ValueError(
                    f"history[{k}].allocation has {len(rec.allocation)} entries, expected periods={T}"
                )
        for name in ("lower", "upper", "labels"):
            vals = getattr(self, name)
            if vals is not None and len(vals) != T:
                raise ValueError(f"{name} has {len(vals)} entries, expected periods={T}")
        if self.lower is not None:
            _check_finite("lower", self.lower)
            for i, v in enumerate(self.lower):
                if v < 0:
                    raise ValueError(f"lower[{i}] = {v!r} is negative")
        if self.upper is not None:
            for i, v in enumerate(self.upper):
                if math.isnan(v) or v < 0:
                    raise ValueError(f"upper[{i}] = {v!r} must be a non-negative number")
        lo, hi = self.lower_array, self.upper_array
        bad = np.nonzero(lo > hi)[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"lower[{i}] = {lo[i]!r} exceeds upper[{i}] = {hi[i]!r}")
        tol = 1e-9 * max(1.0, self.budget)
        if lo.sum() > self.budget + tol:
            raise ValueError(
                f"bounds cannot sum to budget: sum(lower) = {lo.sum():.6g} > budget = {self.budget:.6g}"
            )
        if hi.sum() < self.budget - tol:
            raise ValueError(
                f"bounds cannot sum to budget: sum(upper) = {hi.sum():.6g} < budget = {self.budget:.6g}"
            )
        return self

    # ---- derived values -------------------------------------------------------------
    @property
    def unit(self) -> float:
        """The uniform share B/T: prompts show allocations as multiples of it."""
        return self.budget / self.periods

    @property
    def lower_array(self) -> np.ndarray:
        return np.zeros(self.periods) if self.lower is None else np.asarray(self.lower, float)

    @property
    def upper_array(self) -> np.ndarray:
        if self.upper is None:
            return np.full(self.periods, np.inf)
        return np.asarray(self.upper, float)

    @property
    def slot_labels(self) -> list[str]:
        return self.labels if self.labels is not None else [f"slot{t + 1}" for t in range(self.periods)]

    # ---- IO ---------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "Task":
        """Read a task JSON file; errors name the file and the bad field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"task file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.model_validate(data)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)
