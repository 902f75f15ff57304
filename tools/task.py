"""The task contract: what every part of DARA reads and writes.

One budget-allocation problem as JSON::

    {"budget": B, "periods": T,
     "history": [{"allocation": [...T], "mroi": [...T]}, ...],      # or "return": [...T]
     "lower": [...]?, "upper": [...]?, "labels": [...]?, "max_change": x | [...T]?}

Validation lives here, once, because a hand-written task file is the first thing an
analyst gets wrong, and a plan computed from a misread file is worse than no plan.
So the contract is strict: booleans and strings are not numbers (``"periods": true`` and
``"budget": "300"`` are errors, not 1 and 300), every number is finite, and every error
names the field path (``history[1].mroi[2]``), the value as written and what is expected.
:func:`load_task` turns any violation into a :class:`TaskError` whose message is one line.

Observations: a record carries either ``mroi`` (marginal ROI per slot) or ``return``
(the revenue observed at that spend per slot), one kind across the whole history;
``tools.returns`` estimates MROI from return records.

Empty history: the model accepts it (simulated episodes may start from nothing, and an
Optimizer window can come from elsewhere), but :func:`load_task` rejects it by default,
because planning a real task needs evidence: a "plan" from no records would be the
uniform split presented as a recommendation.

``max_change`` limits each slot's change relative to the last history allocation
(``0.3`` = at most +-30 %; a list gives one limit per slot; a slot spending 0 stays at 0).
The limits must leave a feasible allocation, which is checked here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

__all__ = ["Task", "Record", "TaskError", "load_task"]


def _plain_number(v: Any) -> Any:
    """numpy scalars count as numbers (environments build tasks from arrays); bools do not."""
    if isinstance(v, (np.bool_, bool)):
        return v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


Number = Annotated[float, BeforeValidator(_plain_number), Strict()]
Finite = Annotated[float, BeforeValidator(_plain_number), Strict(), Field(allow_inf_nan=False)]
NonNegative = Annotated[float, BeforeValidator(_plain_number), Strict(), Field(allow_inf_nan=False, ge=0)]
#: Largest amount of money a task may hold: cents stay exact in floating point below
#: about 9e13, and the plan's arithmetic (sums, squares in the fits) needs headroom.
MAX_AMOUNT = 1e12
Amount = Annotated[float, BeforeValidator(_plain_number), Strict(), Field(allow_inf_nan=False, ge=0, le=MAX_AMOUNT)]
#: A budget more than this factor away from every record's total spend is taken for a
#: unit mismatch (a budget in thousands beside records in units) and refused.
UNIT_MISMATCH = 100.0
Count = Annotated[int, BeforeValidator(_plain_number), Strict(), Field(ge=1)]


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (``true``, ``"300"``, ``NaN``), never a numpy repr."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: float) -> str:
    return f"{float(x):.6g}"


def _contract_error(field: str, value: str | None, expected: str) -> PydanticCustomError:
    """A cross-field error that still names its field (pydantic only knows the model)."""
    template = "{field} = {value}: {expected}" if value is not None else "{field}: {expected}"
    return PydanticCustomError("task_contract", template,
                               {"field": field, "value": value, "expected": expected})


class Record(BaseModel):
    """One applied allocation and what was observed: marginal ROI or return, per slot."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    allocation: list[Amount] = Field(description="Spend per slot, in budget units.")
    mroi: list[Finite] | None = Field(default=None, description="Observed marginal ROI per slot.")
    return_: list[Amount] | None = Field(
        default=None, alias="return",
        description="Observed return (revenue) per slot at this spend; instead of mroi.")

    @model_validator(mode="after")
    def _check(self) -> "Record":
        if (self.mroi is None) == (self.return_ is None):
            raise _contract_error("", None, "expected exactly one of mroi or return")
        name, obs = ("mroi", self.mroi) if self.mroi is not None else ("return", self.return_)
        if len(obs) != len(self.allocation):
            raise _contract_error(name, None, f"has {len(obs)} entries but allocation has "
                                              f"{len(self.allocation)}")
        return self

    @property
    def kind(self) -> Literal["mroi", "return"]:
        return "mroi" if self.mroi is not None else "return"


class Task(BaseModel):
    """A budget-allocation task: budget B over T slots with a few-shot history."""

    model_config = ConfigDict(extra="forbid")

    budget: Annotated[Finite, Field(gt=0, le=MAX_AMOUNT, description="Total budget B to spend (> 0).")]
    periods: Annotated[Count, Field(description="Number of slots T (time periods or channels).")]
    history: list[Record] = Field(
        default_factory=list, description="Past allocations with their observed marginal ROI or return.")
    lower: list[Amount] | None = Field(default=None, description="Per-slot minimum spend.")
    upper: list[Annotated[Number, Field(ge=0)]] | None = Field(
        default=None, description="Per-slot maximum spend (may be infinite from Python).")
    labels: list[Annotated[str, Strict()]] | None = Field(default=None, description="Per-slot names.")
    max_change: NonNegative | list[NonNegative] | None = Field(
        default=None, description="Largest relative change per slot vs the last history allocation "
                                  "(0.3 = +-30%); one number or one per slot.")

    @field_validator("max_change", mode="before")
    @classmethod
    def _max_change_numbers(cls, v: Any) -> Any:
        # Checked by hand so a bad entry is named by index, not by pydantic's union branch.
        items = v if isinstance(v, list) else None if v is None else [v]
        for i, x in enumerate(items or []):
            x = _plain_number(x)
            where = f"[{i}]" if isinstance(v, list) else ""
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise _contract_error(where, show(x), "expected a number >= 0 (0.3 = +-30%)")
            if not math.isfinite(x) or x < 0:
                raise _contract_error(where, show(x), "expected a finite number >= 0 (0.3 = +-30%)")
        return [_plain_number(x) for x in v] if isinstance(v, list) else _plain_number(v)

    @model_validator(mode="after")
    def _check(self) -> "Task":
        T = self.periods
        kinds = {rec.kind for rec in self.history}
        if len(kinds) > 1:
            raise _contract_error("history", None, "mixes mroi and return records; use one kind")
        for k, rec in enumerate(self.history):
            if len(rec.allocation) != T:
                raise _contract_error(f"history[{k}].allocation", None,
                                      f"has {len(rec.allocation)} entries, expected periods = {T}")
        for name in ("lower", "upper", "labels"):
            vals = getattr(self, name)
            if vals is not None and len(vals) != T:
                raise _contract_error(name, None, f"has {len(vals)} entries, expected periods = {T}")
        self._check_labels()
        lo, hi = self.lower_array, self.upper_array
        bad = np.nonzero(lo > hi)[0]
        if bad.size:
            i = int(bad[0])
            raise _contract_error(f"lower[{i}]", _num(lo[i]), f"exceeds upper[{i}] = {_num(hi[i])}")
        self._check_sum(lo, hi, "bounds", "lower", "upper")
        if self.max_change is not None:
            self._check_max_change()
        return self

    def _check_labels(self) -> None:
        """Slot names appear in tables, reasons and warnings: each must say which slot."""
        seen: dict[str, int] = {}
        for i, name in enumerate(self.labels or []):
            if not name.strip():
                raise _contract_error(f"labels[{i}]", show(name), "expected a non-empty slot name")
            if name.strip() in seen:
                raise _contract_error(f"labels[{i}]", show(name), f"duplicates labels[{seen[name.strip()]}]: "
                                                                  "slot names must be distinct")
            seen[name.strip()] = i

    def _check_sum(self, lo: np.ndarray, hi: np.ndarray, what: str, lo_name: str, hi_name: str) -> None:
        tol = 1e-9 * max(1.0, self.budget)
        if lo.sum() > self.budget + tol:
            raise _contract_error(lo_name, None, f"{what} cannot sum to budget: their minimum total "
                                                 f"{lo.sum():.6g} > budget = {self.budget:.6g}")
        if hi.sum() < self.budget - tol:
            raise _contract_error(hi_name, None, f"{what} cannot sum to budget: their maximum total "
                                                 f"{hi.sum():.6g} < budget = {self.budget:.6g}")

    def _check_max_change(self) -> None:
        T = self.periods
        if isinstance(self.max_change, list) and len(self.max_change) != T:
            raise _contract_error("max_change", None,
                                  f"has {len(self.max_change)} entries, expected periods = {T}")
        if not self.history:
            raise _contract_error("max_change", show(self.max_change),
                                  "needs a history: limits are relative to the last history allocation")
        cur = np.asarray(self.history[-1].allocation, float)
        m = self.max_change_array
        lo, hi = self.limits()
        for t in np.nonzero(lo > hi + 1e-12 * max(1.0, self.budget))[0]:
            where = f"max_change[{t}]" if isinstance(self.max_change, list) else "max_change"
            raise _contract_error(
                where, _num(m[t]), f"{self.slot_labels[t]} may move only within "
                f"[{cur[t] * (1 - m[t]):.6g}, {cur[t] * (1 + m[t]):.6g}] of its current "
                f"{cur[t]:.6g}, outside its bounds [{self.lower_array[t]:.6g}, {self.upper_array[t]:.6g}]")
        self._check_sum(lo, hi, "max_change limits (with bounds)", "max_change", "max_change")

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
    def max_change_array(self) -> np.ndarray | None:
        """Relative change limit per slot, ``(T,)``, or None when unlimited."""
        if self.max_change is None:
            return None
        return np.broadcast_to(np.asarray(self.max_change, float), (self.periods,)).copy()

    def limits(self, current=None) -> tuple[np.ndarray, np.ndarray]:
        """Effective per-slot bounds: [lower, upper] intersected with the ``max_change`` window
        around ``current`` (default: the last history allocation). May be empty per slot
        (``lo > hi``) only for a ``current`` the task was not validated with."""
        lo, hi = self.lower_array, self.upper_array
        m = self.max_change_array
        if m is None:
            return lo, hi
        if current is None:
            if not self.history:
                return lo, hi
            current = self.history[-1].allocation
        cur = np.asarray(current, float)
        return np.maximum(lo, cur * (1 - m)), np.minimum(hi, cur * (1 + m))

    @property
    def observes(self) -> Literal["mroi", "return"] | None:
        """What the history records carry (None for an empty history)."""
        return self.history[0].kind if self.history else None

    @property
    def slot_labels(self) -> list[str]:
        return self.labels if self.labels is not None else [f"slot{t + 1}" for t in range(self.periods)]

    # ---- IO ---------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "Task":
        """Read a task JSON file; errors are one-line :class:`TaskError` naming file and field.

        An empty history is accepted here (callers such as ``dara propose`` may supply the
        records separately); use :func:`load_task` to require one.
        """
        return load_task(Path(path), require_history=False)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


# ---- strict loading with one-line errors --------------------------------------------------
class TaskError(ValueError):
    """A task-contract violation as one line: ``field = value: expected``.

    ``field`` is the path (``history[1].mroi[2]``), ``value`` the offending value as JSON
    text (or None when the error is about the field as a whole), ``expected`` what would be
    accepted. ``source`` names the file when the task came from one.
    """

    def __init__(self, field: str, value: str | None, expected: str, source: str | None = None):
        self.field, self.value, self.expected, self.source = field, value, expected, source
        where = f"{source}: " if source else ""
        body = f"{field} = {value}: {expected}" if value is not None else f"{field}: {expected}"
        super().__init__((where + body).replace("\n", " "))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_fields(loc: tuple) -> list[str]:
    model = Record if "history" in loc[:-1] else Task
    return [f.alias or name for name, f in model.model_fields.items()]


_EXPECTED = {
    "float_type": "expected a number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "finite_number": "expected a finite number",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "model_type": "expected an object",
    "dict_type": "expected an object",
    "model_attributes_type": "expected an object",
}


def _task_error(err: dict, n_errors: int, source: str | None) -> TaskError:
    """Turn pydantic's first error into one line (no URL, no numpy repr)."""
    kind, loc, ctx = err["type"], tuple(err["loc"]), err.get("ctx") or {}
    more = f" (and {n_errors - 1} more problem{'s' if n_errors > 2 else ''})" if n_errors > 1 else ""
    if kind == "task_contract":
        base, rel = _path(loc), ctx["field"]
        field = base + rel if (not rel or rel.startswith("[")) else (f"{base}.{rel}" if base else rel)
        return TaskError(field or "task", ctx.get("value"), ctx["expected"] + more, source)
    path = _path(loc) or "task"
    if kind == "missing":
        return TaskError(path, None, "required field is missing" + more, source)
    if kind == "extra_forbidden":
        return TaskError(path, None, f"unknown field (known: {', '.join(_known_fields(loc))})" + more, source)
    if kind == "less_than_equal":
        return TaskError(path, show(err.get("input")), f"expected a number <= {ctx.get('le'):,.0f}: amounts above "
                         "lose cents in floating point; write the task in thousands or millions" + more, source)
    if kind in ("greater_than", "greater_than_equal"):
        op, bound = (">", ctx.get("gt")) if kind == "greater_than" else (">=", ctx.get("ge"))
        what = "a whole number" if loc[-1:] == ("periods",) else "a number"
        value = err.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            what = "a finite number"
        expected = f"expected {what} {op} {show(bound)}"
    else:
        expected = _EXPECTED.get(kind) or err["msg"].replace("Input should be", "expected").replace(
            "Value error, ", "")
    return TaskError(path, show(err.get("input")), expected + more, source)


def load_task(source: Any, *, require_history: bool = True, check_units: bool = True) -> Task:
    """Read a task from a :class:`Task`, a dict, a JSON string or a file path.

    Every problem raises :class:`TaskError` (a ``ValueError``) with a one-line message.
    ``require_history`` (default) rejects an empty history: planning needs records.
    ``check_units`` (default) rejects a budget more than ``UNIT_MISMATCH`` times away from
    every record's total (records validated on their own, e.g. a window file, skip it).
    """
    name = None
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        name = str(path)
        if path.is_dir():
            raise TaskError("task", json.dumps(name), "is a directory, expected a JSON task file")
        try:
            source = path.read_text()
        except FileNotFoundError:
            raise TaskError("task", json.dumps(name), "file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise TaskError("task", json.dumps(name), f"cannot be read ({type(e).__name__})") from None
    if isinstance(source, (str, bytes)):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as e:
            raise TaskError("task", None, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                            name) from None
    if not isinstance(source, (Task, dict)):
        raise TaskError("task", show(source), "expected a JSON object", name)
    try:
        task = source if isinstance(source, Task) else Task.model_validate(source)
    except ValidationError as e:
        errs = e.errors()
        raise _task_error(errs[0], len(errs), name) from None
    if require_history and not task.history:
        raise TaskError("history", "[]", "expected at least one record: a plan needs evidence", name)
    if check_units:
        _check_units(task, name)
    return task


def _check_units(task: Task, source: str | None) -> None:
    """Refuse a budget more than ``UNIT_MISMATCH`` times away from every record's total
    spend: such a task is almost always written in two units (budget in thousands, records
    in units), and planned as written it would "cut" every channel by 99.9%."""
    totals = [sum(r.allocation) for r in task.history]
    totals = [t for t in totals if t > 0]
    if not totals:
        return
    ratios = [task.budget / t for t in totals]
    if all(r > UNIT_MISMATCH for r in ratios) or all(r < 1 / UNIT_MISMATCH for r in ratios):
        from tools.money import format_amount, format_ratio

        lo, hi = format_amount(min(totals)), format_amount(max(totals))
        span = lo if lo == hi else f"{lo} to {hi}"

        raise TaskError("budget", show(task.budget),
                        f"is {format_ratio(min(ratios, key=lambda r: abs(math.log(r))))} times the records' total spend "
                        f"({span} per record): the budget and the records look to be in different units "
                        "(e.g. thousands and units); write them in the same unit", source)
