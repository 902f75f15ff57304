"""Does DARA meet the generalist goals in every cell of the evaluation matrix?

Reads the ``dara bench --json`` files ``benchmarks/eval_generalist.sh`` writes (one per
cell) and, per cell, compares DARA's per-round mean regret with the heuristic's and with
``local-model``'s:

- **vs heuristic, every round**: a round is a *win* when DARA's regret is lower, a *tie*
  when both are under ``--tie`` (0.5% by default: nobody loses money worth a plan there),
  else a *loss*; the cell passes with no loss;
- **vs local-model from round 3** (the goal beyond, reported for noise > 0): DARA at or
  below it (or both under the tie level) in every round from 3 on;
- **fallbacks**: the share of decisions whose plan did not come from the model stays
  under 1%.

    python benchmarks/matrix_summary.py docs/data/matrix/*.json --plot docs/img/matrix.png --json docs/data/matrix-summary.json

Prints one markdown row per cell and the totals; ``--plot`` draws a heatmap of
DARA's regret minus the heuristic's per cell and round (blue: DARA lower).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def cell_summary(data: dict, tie: float = 0.005, fallback_max: float = 0.01, ref_from: int = 3) -> dict:
    """The checks of one cell from one ``dara bench --json`` result (regret as fractions)."""
    m = data["methods"]
    for need in ("dara", "heuristic"):
        if need not in m:
            raise ValueError(f"the cell has no {need!r} method (has {', '.join(m)})")
    dara = np.asarray(m["dara"]["regret"], float)
    heur = np.asarray(m["heuristic"]["regret"], float)
    K = min(len(dara), len(heur))
    dara, heur = dara[:K], heur[:K]
    both_small = (dara < tie) & (heur < tie)
    win = (dara < heur) & ~both_small
    loss = (dara >= heur) & ~both_small
    out = {"rounds": K, "envs": m["dara"].get("envs"), "noise": data["config"].get("noise"),
           "wins": int(win.sum()), "ties": int(both_small.sum()), "losses": int(loss.sum()),
           "lost_rounds": [int(k) + 1 for k in np.nonzero(loss)[0]],
           "fallback_rate": float(m["dara"].get("fallback_rate", float("nan"))),
           "parse_error_rate": float(m["dara"].get("parse_error_rate", float("nan"))),
           "dara_regret": dara.tolist(), "heuristic_regret": heur.tolist()}
    out["beats_heuristic"] = out["losses"] == 0
    out["fallbacks_ok"] = bool(out["fallback_rate"] < fallback_max)
    if "local-model" in m:
        lm = np.asarray(m["local-model"]["regret"], float)[:K]
        tail = slice(ref_from - 1, K)
        ok = (dara[tail] <= lm[tail]) | ((dara[tail] < tie) & (lm[tail] < tie))
        out["local_model_regret"] = lm.tolist()
        out["at_or_below_local_model_from_r3"] = bool(ok.all())
        out["rounds_above_local_model"] = [ref_from + int(k) for k in np.nonzero(~ok)[0]]
        # by how much: mean regret over rounds ref_from..K, DARA and local-model
        out["mean_from_r3"] = ({"dara": float(dara[tail].mean()), "local-model": float(lm[tail].mean())}
                               if K >= ref_from else None)
    return out


def name_of(path: Path) -> str:
    return path.stem


def natural_key(path: Path) -> list:
    """Cell names in reading order: quadratic-T3 before quadratic-T10."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem)]


def markdown(rows: dict[str, dict]) -> str:
    head = ("| cell | envs | DARA r1 → r10 (%) | heuristic r1 → r10 (%) | W/T/L vs heuristic | "
            "≤ local-model from r3 | mean r3+ DARA / local-model (%) | fallback |")
    lines = [head, "|" + "---|" * 8]
    for name, r in rows.items():
        d, h = r["dara_regret"], r["heuristic_regret"]
        lm = r.get("at_or_below_local_model_from_r3")
        lm_s = "-" if lm is None else ("yes" if lm else "no (r" + ",".join(map(str, r["rounds_above_local_model"])) + ")")
        wtl = f"{r['wins']}/{r['ties']}/{r['losses']}" + ("" if r["beats_heuristic"] else " ✗")
        mean = r.get("mean_from_r3")
        mean_s = "-" if mean is None else f"{100 * mean['dara']:.2f} / {100 * mean['local-model']:.2f}"
        lines.append(f"| {name} | {r['envs']} | {100 * d[0]:.2f} → {100 * d[-1]:.2f} | {100 * h[0]:.2f} → "
                     f"{100 * h[-1]:.2f} | {wtl} | {lm_s} | {mean_s} | {100 * r['fallback_rate']:.1f}% |")
    n = len(rows)
    lines.append("")
    lines.append(f"cells below the heuristic at every round (ties allowed): "
                 f"{sum(r['beats_heuristic'] for r in rows.values())}/{n}; fallback < 1%: "
                 f"{sum(r['fallbacks_ok'] for r in rows.values())}/{n}; at or below local-model from round 3 "
                 f"(noise > 0): {sum(bool(r.get('at_or_below_local_model_from_r3')) for r in rows.values() if r['noise'])}"
                 f"/{sum(1 for r in rows.values() if r['noise'])}")
    return "\n".join(lines)


def comparison(rows: dict[str, dict], before: dict[str, dict]) -> str:
    """Cell by cell against the same cells of an earlier matrix (``before``): DARA's mean
    regret over rounds 3-10 and at the last round, local-model's over rounds 3-10, and
    DARA's fallback rate, as ``before → now``."""
    lines = ["| cell | DARA rounds 3-10 | DARA last round | `local-model` rounds 3-10 | DARA fallback |",
             "|" + "---|" * 5]
    for name, r in rows.items():
        b = before.get(name)
        if b is None or r.get("mean_from_r3") is None or b.get("mean_from_r3") is None:
            continue
        pair = lambda x, y, f="{:.2f}": f"{f.format(x)} → {f.format(y)}"  # noqa: E731
        lines.append(f"| {name} | {pair(100 * b['mean_from_r3']['dara'], 100 * r['mean_from_r3']['dara'])} | "
                     f"{pair(100 * b['dara_regret'][-1], 100 * r['dara_regret'][-1])} | "
                     f"{pair(100 * b['mean_from_r3']['local-model'], 100 * r['mean_from_r3']['local-model'])} | "
                     f"{pair(100 * b['fallback_rate'], 100 * r['fallback_rate'], '{:.1f}%')} |")
    return "\n".join(lines)


def plot(rows: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    K = max(r["rounds"] for r in rows.values())
    diff = np.full((len(names), K), np.nan)
    for i, n in enumerate(names):
        r = rows[n]
        diff[i, :r["rounds"]] = 100 * (np.array(r["dara_regret"]) - np.array(r["heuristic_regret"]))
    lim = max(1.0, float(np.nanmax(np.abs(diff))))
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * K, 0.8 + 0.3 * len(names)))
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(K), [str(k + 1) for k in range(K)])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("round")
    for i, n in enumerate(names):
        for k in rows[n]["lost_rounds"]:
            ax.text(k - 1, i, "✗", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="DARA − heuristic regret (points of %)")
    ax.set_title("DARA vs heuristic per cell and round (blue: DARA lower; ✗ = loss)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="dara bench --json files, one per cell")
    ap.add_argument("--tie", type=float, default=0.5, help="tie level in %% of the optimal value (default 0.5)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-cell checks here")
    ap.add_argument("--plot", default=None, help="heatmap of DARA - heuristic regret")
    ap.add_argument("--against", type=Path, default=None,
                    help="a directory of an earlier matrix: also print each cell against the same cell there")
    a = ap.parse_args(argv)
    rows: dict[str, dict] = {}
    for f in sorted(a.files, key=natural_key):
        try:
            rows[name_of(f)] = cell_summary(json.loads(f.read_text()), tie=a.tie / 100)
        except (OSError, ValueError, KeyError) as e:
            print(f"matrix_summary: {f}: {e}", file=sys.stderr)
            return 2
    print(markdown(rows))
    if a.against:
        before = {}
        for name in rows:
            f = a.against / f"{name}.json"
            if f.is_file():
                before[name] = cell_summary(json.loads(f.read_text()), tie=a.tie / 100)
        print(f"\nagainst {a.against} (before → now):\n")
        print(comparison(rows, before))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    if a.plot:
        plot(rows, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
