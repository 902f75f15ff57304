"""``dara allocate --plot FILE``: each slot's fitted response curve, current and recommended.

The curve is the one the plan report's numbers come from: the per-slot local response
model (``tools.local_response``, fitted by ``tools.self_check.fit_evidence``), whose MROI
line integrates to the change in return relative to current spend. It is drawn over
``[0, 1.25 x the largest spend seen]`` with the range of spends in the records shaded:
outside it the curve is an extrapolation. Current spend is a circle at zero change,
the recommended spend a star at its predicted change. A slot whose spend never varied in
the records has no slope estimate (the fit borrows a default): its curve is dashed, and
when the plan moves it its title says the MROI at the plan is not estimated, as the plan
report leaves its prediction out (``Evidence.unvaried_moves``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tools.money import format_amount, format_ratio, money_decimals
from tools.self_check import fit_evidence
from tools.task import Task

FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
"""File types ``--plot`` writes (chosen by the extension)."""


def plot_plan(task: Task, plan, current, path: str | Path, title: str | None = None) -> Path:
    """Draw the response curves of ``task``'s slots with ``current`` and ``plan`` marked."""
    from graph.commands.summaries import _pyplot

    fig = plan_figure(task, plan, current, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plan_figure(task: Task, plan, current, title: str | None = None):
    """The figure :func:`plot_plan` saves (one panel per slot)."""
    from graph.commands.summaries import _pyplot

    ev = fit_evidence(task, current)
    model, mtask = ev.model, ev.task
    cur = np.asarray(ev.current, float)
    b = np.asarray(plan, float)
    alloc = np.array([r.allocation for r in mtask.history], float)
    T = task.periods
    top = np.maximum.reduce([alloc.max(0), cur, b]) * 1.25
    top = np.where(top > 0, top, task.unit)
    grid = np.linspace(0.0, 1.0, 121)[:, None] * top[None, :]
    curves = model.gain(grid, cur)
    at_plan = model.gain(b, cur)
    cols = min(T, 4 if T <= 12 else 5)
    rows = math.ceil(T / cols)
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    commas = FuncFormatter(lambda x, _pos: f"{x:,.0f}" if abs(x) >= 100 or x == 0 else f"{x:.3g}")
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    labels = task.slot_labels
    dec = money_decimals(task.budget)
    guessed = ev.unvaried_moves(b)  # moved without a slope: no MROI predicted, as in the plan report
    for t in range(T):
        ax = axes[t // cols][t % cols]
        ax.axvspan(alloc[:, t].min(), max(alloc[:, t].max(), alloc[:, t].min() + 1e-9 * top[t]),
                   color="0.9", label="spend seen")
        fitted = bool(model.varied[t])
        ax.plot(grid[:, t], curves[:, t], color="C0" if fitted else "0.5", ls="-" if fitted else "--",
                label="fitted response" if fitted else "default slope (spend never varied)")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.plot([cur[t]], [0.0], "o", color="C1", label="current")
        ax.plot([b[t]], [at_plan[t]], "*", ms=11, color="C2", label="recommended",
                **({} if fitted else {"markerfacecolor": "none"}))
        after = "not estimated" if guessed[t] else format_ratio(model.mroi(b)[t], 2)
        ax.set_title(f"{labels[t]}: {format_amount(cur[t], dec)} -> {format_amount(b[t], dec)}\n"
                     f"MROI {format_ratio(model.mroi(cur)[t], 2)} -> {after}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(commas)
        ax.yaxis.set_major_formatter(commas)
        ax.grid(alpha=0.3)
    for k in range(T, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=6, loc="best")
    if not model.varied.all():
        next(a for a, v in zip(axes.flat, model.varied) if not v).legend(fontsize=6, loc="best")
    fig.supxlabel("spend", fontsize=9)
    fig.supylabel("return vs current spend", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
