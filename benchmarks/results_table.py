"""Markdown regret table (and optional plot) from ``dara bench --json`` files.

    python benchmarks/results_table.py "dara (GRPO-A)=runs/eval/quadratic.json:dara" \
        heuristic=runs/eval/quadratic.json:heuristic --plot docs/img/eval_quadratic.png

Each row is ``label=path.json:method``; the table has the per-round mean regret (%),
and for LLM methods the parse-error rate. ``--ci`` adds the 95% interval of the first
and last round. Used to write docs/results.md from the files the benchmark wrote, so the
numbers there are copied by code, not by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(spec: str) -> tuple[str, dict]:
    label, _, rest = spec.partition("=")
    path, _, method = rest.rpartition(":")
    if not path or not method:
        raise SystemExit(f"expected label=path.json:method, got {spec!r}")
    data = json.loads(Path(path).read_text())
    if method not in data["methods"]:
        raise SystemExit(f"{path} has no method {method!r} (has {', '.join(data['methods'])})")
    return label, data["methods"][method]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="+", help="label=path.json:method")
    p.add_argument("--ci", action="store_true", help="add the 95%% intervals of round 1 and the last round")
    p.add_argument("--plot", help="also plot regret per round to this PNG")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    rows = [load(s) for s in args.rows]
    K = max(len(m["regret"]) for _, m in rows)
    head = ["method", *[f"r{k + 1}" for k in range(K)], "parse errors"]
    ci_rounds = (0, -1) if K > 1 else (0,)
    if args.ci:
        head += ["r1 95% CI"] + ([f"r{K} 95% CI"] if K > 1 else [])
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for label, m in rows:
        cells = [label, *[f"{100 * x:.2f}" for x in m["regret"]]]
        cells.append(f"{100 * m['parse_error_rate']:.1f}%" if "parse_error_rate" in m else "-")
        if args.ci:
            ci = m.get("regret_ci95") or []
            cells += [f"[{100 * ci[i][0]:.1f}, {100 * ci[i][1]:.1f}]" if ci else "-" for i in ci_rounds]
        print("| " + " | ".join(cells) + " |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for label, m in rows:
            x = range(1, len(m["regret"]) + 1)
            (line,) = ax.plot(x, [100 * v for v in m["regret"]], marker="o", ms=3, label=label)
            ci = m.get("regret_ci95")
            if ci:
                ax.fill_between(x, [100 * a for a, _ in ci], [100 * b for _, b in ci],
                                color=line.get_color(), alpha=0.12)
        ax.set_xlabel("round")
        ax.set_ylabel("regret (% of optimal value)")
        ax.set_title(args.title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
