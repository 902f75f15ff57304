"""Paired re-ask: how often does an Optimizer adapter copy its hint one slot out of step?

A copy slip (``policies.observations.misaligned_copy``) is a usable but wrong plan: the
hint copied with an entry skipped or repeated, so each slot gets its neighbour's move.
This rebuilds recorded Optimizer requests from ``dara bench --llm-out`` episodes files
(``benchmarks/hint_agreement.py``: the window as the graph built it) and asks each named
adapter for them greedily, through ``LLMPolicy.propose`` (the answer format enforced, as
in the graph), in batches. Every adapter answers the same requests, so the counts pair:

- ``sample``: ``--n`` requests drawn at random (seeded) from every recorded Optimizer
  request of the files: the slip rate an episode would meet;
- ``slipped``: up to ``--slipped`` requests whose recorded answer slipped: does the
  adapter repeat them?

Each answer is ``copy`` (the rounded hint, within 0.011 a slot), ``slip``, ``other`` (a
departure that is not a slip) or ``rej`` (rejected by the decoder). For every adapter
after the first, the slips it removes and adds against the first, with a two-sided
binomial (sign) test on the discordant requests.

    python benchmarks/slip_probe.py docs/data/matrix-hint-last/episodes/*T1[06]-n0.1/*/dara/episodes.jsonl \\
        --adapter shipped=policies/adapters/optimizer \\
        --adapter slip=training/runs/gen-grpo-optimizer-hint-slip/adapter --n 96 --slipped 32

The requests come from the shipped pair's episodes, so this is an off-policy probe: it
measures copying on those windows, not the regret of a trajectory (``MODE=rl
benchmarks/eval_generalist.sh`` does that).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.hint_agreement import parsed_answers  # noqa: E402
from policies.observations import HINT_COPY_TOL, misaligned_copy  # noqa: E402

LABELS = ("copy", "slip", "other", "rej")


def label(units, hint) -> str:
    """What an answer (units of B/T, None when rejected) is against the shown ``hint``."""
    if units is None:
        return "rej"
    if misaligned_copy(list(units), list(hint)):
        return "slip"
    return "copy" if max(abs(x - y) for x, y in zip(units, hint)) <= HINT_COPY_TOL else "other"


def pick_requests(paths: list[Path], n: int, slipped: int, seed: int) -> dict[str, list[tuple]]:
    """``{"sample": [...], "slipped": [...]}`` of ``(episode id, round, request, hint)``."""
    every, slips = [], []
    for path in paths:
        for ep, r, request, hint, ans in parsed_answers(path, 3, "optimizer"):
            item = (ep["id"], r["round"], request, list(hint))
            every.append(item)
            if misaligned_copy(list(ans), list(hint)):
                slips.append(item)
    rng = random.Random(seed)
    return {"sample": rng.sample(every, min(n, len(every))), "slipped": slips[:slipped]}


def ask(policy, items: list[tuple], batch: int) -> list[str]:
    out = []
    for k in range(0, len(items), batch):
        chunk = items[k:k + batch]
        for (_, _, _, hint), d in zip(chunk, policy.propose([it[2] for it in chunk])):
            out.append(label(d.meta.get("answer_units") if d.allocation is not None else None, hint))
        print(f"  {min(k + batch, len(items))}/{len(items)}", file=sys.stderr, flush=True)
    return out


def compare(base: list[str], other: list[str]) -> dict:
    """Slips ``other`` removes and adds against ``base`` on the same requests."""
    from scipy.stats import binomtest

    removed = sum(a == "slip" and b != "slip" for a, b in zip(base, other))
    added = sum(a != "slip" and b == "slip" for a, b in zip(base, other))
    p = binomtest(removed, removed + added, 0.5).pvalue if removed + added else 1.0
    return {"removed": removed, "added": added, "p": float(p)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, nargs="+")
    ap.add_argument("--adapter", action="append", required=True, help="NAME=DIR (repeatable; the first is the reference)")
    ap.add_argument("--n", type=int, default=96, help="random recorded requests")
    ap.add_argument("--slipped", type=int, default=32, help="recorded slips to re-ask")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--option", action="append", default=[],
                    help="param:value for local_model as the episodes ran it (e.g. unfunded_cap:0, grow:1), "
                         "so each prompt shows the hint its run showed")
    a = ap.parse_args(argv)
    adapters = []
    for spec in a.adapter:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path, "adapter_config.json").is_file():
            ap.error(f"--adapter {spec!r}: expected NAME=DIR with DIR a LoRA adapter directory")
        adapters.append((name, path))
    from benchmarks.trust_region import local_model_options, parse_options

    try:
        options = parse_options(a.option)
    except ValueError as e:
        ap.error(f"--option: {e}")
    with local_model_options(options):
        return _run(a, adapters)


def _run(a, adapters: list[tuple[str, str]]) -> int:
    groups = pick_requests(a.episodes, a.n, a.slipped, a.seed)
    print(f"requests: {len(groups['sample'])} sampled, {len(groups['slipped'])} recorded slips", flush=True)
    from policies import make_policy

    labels: dict[str, dict[str, list[str]]] = {}
    for name, path in adapters:
        policy = make_policy("llm", "optimizer", adapter=path, batch_size=a.batch_size)
        labels[name] = {g: ask(policy, items, a.batch_size) for g, items in groups.items()}
        del policy
    result = {"adapters": dict(adapters), "groups": {}}
    ref = adapters[0][0]
    for g, items in groups.items():
        rows = {name: {k: labs[g].count(k) for k in LABELS} for name, labs in labels.items()}
        vs = {name: compare(labels[ref][g], labels[name][g]) for name, _ in adapters[1:]}
        result["groups"][g] = {"n": len(items), "counts": rows, f"vs_{ref}": vs}
        print(f"\n{g} ({len(items)} requests)\n| adapter | " + " | ".join(LABELS) + f" | slips removed / added vs {ref} (p) |")
        print("|---|" + "---:|" * len(LABELS) + "---|")
        for name, _ in adapters:
            c = rows[name]
            cells = [f"{c[k]} ({c[k] / max(1, len(items)):.0%})" for k in LABELS]
            extra = "-" if name == ref else f"{vs[name]['removed']} / {vs[name]['added']} (p = {vs[name]['p']:.3f})"
            print(f"| {name} | " + " | ".join(cells) + f" | {extra} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
