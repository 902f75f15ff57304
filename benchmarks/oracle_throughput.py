"""Oracle throughput: environments solved per second by the vectorised water-filling.

Usage: ``python benchmarks/oracle_throughput.py [--n 100000] [--seed 0]``

Generation time is reported separately from solving time; each family is solved once
after a small warm-up. The quadratic family runs at the requested size (100k by
default); the others at the same size unless ``--n-other`` says otherwise (``hill``
needs an inner Newton solve per bisection step, so it is slower per environment).
Data-driven rows use the robyn preset (fit cached before timing).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tools.envs import make_envs  # noqa: E402
from tools.oracle import oracle_allocation  # noqa: E402


def bench(family: str, n: int, seed: int, **kw) -> dict:
    t0 = time.perf_counter()
    env = make_envs(family, n, seed=seed, **kw)
    t_gen = time.perf_counter() - t0
    oracle_allocation(env.subset(np.arange(min(n, 256))))  # warm-up
    t0 = time.perf_counter()
    b = oracle_allocation(env)
    t_solve = time.perf_counter() - t0
    err = float(np.max(np.abs(b.sum(1) - env.budget) / env.budget))
    return {"family": family, "n": n, "T": env.periods, "gen_s": t_gen, "solve_s": t_solve,
            "envs_per_s": n / t_solve, "max_rel_budget_err": err}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n-other", type=int, default=None, help="size for non-quadratic families (default --n)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n2 = args.n_other or args.n
    runs = [
        ("quadratic", args.n, {}),
        ("quadratic", args.n, {"periods": 24, "budget": 24.0}),
        ("exponential", n2, {}),
        ("hill", n2, {}),
        ("robyn", min(n2, 20_000), {}),
    ]
    print(f"# oracle throughput ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, numpy {np.__version__})")
    print("| family | T | envs | generate (s) | solve (s) | envs/s | max rel. budget error |")
    print("|---|---|---|---|---|---|---|")
    for fam, n, kw in runs:
        if fam == "robyn":
            make_envs("robyn", 1)  # fit once, outside the timing
        r = bench(fam, n, args.seed, **kw)
        print(f"| {r['family']} | {r['T']} | {r['n']} | {r['gen_s']:.2f} | {r['solve_s']:.2f} | "
              f"{r['envs_per_s']:,.0f} | {r['max_rel_budget_err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
