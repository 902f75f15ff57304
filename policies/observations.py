"""Tool-computed observations a prompt shows, in the prompt's scale-free units.

The prompt encodings (:mod:`policies.prompts`) add these lines to what the records show:
``fall=`` (``delta-slope``) and ``hint=`` (``delta-hint``). Both come from the numeric
tools a user can also run as baselines (:mod:`policies.baselines`), so a model trained on
them reads the same numbers at inference. No torch here.
"""

from __future__ import annotations

import math
from typing import Sequence

from tools.task import Record, Task


def mroi_scale(window: Sequence[Record]) -> float:
    """The MROI normaliser of a window: the largest ``|mroi|`` shown (1 if all are 0)."""
    m = max((abs(v) for r in window for v in r.mroi), default=0.0)
    return m if m > 0 and math.isfinite(m) else 1.0


def _window_arrays(window: Sequence[Record]):
    """``(1, w, T)`` allocation and MROI arrays of a window: the baselines' batch shape."""
    import numpy as np

    return (np.array([[r.allocation for r in window]], float),
            np.array([[r.mroi for r in window]], float))


def window_fall(window: Sequence[Record], unit: float, scale: float) -> list[float]:
    """Per-slot fall of normalised MROI per unit of B/T over ``window`` (``delta-slope``).

    ``-slope`` from :func:`tools.local_response.local_slopes` (the ``local-model``
    teacher's least-squares fit, with its fallbacks for slots whose spend did not vary),
    rescaled to the prompt's units: spend in B/T, MROI divided by ``scale``.
    """
    import numpy as np

    from tools.local_response import local_slopes

    wa, wm = _window_arrays(window)
    s = local_slopes(wa, wm, np.array([unit]))[0]
    return [max(0.0, float(-x) * unit / scale) for x in s]


def window_hint(window: Sequence[Record], task: Task, current: Sequence[float]) -> list[float]:
    """The ``local-model`` plan for ``window`` minus ``current`` (the plan a change starts
    from, :attr:`policies.base.DecisionRequest.current`), in units of B/T (``delta-hint``):
    the same numeric tool a user can run as a baseline."""
    import numpy as np

    from policies.baselines import local_model

    wa, wm = _window_arrays(window)
    plan = local_model(wa, wm, np.array([task.budget]), task.lower_array[None], task.upper_array[None])[0]
    return [float(p - c) / task.unit for p, c in zip(plan, current)]


HINT_COPY_TOL = 0.011
"""Largest per-slot gap (units of B/T) at which an answer counts as the shown hint: the
prompt prints the hint to two decimals, so a copy can differ from it by rounding only."""


def shown_hint(request) -> list[float]:
    """The ``hint=`` a ``delta-hint`` prompt shows for ``request``, to its two decimals."""
    return [round(h, 2) for h in window_hint(request.window, request.task, request.current)]


def copies_hint(request, decision) -> bool:
    """Whether a parsed ``delta-hint`` answer (``decision.meta["answer_units"]``) is the
    prompt's hint, to within :data:`HINT_COPY_TOL` in every slot."""
    ans = (decision.meta or {}).get("answer_units")
    hint = shown_hint(request)
    return ans is not None and len(ans) == len(hint) and all(abs(a - h) <= HINT_COPY_TOL for a, h in zip(ans, hint))


def _aligned(a: Sequence[float], h: Sequence[float], weight) -> int:
    """Weighted longest common subsequence of ``a`` and ``h`` (entries equal within
    :data:`HINT_COPY_TOL`): the most entries of ``a`` that copy ``h`` in order."""
    prev = [0] * (len(h) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(h):
            cur.append(max(prev[j] + weight(y), prev[j + 1], cur[j]) if abs(x - y) <= HINT_COPY_TOL
                       else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def misaligned_copy(answer: Sequence[float], hint: Sequence[float]) -> bool:
    """Whether ``answer`` is the hint copied out of step: an entry skipped (or repeated)
    and the rest written a slot off, so slot t gets slot t+1's change (two skips count too).

    A small model copying a long vector slips this way (the shipped Optimizer in 6-7% of
    its answers at T = 10 and 16 in the matrix, almost never at T <= 6: docs/results.md
    §8); the plan it makes moves each slot by its neighbour's amount, which no reading of
    the records supports. ``benchmarks/hint_agreement.py`` counts these slips. Counted: the answer copies at least
    two more of the hint's non-zero entries in order (a common subsequence) than in
    place, and all but two entries in order. Zeros do not count as evidence: a hold
    answer beside a hint with zeros is a different answer, not a slip."""
    if len(answer) != len(hint) or len(hint) < 3:
        return False
    in_place = [abs(x - y) <= HINT_COPY_TOL for x, y in zip(answer, hint)]
    if all(in_place):
        return False
    nonzero = lambda y: 1 if abs(y) > HINT_COPY_TOL else 0  # noqa: E731
    placed_nz = sum(ok and nonzero(y) for ok, y in zip(in_place, hint))
    return (_aligned(answer, hint, lambda y: 1) >= len(hint) - 2
            and _aligned(answer, hint, nonzero) >= placed_nz + 2)
