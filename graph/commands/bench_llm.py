"""LLM methods for ``dara bench``: episodes through the DARA graph.

Each LLM method is a choice of policy per role and of adapters (:func:`method_context`);
its episodes run with :func:`graph.commands.episodes.run_episodes` (one graph thread per
episode, concurrent, generation coalesced into batches by the backend) on the same
environments as the numeric rows (the ``EnvBatch`` itself), with tolerance 0 so every
method reports all K rounds, and with the context's seed for feedback noise, which the
numeric rows draw the same way (``graph.commands.bench_numeric``).

| method | round 1 (Reasoner) | rounds 2..K (Optimizer) |
|---|---|---|
| ``dara`` | LLM + shipped reasoner adapter | LLM + shipped optimizer adapter (GRPO, fixed reference) |
| ``reasoner-only`` | LLM + shipped reasoner adapter | ``hold``: the plan is kept |
| ``optimizer-only`` | ``uniform`` | LLM + shipped optimizer adapter |
| ``base`` | LLM, no adapter | LLM, no adapter |
| ``dara-grpo-a`` | LLM + shipped reasoner adapter | LLM + the shipped Optimizer's GRPO-A twin (same seed, reference refreshed every 10 steps) |
| ``dara-sft`` | LLM + shipped reasoner adapter | LLM + the SFT Optimizer both RL runs started from |

The last two read their adapters from ``training/runs/`` (a clone of the repository has
them; an installed wheel does not, and the method then fails before any episode runs).

``parse_error_rate`` counts LLM decisions that recorded an error (the text did not
decode, or the backend failed), over all LLM decisions; ``fallback_rate`` counts LLM
decisions whose plan did not come from the model (parse and backend errors, where the
episode held its previous plan, and plans the self-check replaced:
``graph.commands.summaries.is_fallback``); both by round too. ``resample_rate`` counts
LLM decisions whose first answer the decoder rejected and a resample (``context.resample``)
then decoded: their plan came from the model, so they are neither errors nor fallbacks.
Rounds ``carried`` after an early stop are no decisions and are not counted.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from graph.commands.episode_log import EPISODES, repair_and_read
from graph.commands.summaries import is_fallback, is_resampled, metric_arrays
from graph.context import Context

ADAPTER_DIR = Path(__file__).resolve().parents[2] / "policies" / "adapters"
RUNS_DIR = Path(__file__).resolve().parents[2] / "training" / "runs"

# method -> (reasoner policy, optimizer policy, reasoner adapter, optimizer adapter)
# adapter None = the shipped adapter of that role; "none" = the base model.
METHODS: dict[str, tuple[str, str, str | None, str | None]] = {
    "dara": ("llm", "llm", None, None),
    "reasoner-only": ("llm", "hold", None, None),
    "optimizer-only": ("uniform", "llm", None, None),
    "base": ("llm", "llm", "none", "none"),
    "dara-grpo-a": ("llm", "llm", None, str(RUNS_DIR / "gen-grpo-optimizer-hint" / "adapter")),
    "dara-sft": ("llm", "llm", None, str(RUNS_DIR / "gen-sft-optimizer-hint" / "adapter")),
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


def method_context(name: str, context: Context) -> Context:
    """``context`` with LLM method ``name``'s policies and adapters, and tolerance 0.

    ``context.reasoner_adapter``/``optimizer_adapter`` replace the adapter of a role the
    method runs with an adapter (shipped or named), never the base model of ``base``; the
    encodings, model settings, window, rounds and seed are the context's.
    """
    if name not in METHODS:
        raise ValueError(f"unknown LLM method {name!r}; choose one of {', '.join(METHODS)}")
    reasoner, optimizer, r_ad, o_ad = METHODS[name]
    if context.optimizer_adapter and o_ad != "none":
        o_ad = context.optimizer_adapter
    if context.reasoner_adapter and r_ad != "none":
        r_ad = context.reasoner_adapter
    _check_adapter("reasoner", reasoner, r_ad, name)
    _check_adapter("optimizer", optimizer, o_ad, name)
    return dataclasses.replace(context, reasoner=reasoner, optimizer=optimizer, reasoner_adapter=r_ad,
                               optimizer_adapter=o_ad, tolerance=0.0, feedback="simulator", approval=False)


def read_episodes(path: Path, rounds: int, llm_roles: tuple[bool, bool] = (True, True)) -> tuple[dict[str, np.ndarray], dict]:
    """Per-round metric arrays ``(K, N)`` and parse-error statistics from episodes.jsonl.

    ``llm_roles`` says whether the Reasoner (round 1) and the Optimizer (rounds 2..K) are
    LLM policies: only their decisions count towards the parse-error rate (``carried``
    rounds repeat a plan and are no decision).
    """
    recs = sorted(repair_and_read(Path(path)), key=lambda r: r["id"])
    failed = [r["id"] for r in recs if r.get("status") == "error"]
    if failed:
        raise RuntimeError(f"{len(failed)} episode(s) failed outright, e.g. {failed[0]}: "
                           f"{next(r for r in recs if r['id'] == failed[0]).get('error')}")
    per_round = metric_arrays(recs, rounds)
    llm_total = np.zeros(rounds)
    llm_errors = np.zeros(rounds)
    llm_fallbacks = np.zeros(rounds)
    llm_resampled = np.zeros(rounds)
    for r in recs:
        for k, rd in enumerate(r["rounds"][:rounds]):
            if rd.get("source") == "carried" or not llm_roles[0 if k == 0 else 1]:
                continue
            llm_total[k] += 1
            llm_errors[k] += rd.get("error") is not None
            llm_fallbacks[k] += is_fallback(rd)
            llm_resampled[k] += is_resampled(rd)
    total = llm_total.sum()

    def rate(counts: np.ndarray) -> float:
        return float(counts.sum() / total) if total else 0.0

    stats = {
        "parse_error_rate": rate(llm_errors),
        "parse_error_rate_by_round": [float(e / t) if t else None for e, t in zip(llm_errors, llm_total)],
        "fallback_rate": rate(llm_fallbacks),
        "fallback_rate_by_round": [float(f / t) if t else None for f, t in zip(llm_fallbacks, llm_total)],
        "resample_rate": rate(llm_resampled),
        "llm_decisions": int(total),
    }
    return per_round, stats


def run_llm_method(name: str, env, context: Context, concurrency: int = 16,
                   out_dir: str | Path | None = None, progress: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Run LLM method ``name`` on every environment of ``env`` through the graph.

    ``out_dir`` keeps the episodes in ``out_dir/<name>/`` (a rerun resumes them);
    without it they go to a temporary directory. ``progress`` shows a progress line on
    stderr (episodes done/total, elapsed, remaining).
    """
    from graph.commands.episode_sources import batch_episodes
    from graph.commands.episodes import run_episodes

    ctx = method_context(name, context)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"dara-bench-{name}-")
        out_dir = tmp.name
    out = Path(out_dir) / name
    try:
        source = {"method": name, **{k: env.spec.get(k) for k in ("family", "n", "seed", "noise", "history")}}
        run_episodes(ctx, batch_episodes(env), out, concurrency, resume=(out / EPISODES).exists(), source=source,
                     progress=progress, label=f"{name} episodes")
        return read_episodes(out / EPISODES, ctx.max_rounds, (ctx.reasoner == "llm", ctx.optimizer == "llm"))
    finally:
        if tmp is not None:
            tmp.cleanup()
