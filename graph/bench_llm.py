"""LLM methods for ``dara bench``: episodes through the DARA graph via ``dara run``.

Each LLM method is a choice of policy per role and of adapters; the episodes run with
``graph.run`` (one graph thread per episode, concurrent, generation coalesced into
batches by the backend) on environments ``0..N-1`` of the same family and seed as the
numeric rows, with tolerance 0 so every method reports all K rounds.

| method | round 1 (Reasoner) | rounds 2..K (Optimizer) |
|---|---|---|
| ``dara`` | LLM + shipped reasoner adapter | LLM + shipped optimizer adapter (GRPO-A) |
| ``reasoner-only`` | LLM + shipped reasoner adapter | ``hold``: the plan is kept |
| ``optimizer-only`` | ``uniform`` | LLM + shipped optimizer adapter |
| ``base`` | LLM, no adapter | LLM, no adapter |
| ``dara-fixed-ref`` | LLM + shipped reasoner adapter | LLM + optimizer adapter trained with plain GRPO (reference never refreshed) |

``parse_error_rate`` counts LLM decisions whose text did not decode (the episode then
held its previous plan, marked ``fallback``), over all LLM decisions; by round too.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

ADAPTER_DIR = Path(__file__).resolve().parents[1] / "policies" / "adapters"

# method -> (reasoner policy, optimizer policy, reasoner adapter, optimizer adapter)
# adapter None = the shipped adapter of that role; "none" = the base model.
METHODS: dict[str, tuple[str, str, str | None, str | None]] = {
    "dara": ("llm", "llm", None, None),
    "reasoner-only": ("llm", "hold", None, None),
    "optimizer-only": ("uniform", "llm", None, None),
    "base": ("llm", "llm", "none", "none"),
    "dara-fixed-ref": ("llm", "llm", None, str(ADAPTER_DIR / "optimizer-fixed-ref")),
}


def _check_adapter(role: str, policy: str, adapter: str | None, method: str) -> None:
    """Fail before any episode runs when an LLM method's adapter is missing."""
    if policy != "llm" or adapter == "none":
        return
    if adapter is None:
        from policies import shipped_adapter

        if shipped_adapter(role) is None:
            raise ValueError(f"method {method!r} needs the shipped {role} adapter "
                             f"({ADAPTER_DIR / role}), which is not present; train one with "
                             f"'dara train sft --role {role}' or pass an adapter directory")
        return
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(f"method {method!r}: {role} adapter {adapter} has no adapter_config.json")


def method_args(name: str, env, rounds: int, window: int, seed: int, backend: str, base: str,
                concurrency: int, out: str, optimizer_adapter: str | None = None,
                optimizer_encoding: str | None = None, reasoner_adapter: str | None = None,
                reasoner_encoding: str | None = None) -> list[str]:
    """The ``dara run`` arguments that make LLM method ``name`` on ``env``'s family.

    ``reasoner_adapter``/``optimizer_adapter`` replace the adapter of a role the method
    runs with an adapter (shipped or named), never the base model of ``base``; the
    encodings apply to the role's LLM policy.
    """
    if name not in METHODS:
        raise ValueError(f"unknown LLM method {name!r}; choose one of {', '.join(METHODS)}")
    reasoner, optimizer, r_ad, o_ad = METHODS[name]
    spec = env.spec
    argv = [
        "--family", spec["family"], "--episodes", str(env.n), "--rounds", str(rounds),
        "--seed", str(spec["seed"]), "--noise", str(spec.get("noise", 0.0)),
        "--history", str(spec.get("history", 3)),
        "--reasoner", reasoner, "--optimizer", optimizer, "--backend", backend, "--base", base,
        "--window", str(window), "--tolerance", "0", "--concurrency", str(concurrency),
        "--out", out, "--quiet",
    ]
    if spec.get("periods") is not None and spec["family"] in ("quadratic", "exponential", "hill"):
        argv += ["--periods", str(spec["periods"]), "--budget", str(spec["budget"])]
    if optimizer_adapter and o_ad != "none":
        o_ad = optimizer_adapter
    if reasoner_adapter and r_ad != "none":
        r_ad = reasoner_adapter
    _check_adapter("reasoner", reasoner, r_ad, name)
    _check_adapter("optimizer", optimizer, o_ad, name)
    if r_ad:
        argv += ["--reasoner-adapter", r_ad]
    if o_ad:
        argv += ["--optimizer-adapter", o_ad]
    if optimizer_encoding:
        argv += ["--optimizer-encoding", optimizer_encoding]
    if reasoner_encoding:
        argv += ["--reasoner-encoding", reasoner_encoding]
    return argv


def read_episodes(path: Path, rounds: int, llm_roles: tuple[bool, bool] = (True, True)) -> tuple[dict[str, np.ndarray], dict]:
    """Per-round metric arrays ``(K, N)`` and parse-error statistics from episodes.jsonl.

    ``llm_roles`` says whether the Reasoner (round 1) and the Optimizer (rounds 2..K) are
    LLM policies: only their decisions count towards the parse-error rate.
    """
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    recs.sort(key=lambda r: r["id"])
    failed = [r["id"] for r in recs if r.get("status") == "error"]
    if failed:
        raise RuntimeError(f"{len(failed)} episode(s) failed outright, e.g. {failed[0]}: "
                           f"{next(r for r in recs if r['id'] == failed[0]).get('error')}")
    per_round = {m: np.array([r[m][:rounds] for r in recs], float).T for m in ("regret", "mroi_var", "dispersion")}
    llm_total = np.zeros(rounds)
    llm_errors = np.zeros(rounds)
    for r in recs:
        for k, rd in enumerate(r["rounds"][:rounds]):
            if rd.get("carried") or not llm_roles[0 if k == 0 else 1]:
                continue
            llm_total[k] += 1
            llm_errors[k] += rd.get("error") is not None
    by_round = [float(e / t) if t else None for e, t in zip(llm_errors, llm_total)]
    total = llm_total.sum()
    stats = {
        "parse_error_rate": float(llm_errors.sum() / total) if total else 0.0,
        "parse_error_rate_by_round": by_round,
        "llm_decisions": int(total),
    }
    return per_round, stats


def run_llm_method(name: str, env, rounds: int, window: int, seed: int, backend: str = "local",
                   base: str = "embedded", concurrency: int = 16, out_dir: str | None = None,
                   **kw) -> tuple[dict[str, np.ndarray], dict]:
    """Run LLM method ``name`` on every environment of ``env`` through the graph."""
    from graph.run import main as run_main

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"dara-bench-{name}-")
        out_dir = tmp.name
    out = Path(out_dir) / name
    argv = method_args(name, env, rounds, window, seed, backend, base, concurrency, str(out), **kw)
    resume = (out / "episodes.jsonl").exists()
    rc = run_main(argv + (["--resume"] if resume else []))
    if rc not in (0, 1):
        raise RuntimeError(f"dara run {' '.join(argv)} exited with {rc}")
    try:
        reasoner, optimizer = METHODS[name][:2]
        return read_episodes(out / "episodes.jsonl", rounds, (reasoner == "llm", optimizer == "llm"))
    finally:
        if tmp is not None:
            tmp.cleanup()
