"""Plot training curves from ``log.jsonl`` files (SFT loss, GRPO reward/KL).

    python benchmarks/plot_training.py --out docs/img/training.png \
        sft-reasoner=training/checkpoints/sft-reasoner/log.jsonl \
        sft-optimizer=training/checkpoints/sft-optimizer/log.jsonl

Each ``name=path`` is one run; every ``--keys`` metric found (default ``train/loss``,
``train/reward``, ``train/env_gain``, ``train/kl``) gets a panel, smoothed with a running mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="name=path/to/log.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--smooth", type=int, default=5)
    p.add_argument("--keys", default="train/loss,train/reward,train/env_gain,train/kl",
                   help="comma list of log keys, one panel each (those no run logs are skipped); GRPO "
                        "diagnostics: train/reward_std,train/frac_groups_zero_std,train/value_gain")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"expected name=path, got {spec!r}")
        runs[name] = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    keys = [k for k in args.keys.split(",") if any(k in r[0] for r in runs.values() if r)]
    cols = min(len(keys), 4)
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        for name, rows in runs.items():
            rows = [r for r in rows if key in r]
            if not rows:
                continue
            x = np.array([r["step"] for r in rows])
            y = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
            k = max(1, min(args.smooth, len(y)))
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            (line,) = ax.plot(x[k - 1:], ys, label=name)
            ax.plot(x, y, alpha=0.25, color=line.get_color())
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
