"""Rerun a matrix with a new Reasoner without rerunning what it does not change.

A new Reasoner only writes round 1; rounds 2-10 are the Optimizer's, from the plans
before them. So a recorded DARA episode whose round 1 the new Reasoner answers word for
word (the same text, and the same rejected answers when the greedy one was refused) is
an episode of the new pair too: the Optimizer saw the same records. This copies those
episodes of each cell into a new matrix directory, with a ``run.json`` that names the new
Reasoner, so ``benchmarks/eval_generalist.sh`` (``REDO=1``) resumes each cell there and
runs only the episodes the new Reasoner changed, and the numeric methods.

    # 1. round 1 only, the new Reasoner, every matrix cell:
    ROUNDS=1 POLICIES=dara REASONER=training/runs/RUN/adapter OUT=runs/round1-RUN benchmarks/eval_generalist.sh
    # 2. carry the unchanged episodes, then run the rest:
    python benchmarks/carry_episodes.py docs/data/matrix-grow runs/round1-RUN docs/data/matrix-RUN \\
        --reasoner-adapter training/runs/RUN/adapter
    REDO=1 OUT=docs/data/matrix-RUN REASONER=training/runs/RUN/adapter benchmarks/eval_generalist.sh

Prints, per cell, how many episodes were carried and how many the new Reasoner changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPISODES, SETTINGS = "episodes.jsonl", "run.json"


def round_one(episode: dict) -> tuple | None:
    """What the Reasoner decided: round 1's text, source and rejected answers' texts."""
    rounds = episode.get("rounds") or []
    if episode.get("status", "ok") != "ok" or not rounds or rounds[0].get("round") != 1:
        return None
    r = rounds[0]
    return (r.get("text"), r.get("source"), tuple(a.get("text") for a in r.get("rejected_answers") or []))


def read_episodes(path: Path) -> dict[str, dict]:
    return {ep["id"]: ep for ep in map(json.loads, path.read_text().splitlines()) if ep.get("id")}


# what may differ between the recorded matrix and the new Reasoner's round-1 run
REASONER_FIELDS = ("reasoner_adapter", "reasoner_encoding", "max_rounds")


def carry_cell(old_dir: Path, new_dir: Path, out_dir: Path, adapter: str, encoding: str | None) -> tuple[int, int]:
    """Carry ``old_dir``'s episodes whose round 1 ``new_dir`` repeats; ``(carried, total)``.

    Raises ``ValueError`` when the two runs differ in anything but the Reasoner (window,
    resample, temperature, Optimizer ...): then a repeated round 1 proves nothing."""
    settings = json.loads((old_dir / SETTINGS).read_text())
    other = json.loads((new_dir / SETTINGS).read_text())
    diff = sorted(k for k in set(settings["context"]) | set(other["context"])
                  if k not in REASONER_FIELDS and settings["context"].get(k) != other["context"].get(k))
    if diff:
        raise ValueError(f"{new_dir}: the round-1 run differs from {old_dir} in more than the Reasoner: "
                         + ", ".join(f"{k} {settings['context'].get(k)!r} -> {other['context'].get(k)!r}" for k in diff))
    old, new = read_episodes(old_dir / EPISODES), read_episodes(new_dir / EPISODES)
    kept = [ep for eid, ep in old.items()
            if eid in new and ep.get("env") == new[eid].get("env")
            and round_one(ep) is not None and round_one(ep) == round_one(new[eid])]
    settings["context"]["reasoner_adapter"] = adapter
    settings["context"]["reasoner_encoding"] = encoding
    settings["source"]["carried"] = {"from": str(old_dir), "episodes": len(kept),
                                     "rule": "round 1 answered word for word by the new Reasoner"}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    (out_dir / EPISODES).write_text("".join(json.dumps(ep) + "\n" for ep in kept))
    return len(kept), len(old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("matrix", type=Path, help="the recorded matrix (its episodes/ directory is read)")
    ap.add_argument("round1", type=Path, help="the new Reasoner's round-1 matrix (same cells)")
    ap.add_argument("out", type=Path, help="the new matrix directory (episodes/ is written)")
    ap.add_argument("--reasoner-adapter", required=True, help="exactly as the rerun will pass it")
    ap.add_argument("--reasoner-encoding", default=None, help="as the rerun will pass it (default: none)")
    a = ap.parse_args(argv)
    cells = sorted(p.parent for p in (a.round1 / "episodes").glob(f"*/*/dara/{EPISODES}"))
    if not cells:
        ap.error(f"{a.round1}/episodes: no */*/dara/{EPISODES}")
    total_kept = total = 0
    for new_dir in cells:
        rel = new_dir.relative_to(a.round1 / "episodes")
        old_dir = a.matrix / "episodes" / rel
        if not (old_dir / EPISODES).is_file():
            print(f"{rel.parts[0]:<28} not in {a.matrix}: run in full")
            continue
        out_dir = a.out / "episodes" / rel
        if (out_dir / EPISODES).exists():
            print(f"{rel.parts[0]:<28} {out_dir / EPISODES} exists: left as it is", file=sys.stderr)
            continue
        kept, n = carry_cell(old_dir, new_dir, out_dir, a.reasoner_adapter, a.reasoner_encoding)
        total_kept, total = total_kept + kept, total + n
        print(f"{rel.parts[0]:<28} carried {kept:3d} of {n:3d}; {n - kept} to run")
    print(f"all cells: carried {total_kept} of {total} episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
