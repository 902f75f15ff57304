"""Per-round statistics, tables and plots of ``dara run`` and ``dara bench``, in one place.

Round k is the allocation applied after the k-th decision. Two views of the same rounds:

- *episodes* (``dara run``): :func:`round_summary` turns ``episodes.jsonl`` records into
  one row per round (mean/median/quartiles of regret, MROI variance, dispersion,
  fallback and carried rates), written by :func:`write_round_summary` (``summary.csv``,
  ``rounds.png``) and printed by :func:`format_round_table`;
- *methods* (``dara bench``): :func:`method_summary` turns ``{metric: (K, N)}`` arrays
  (rounds x environments, from :func:`metric_arrays` or the numeric rows) into means and
  95% intervals per round, printed by :func:`markdown_table` and drawn by
  :func:`plot_methods`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

import numpy as np

METRICS = ("regret", "mroi_var", "dispersion")
FROM_POLICY = ("reasoner", "optimizer")
"""Round sources whose plan is the deciding policy's own answer."""


def is_fallback(round_: dict) -> bool:
    """A decision whose plan did not come from the policy's answer: a parse or backend
    error (the graph held the previous plan, source ``fallback``), a round marked
    ``no_plan``, or a plan replaced by another policy (any other source, e.g. the
    self-check's replacement). ``carried`` rounds are no decisions (never a fallback)."""
    src = round_.get("source")
    if src == "carried":
        return False
    return bool(round_.get("no_plan")) or src not in FROM_POLICY


def is_resampled(round_: dict) -> bool:
    """A decision whose first answer the decoder rejected and a later sample
    (``context.resample``) then decoded: the plan is the policy's, not a fallback."""
    return round_.get("error") is None and bool(round_.get("rejected_answers")) and not is_fallback(round_)


def fallback_counts(records: Iterable[dict]) -> tuple[int, int, int]:
    """(fallback decisions, resampled decisions, decisions) over finished episodes
    (``carried`` rounds excluded)."""
    fell = resampled = total = 0
    for r in records:
        for rd in r.get("rounds") or []:
            if rd.get("source") == "carried":
                continue
            total += 1
            fell += is_fallback(rd)
            resampled += is_resampled(rd)
    return fell, resampled, total


# ---- episodes (dara run) -------------------------------------------------------------------
def round_summary(records: Iterable[dict]) -> list[dict]:
    """One row per round over the finished episodes (rounds without metrics are skipped)."""
    ok = [r for r in records if r.get("status", "ok") == "ok" and r.get("rounds")]
    if not ok:
        return []
    K = max(len(r["rounds"]) for r in ok)
    rows = []
    for k in range(K):
        have = [r for r in ok if len(r["rounds"]) > k]
        reg = np.array([r["regret"][k] for r in have if r["regret"][k] is not None], float)
        var = np.array([r["mroi_var"][k] for r in have if r["mroi_var"][k] is not None], float)
        dis = np.array([r["dispersion"][k] for r in have if r["dispersion"][k] is not None], float)
        src = [r["rounds"][k]["source"] for r in have]
        rows.append({
            "round": k + 1,
            "episodes": len(have),
            "regret_mean": float(reg.mean()) if reg.size else "",
            "regret_median": float(np.median(reg)) if reg.size else "",
            "regret_p25": float(np.percentile(reg, 25)) if reg.size else "",
            "regret_p75": float(np.percentile(reg, 75)) if reg.size else "",
            "mroi_var_mean": float(var.mean()) if var.size else "",
            "dispersion_mean": float(dis.mean()) if dis.size else "",
            "fallback_rate": sum(is_fallback(r["rounds"][k]) for r in have) / len(src),
            "carried_rate": src.count("carried") / len(src),
        })
    return rows


def write_round_summary(rows: list[dict], out: Path) -> None:
    """``summary.csv`` and ``rounds.png`` (regret per round: mean, median, 25-75% band)."""
    if not rows:
        return
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sel = [r for r in rows if r["regret_mean"] != ""]
    if not sel:
        return
    plt = _pyplot()
    ks = [r["round"] for r in sel]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ks, [100 * r["regret_mean"] for r in sel], "o-", label="mean")
    ax.plot(ks, [100 * r["regret_median"] for r in sel], "s--", label="median")
    ax.fill_between(ks, [100 * r["regret_p25"] for r in sel], [100 * r["regret_p75"] for r in sel],
                    alpha=0.2, label="25-75%")
    ax.set_xlabel("round")
    ax.set_ylabel("value regret (%)")
    ax.set_xticks(ks)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=120)
    plt.close(fig)


def format_round_table(rows: list[dict]) -> str:
    lines = ["round  episodes  regret%(mean)  regret%(median)  mroi_var    fallback  carried"]
    for r in rows:
        reg = f"{100 * r['regret_mean']:13.3f}" if r["regret_mean"] != "" else f"{'-':>13}"
        med = f"{100 * r['regret_median']:15.3f}" if r["regret_median"] != "" else f"{'-':>15}"
        var = f"{r['mroi_var_mean']:.3e}" if r["mroi_var_mean"] != "" else "-"
        lines.append(f"{r['round']:5d}  {r['episodes']:8d}  {reg}  {med}  {var:>9}  "
                     f"{100 * r['fallback_rate']:7.1f}%  {100 * r['carried_rate']:6.1f}%")
    return "\n".join(lines)


# ---- methods (dara bench) ------------------------------------------------------------------
def metric_arrays(records: list[dict], rounds: int) -> dict[str, np.ndarray]:
    """``{metric: (rounds, N)}`` from ``N`` finished episodes (in the order given)."""
    return {m: np.array([r[m][:rounds] for r in records], float).T for m in METRICS}


def ci95_half(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Half-width of the Student-t 95% interval of the mean along ``axis`` (the sample
    axis). With 10-30 environments per cell the normal approximation (1.96) is 4-15% too
    narrow; one sample gives width 0 (no spread to estimate)."""
    from scipy.stats import t

    values = np.asarray(values, float)
    n = values.shape[axis]
    if n < 2:
        return np.zeros(np.delete(values.shape, axis % values.ndim))
    return t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)


def ci95(values: np.ndarray) -> list[list[float]]:
    """95% t-interval of the mean, per round; ``values`` is (K, N)."""
    mean = values.mean(axis=1)
    half = ci95_half(values, axis=1)
    return [[float(m - h), float(m + h)] for m, h in zip(mean, half)]


def method_summary(per_round: dict[str, np.ndarray]) -> dict:
    """Means and 95% intervals per round from ``{metric: (K, N)}`` arrays."""
    out: dict = {}
    for m in METRICS:
        out[m] = [float(v) for v in per_round[m].mean(axis=1)]
    for m in METRICS:
        out[f"{m}_ci95"] = ci95(per_round[m])
    return out


def markdown_table(methods: dict[str, dict], metric: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """Methods x rounds of one metric's means."""
    k = len(next(iter(methods.values()))[metric])
    head = "| method | " + " | ".join(f"r{i + 1}" for i in range(k)) + " |"
    sep = "|---|" + "---:|" * k
    rows = [
        f"| {name} | " + " | ".join(fmt.format(v * scale) for v in res[metric]) + " |"
        for name, res in methods.items()
    ]
    return "\n".join([head, sep, *rows])


def plot_methods(results: dict[str, dict[str, dict]], path: str | Path) -> None:
    """Per-round curves with 95% bands: one column per family, one row per metric."""
    plt = _pyplot()
    fams = list(results)
    fig, axes = plt.subplots(len(METRICS), len(fams), figsize=(5 * len(fams), 3.2 * len(METRICS)), squeeze=False)
    for j, fam in enumerate(fams):
        for i, m in enumerate(METRICS):
            ax = axes[i][j]
            for name, res in results[fam].items():
                ys = np.asarray(res[m]) * (100 if m == "regret" else 1)
                xs = np.arange(1, len(ys) + 1)
                ax.plot(xs, ys, marker="o", ms=3, label=name)
                lo_hi = np.asarray(res[f"{m}_ci95"]) * (100 if m == "regret" else 1)
                ax.fill_between(xs, lo_hi[:, 0], lo_hi[:, 1], alpha=0.15)
            ax.set_yscale("log" if m != "regret" or np.all(ys > 0) else "linear")
            ax.set_title(f"{fam}: {m}{' (%)' if m == 'regret' else ''}")
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported only to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
