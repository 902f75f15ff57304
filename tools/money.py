"""Numbers as an analyst reads them: money to the cent, summing exactly to the budget.

A plan printed as ``1.064e+05`` or ``19000.000000000004`` cannot be pasted into a media
plan, and a table whose rows do not add up to the budget invites the question of where
the difference went. So every amount shown goes through here: comma thousands
separators, no exponent notation, and largest-remainder rounding so the cents of a plan
add up to the budget's cents exactly.

Cents suit a budget written in currency units. A budget written in millions (``0.25``)
would be quantised to 4% of itself by cents, so :func:`money_decimals` gives amounts
more decimals the smaller the budget: 2 from a budget of 100 up, one more per factor of
ten below (a budget of 6 gets 4, of 0.25 gets 5), so a shown amount is always exact to
0.01% of the budget.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["money_decimals", "round_money", "format_money", "format_amount", "format_ratio"]

#: Most decimals an amount gets (a budget of 10^-6 or less).
MAX_DECIMALS = 10


def money_decimals(budget: float) -> int:
    """Decimal places that show every amount of a plan over ``budget`` to 0.01% of it:
    2 (cents) for budgets of 100 or more, one more per factor of ten below."""
    if not (math.isfinite(budget) and budget > 0):
        return 2
    return int(min(MAX_DECIMALS, 2 + max(0, math.ceil(math.log10(100.0 / budget) - 1e-9))))


def round_money(values: Sequence[float], total: float | None = None, decimals: int = 2) -> list[float]:
    """Round ``values`` to cents (``decimals`` places) so they sum to ``total`` (default:
    their own sum) to the cent.

    Largest-remainder (Hamilton) rounding: floor every value in integer cents, then give
    the missing cents to the largest fractional parts. Each value moves by less than one
    cent (for totals within a cent of the values' sum); results are clean two-decimal
    floats (``19000.0``, never ``19000.000000000004``).
    """
    scale = 10 ** int(decimals)
    x = np.asarray(values, float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a 1-D list of finite numbers, got {list(np.ravel(x))[:6]}")
    target = round((float(x.sum()) if total is None else float(total)) * scale)
    cents = np.round(x * scale, 6)  # kill float noise before flooring (0.29 * 100 = 28.999...)
    floors = np.floor(cents)
    base = [int(c) for c in floors]  # Python ints: no int64 overflow at many decimals
    missing = int(target - sum(base))
    if missing:
        order = np.argsort(-(cents - floors), kind="stable")
        step = 1 if missing > 0 else -1
        if missing < 0:
            order = order[::-1]
        for k in range(abs(missing)):
            base[int(order[k % x.size])] += step
    return [c / scale for c in base]


def format_money(x: float, decimals: int = 2) -> str:
    """``19000`` -> ``"19,000.00"`` (``decimals=0``: ``"19,000"``); negatives keep their sign."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:,.{int(decimals)}f}"


def format_amount(x: float, decimals: int = 2) -> str:
    """Money for sentences: whole amounts without cents (``19,000``), others to the cent
    (``2.50``, ``1.44``; ``decimals`` places, trailing zeros kept)."""
    if not math.isfinite(x):
        return str(x)
    d = int(decimals)
    text = f"{x:,.{d}f}"
    if d and text.endswith("." + "0" * d):
        text = text[:-(d + 1)]
    return "0" if text == "-0" else text


def format_ratio(x: float | None, digits: int = 3) -> str:
    """A ratio such as MROI with ``digits`` significant digits and no exponent: ``2.6``, ``0.00123``."""
    if x is None or not math.isfinite(x):
        return "n/a" if x is None else str(x)
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return np.format_float_positional(x, precision=digits, fractional=False, trim="-")
