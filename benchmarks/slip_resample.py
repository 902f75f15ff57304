"""Does asking again, sampling, undo a copy slip? (``policies.observations.misaligned_copy``)

For every recorded ``delta-hint`` answer that copies the hint one slot out of step, this
rebuilds the prompt (``benchmarks/hint_agreement.py``), asks the shipped adapter of that
role again greedily (to confirm the slip reproduces) and then at temperature 0.7 with
seeds 1..``--samples`` (as ``context.resample`` would), stopping at the first sample that
copies the hint, and prints what each answer was: ``slip``, ``copy``, ``other`` (a
departure that is not a slip) or ``rej`` (rejected by the decoder). It re-asks the
adapters shipped now: episodes recorded with other adapters (the ``delta-hint`` Reasoner
before it was replaced) are re-asked of the current ones, so compare Optimizer slips only.

    python benchmarks/slip_resample.py docs/data/matrix-grow/episodes/media-T10-n0.1/media/dara/episodes.jsonl \\
        docs/data/matrix-grow/episodes/quadratic-T16-n0.1/quadratic/dara/episodes.jsonl --max-optimizer 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.hint_agreement import parsed_answers  # noqa: E402
from benchmarks.slip_probe import label  # noqa: E402
from policies.llm import RESAMPLE_TEMPERATURE  # noqa: E402
from policies.observations import misaligned_copy, shown_hint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, nargs="+")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-optimizer", type=int, default=6, help="slipped Optimizer prompts to re-ask (all Reasoner ones are)")
    a = ap.parse_args(argv)
    from policies import make_policy
    from policies.prompts import decode

    slips = []
    for path in a.episodes:
        for role in ("reasoner", "optimizer"):
            slips += [(ep["id"], r["round"], role, req) for ep, r, req, hint, ans in parsed_answers(path, 3, role)
                      if misaligned_copy(list(ans), list(hint))]
    print(f"{len(slips)} recorded slips", flush=True)
    chosen = [s for s in slips if s[2] == "reasoner"] + [s for s in slips if s[2] == "optimizer"][:a.max_optimizer]
    pols = {}
    for eid, k, role, req in chosen:
        pol = pols.setdefault(role, make_policy("llm", role))
        hint, msgs = shown_hint(req), pol.messages(req)
        greedy = decode(pol._texts([msgs], [req.task.periods])[0], req, pol.encoding)
        out = [f"greedy:{label(greedy.meta.get('answer_units'), hint)}"]
        for seed in range(1, a.samples + 1):
            t = pol._texts([msgs], [req.task.periods], temperature=RESAMPLE_TEMPERATURE, seed=seed)[0]
            out.append(f"{seed}:{label(decode(t, req, pol.encoding).meta.get('answer_units'), hint)}")
            if out[-1].endswith("copy"):
                break
        print(eid, "round", k, role, " ".join(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
