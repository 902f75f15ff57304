"""``dara bench``: compare allocation methods round by round on many environments.

Round k is the allocation applied after the k-th decision: round 1 is the Reasoner's (or
a baseline's) answer to the few-shot history, rounds 2..K refine it from the sliding
window of the last ``w`` records (history followed by applied rounds). Every method's
proposal goes through the same budget projection (``tools.budget.project``), and all
methods see the same noisy observations for the same seed.

Numeric baselines run as arrays over all environments at once (2000 environments x 10
rounds take seconds). LLM methods (``dara``, ``reasoner-only``, ``optimizer-only``,
``base``, ``dara-fixed-ref``) run as episodes through the DARA graph
(``graph.bench_llm``), imported only when asked for, so a numeric benchmark never loads
torch.

Output: a Markdown table per metric (methods x rounds) on stdout, ``--json`` with
``{"config": {...}, "methods": {name: {"regret": [K], "mroi_var": [K],
"dispersion": [K], "regret_ci95": [[lo, hi]] * K, ...}}}`` and ``--plot`` per-round
curves. With several families (``--family quadratic,hill``) the JSON holds
``"families": {family: {"methods": ...}}`` instead of a top-level ``"methods"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from graph.context import ENCODINGS
from policies.baselines import BASELINES, propose_arrays

METRICS = ("regret", "mroi_var", "dispersion")
LLM_METHODS = ("dara", "reasoner-only", "optimizer-only", "base", "dara-fixed-ref")


def ci95(values: np.ndarray) -> list[list[float]]:
    """Normal-approximation 95% interval of the mean, per round; ``values`` is (K, N)."""
    n = values.shape[1]
    mean = values.mean(axis=1)
    half = 1.96 * values.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return [[float(m - h), float(m + h)] for m, h in zip(mean, half)]


def summarise(per_round: dict[str, np.ndarray]) -> dict:
    """Means and 95% intervals per round from ``{metric: (K, N)}`` arrays."""
    out: dict = {}
    for m in METRICS:
        out[m] = [float(v) for v in per_round[m].mean(axis=1)]
    for m in METRICS:
        out[f"{m}_ci95"] = ci95(per_round[m])
    return out


def run_numeric(name: str, env, rounds: int, window: int, seed: int) -> dict[str, np.ndarray]:
    """Run baseline ``name`` (or ``oracle``) on every environment for ``rounds`` rounds."""
    from tools.budget import project
    from tools.metrics import round_metrics
    from tools.oracle import oracle_allocation

    rng = np.random.default_rng(seed)
    b_star = oracle_allocation(env)
    pool_a = [env.hist_alloc[:, h, :] for h in range(env.hist_alloc.shape[1])]
    pool_r = [env.hist_mroi[:, h, :] for h in range(env.hist_mroi.shape[1])]
    out = {m: np.zeros((rounds, env.n)) for m in METRICS}
    for k in range(rounds):
        if name == "oracle":
            b = b_star
        else:
            w = len(pool_a) if k == 0 else window  # the Reasoner sees the whole history
            wa = np.stack(pool_a[-w:], axis=1)
            wr = np.stack(pool_r[-w:], axis=1)
            raw = propose_arrays(name, wa, wr, env.budget, env.lower, env.upper)
            b = project(raw, env.budget, env.lower, env.upper)
        met = round_metrics(env, b, b_star)
        for m in METRICS:
            out[m][k] = met[m]
        pool_a.append(b)
        pool_r.append(env.observe(b, rng))
    return out


def markdown_table(methods: dict[str, dict], metric: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    k = len(next(iter(methods.values()))[metric])
    head = "| method | " + " | ".join(f"r{i + 1}" for i in range(k)) + " |"
    sep = "|---|" + "---:|" * k
    rows = [
        f"| {name} | " + " | ".join(fmt.format(v * scale) for v in res[metric]) + " |"
        for name, res in methods.items()
    ]
    return "\n".join([head, sep, *rows])


def plot(results: dict[str, dict[str, dict]], path: str) -> None:
    """Per-round curves: one column per family, one row per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="quadratic", help="environment family, or several comma-separated")
    p.add_argument("--envs", type=int, default=2000, help="number of held-out environments per family")
    p.add_argument("--rounds", type=int, default=10, help="decisions per episode (K)")
    p.add_argument("--seed", type=int, default=7, help="seed for environments and observation noise")
    p.add_argument("--periods", type=int, default=None, help="slots T (synthetic families; default 6)")
    p.add_argument("--budget", type=float, default=None, help="budget B (synthetic families; default 6)")
    p.add_argument("--noise", type=float, default=0.0, help="multiplicative noise on observed MROI")
    p.add_argument("--window", type=int, default=3, help="Optimizer's sliding window w")
    p.add_argument(
        "--policies",
        default="uniform,heuristic,gradient,local-model",
        help=f"comma-separated methods: {', '.join(BASELINES)}, oracle, or LLM methods {', '.join(LLM_METHODS)}",
    )
    p.add_argument("--no-oracle", action="store_true", help="leave the oracle row out of the table")
    p.add_argument("--json", dest="json_out", default=None, help="write results JSON here")
    p.add_argument("--plot", default=None, help="write per-round curves (PNG) here")
    p.add_argument("--backend", default="local", help="LLM backend for LLM methods: local|vllm|openai")
    p.add_argument("--base", default="embedded", help="base model for LLM methods")
    p.add_argument("--concurrency", type=int, default=16, help="episodes in flight for LLM methods")
    p.add_argument("--llm-out", default=None,
                   help="keep LLM methods' episodes here (DIR/<method>/episodes.jsonl); reruns resume")
    p.add_argument("--optimizer-adapter", default=None, help="override the Optimizer adapter of LLM methods")
    p.add_argument("--optimizer-encoding", default=None, choices=list(ENCODINGS),
                   help="override the Optimizer encoding of LLM methods")
    p.add_argument("--reasoner-adapter", default=None, help="override the Reasoner adapter of LLM methods")
    p.add_argument("--reasoner-encoding", default=None, choices=list(ENCODINGS),
                   help="override the Reasoner encoding of LLM methods")
    return p


def make_env(family: str, args) -> object:
    from tools.envs import make_envs

    kw = {}
    if args.periods is not None:
        kw["periods"] = args.periods
    if args.budget is not None:
        kw["budget"] = args.budget
    return make_envs(family, n=args.envs, seed=args.seed, noise=args.noise, **kw)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.policies.split(",") if m.strip()]
    unknown = [m for m in methods if m not in BASELINES and m not in LLM_METHODS and m != "oracle"]
    if unknown:
        print(
            f"dara bench: unknown method(s) {unknown}; choose from {', '.join(BASELINES + LLM_METHODS)}, oracle",
            file=sys.stderr,
        )
        return 2
    if args.envs < 1 or args.rounds < 1 or args.window < 1:
        print("dara bench: --envs, --rounds and --window must be >= 1", file=sys.stderr)
        return 2
    if not args.no_oracle and "oracle" not in methods:
        methods.append("oracle")
    families = [f.strip() for f in args.family.split(",") if f.strip()]
    results: dict[str, dict[str, dict]] = {}
    extra: dict[str, dict] = {}
    t0 = time.perf_counter()
    for fam in families:
        env = make_env(fam, args)
        results[fam] = {}
        for name in methods:
            t = time.perf_counter()
            if name in LLM_METHODS:
                from graph.bench_llm import run_llm_method  # heavy: torch, models

                per_round, extra_stats = run_llm_method(
                    name, env, rounds=args.rounds, window=args.window, seed=args.seed,
                    backend=args.backend, base=args.base, concurrency=args.concurrency,
                    out_dir=(str(Path(args.llm_out) / fam) if args.llm_out else None),
                    optimizer_adapter=args.optimizer_adapter, optimizer_encoding=args.optimizer_encoding,
                    reasoner_adapter=args.reasoner_adapter, reasoner_encoding=args.reasoner_encoding,
                )
                res = summarise(per_round)
                res.update(extra_stats)
                res["envs"] = env.n
            else:
                res = summarise(run_numeric(name, env, args.rounds, args.window, args.seed))
                res["envs"] = env.n
            res["seconds"] = round(time.perf_counter() - t, 3)
            results[fam][name] = res
        print(f"\n## {fam}: regret (% of optimal value), mean over environments\n")
        print(markdown_table(results[fam], "regret", scale=100))
        print(f"\n## {fam}: MROI variance across slots\n")
        print(markdown_table(results[fam], "mroi_var", fmt="{:.2e}"))
        for name, res in results[fam].items():
            if "parse_error_rate" in res:
                extra.setdefault(fam, {})[name] = res["parse_error_rate"]
        if fam in extra:
            print("\nparse-error rate: " + ", ".join(f"{k} {v:.2%}" for k, v in extra[fam].items()))
    elapsed = time.perf_counter() - t0
    print(f"\n{len(families)} family(ies) x {len(methods)} methods in {elapsed:.1f} s", file=sys.stderr)
    config = {k: v for k, v in vars(args).items() if k not in ("json_out", "plot")}
    config["policies"] = methods
    if args.json_out:
        payload: dict = {"config": config}
        if len(families) == 1:
            payload["methods"] = results[families[0]]
        else:
            payload["families"] = {f: {"methods": r} for f, r in results.items()}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(payload, indent=1))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
