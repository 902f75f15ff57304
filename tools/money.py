"""Numbers as an analyst reads them: money to the cent, summing exactly to the budget.

A plan printed as ``1.064e+05`` or ``19000.000000000004`` cannot be pasted into a media
plan, and a table whose rows do not add up to the budget invites the question of where
the difference went. So every amount shown goes through here: comma thousands
separators, no exponent notation, and largest-remainder rounding so the cents of a plan
add up to the budget's cents exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["round_cents", "format_money", "format_amount", "format_ratio"]


def round_cents(values: Sequence[float], total: float | None = None) -> list[float]:
    """Round ``values`` to cents so they sum to ``total`` (default: their own sum) to the cent.

    Largest-remainder (Hamilton) rounding: floor every value in integer cents, then give
    the missing cents to the largest fractional parts. Each value moves by less than one
    cent (for totals within a cent of the values' sum); results are clean two-decimal
    floats (``19000.0``, never ``19000.000000000004``).
    """
    x = np.asarray(values, float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a 1-D list of finite numbers, got {list(np.ravel(x))[:6]}")
    target = round((float(x.sum()) if total is None else float(total)) * 100)
    cents = np.round(x * 100, 6)  # kill float noise before flooring (0.29 * 100 = 28.999...)
    base = np.floor(cents).astype(np.int64)
    missing = int(target - base.sum())
    if missing:
        order = np.argsort(-(cents - base), kind="stable")
        step = 1 if missing > 0 else -1
        if missing < 0:
            order = order[::-1]
        for k in range(abs(missing)):
            base[order[k % x.size]] += step
    return [int(c) / 100 for c in base]


def format_money(x: float, cents: bool = True) -> str:
    """``19000`` -> ``"19,000.00"`` (``cents=False``: ``"19,000"``); negatives keep their sign."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:,.2f}" if cents else f"{round(x):,}"


def format_amount(x: float) -> str:
    """Money for sentences: whole amounts without cents (``19,000``), others to the cent
    (``2.50``, ``1.44``)."""
    if not math.isfinite(x):
        return str(x)
    text = f"{x:,.2f}"
    text = text[:-3] if text.endswith(".00") else text
    return "0" if text == "-0" else text


def format_ratio(x: float | None, digits: int = 3) -> str:
    """A ratio such as MROI with ``digits`` significant digits and no exponent: ``2.6``, ``0.00123``."""
    if x is None or not math.isfinite(x):
        return "n/a" if x is None else str(x)
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return np.format_float_positional(x, precision=digits, fractional=False, trim="-")
