"""Which recorded model answers the current decoder reads differently.

A decoder change (``policies.prompts.decode``) can turn an answer a past run used into an
error, or the reverse. This rebuilds every LLM decision of ``dara bench --llm-out``
episodes files (the request as the graph built it, ``benchmarks/hint_agreement.py``),
decodes the recorded text again and lists the decisions whose outcome differs from the
recorded one: a run whose decisions all read the same would replay identically.

    python benchmarks/redecode.py docs/data/matrix/episodes/*/*/dara/episodes.jsonl
    python benchmarks/redecode.py --encoding delta-hint runs/eval/episodes/*/*/dara/episodes.jsonl

The encoding defaults to the one each shipped adapter declares; ``--encoding`` sets
both roles' when a run used other adapters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.hint_agreement import recorded_requests  # noqa: E402
from policies.prompts import decode  # noqa: E402


def changed_decisions(path: Path, window: int, encodings: dict[str, str]) -> tuple[int, list[dict]]:
    """``(decisions read, the ones whose outcome differs)``; an outcome is "used" (an
    allocation) or the error code."""
    n, changed = 0, []
    for ep, r, request in recorded_requests(path, window):
        n += 1
        was = "used" if r.get("proposal") is not None else (r.get("error") or "error").split(":", 1)[0]
        now_d = decode(r.get("text") or "", request, encodings[request.role])
        now = "used" if now_d.allocation is not None else now_d.meta["error_code"]
        if was != now:
            changed.append({"episode": ep["id"], "round": r["round"], "role": request.role,
                            "was": was, "now": now, "error": now_d.error, "text": r.get("text")})
    return n, changed


def main(argv=None) -> int:
    from policies import shipped_adapter
    from policies.adapter_meta import encoding_for

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, nargs="+", help="episodes.jsonl files of dara runs")
    ap.add_argument("--window", type=int, default=3, help="the graph's sliding window w (default 3)")
    ap.add_argument("--encoding", default=None, help="both roles' prompt encoding (default: the shipped pair's)")
    args = ap.parse_args(argv)
    encodings = {role: encoding_for(role, shipped_adapter(role), args.encoding) for role in ("reasoner", "optimizer")}
    total = 0
    for path in args.episodes:
        n, changed = changed_decisions(path, args.window, encodings)
        total += len(changed)
        print(f"{path}: {n} decisions, {len(changed)} read differently")
        for c in changed:
            print(f"  {c['episode']} round {c['round']} {c['role']}: {c['was']} -> {c['now']} ({c['error']}); "
                  f"text {c['text']!r}")
    print(f"{total} decisions read differently in {len(args.episodes)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
