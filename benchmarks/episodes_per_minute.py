"""Episodes per minute of ``dara run`` on the embedded model: batched vs one at a time.

    python benchmarks/episodes_per_minute.py --episodes 8 --rounds 3 --concurrency 8

Both Reasoner and Optimizer are ``llm`` policies on the ``local`` backend (shipped
adapters when present, the base model otherwise). The model is loaded and warmed up
first (not timed); then the same episodes go through ``dara run`` (the graph, SQLite
checkpoints, JSONL output) once with ``--concurrency 1`` and once with
``--concurrency C``, in the same process. Prints a markdown table for
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[8])
    p.add_argument("--base", default="embedded")
    p.add_argument("--backend", default="local")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-serial", action="store_true")
    args = p.parse_args(argv)

    from graph.commands.run import main as run_main
    from graph.context import Context
    from graph.policy_registry import get_policy
    from policies.prompts import make_request
    from tools.envs import make_envs

    ctx = Context(reasoner="llm", optimizer="llm", backend=args.backend, base=args.base)
    t0 = time.perf_counter()
    task = make_envs("quadratic", 1, seed=999).task(0)
    for role in ("reasoner", "optimizer"):  # load + warm up (not timed)
        get_policy(ctx, role).propose([make_request(role, task)])
    load_s = time.perf_counter() - t0

    rows = []
    settings = ([] if args.skip_serial else [1]) + list(args.concurrency)
    for c in settings:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "run"
            t = time.perf_counter()
            run_main(["--family", "quadratic", "--episodes", str(args.episodes), "--rounds", str(args.rounds),
                      "--seed", str(args.seed), "--reasoner", "llm", "--optimizer", "llm",
                      "--backend", args.backend, "--base", args.base, "--out", str(out),
                      "--concurrency", str(c), "--quiet"])
            secs = time.perf_counter() - t
            eps = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
        decisions = sum(1 for e in eps for r in e["rounds"] if r["source"] != "carried")
        fallbacks = sum(1 for e in eps for r in e["rounds"] if r["source"] == "fallback")
        regret = [e["regret"][-1] for e in eps if e.get("regret")]
        rows.append({"concurrency": c, "episodes": len(eps), "seconds": secs,
                     "episodes_per_min": len(eps) / secs * 60, "decisions_per_s": decisions / secs,
                     "fallback_rate": fallbacks / max(decisions, 1),
                     "final_regret": sum(regret) / max(len(regret), 1)})
    print(f"model load + warm-up: {load_s:.1f}s (base={args.base}, backend={args.backend})\n")
    print("| concurrency | episodes x rounds | wall s | episodes/min | decisions/s | fallback | final regret |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['episodes']} x {args.rounds} | {r['seconds']:.1f} | "
              f"{r['episodes_per_min']:.2f} | {r['decisions_per_s']:.2f} | {100 * r['fallback_rate']:.0f}% | "
              f"{100 * r['final_regret']:.2f}% |")
    if len(rows) > 1:
        print(f"\nspeed-up of concurrency {rows[-1]['concurrency']} over 1: "
              f"{rows[-1]['episodes_per_min'] / rows[0]['episodes_per_min']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
