"""Direction check of a Reasoner: does its round-1 plan take money from the clearly best slot?

200 generated tasks (T 3-12, budgets 1-10^6, all synthetic families, noise up to 0.1) where
one slot has the highest MROI in every history row and at least 1.5x the runner-up's
(``training.direction_check``). A plan that gives that slot less than its mean historical
spend is a violation; an answer that could not be used counts as one too.

    python benchmarks/direction_check.py                        # shipped Reasoner
    python benchmarks/direction_check.py --adapter DIR --encoding delta-slope
    python benchmarks/direction_check.py --policy local-model   # a numeric method

Prints the count and writes ``--json`` (per-task plans, violations) if asked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default="llm", help="llm or a numeric baseline name")
    p.add_argument("--adapter", default=None, help="Reasoner adapter dir (default: the shipped one)")
    p.add_argument("--encoding", default=None, help="Reasoner prompt encoding (default: the adapter's declared one)")
    p.add_argument("--base", default="embedded")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--json", default=None, help="write the result here")
    a = p.parse_args(argv)
    from training.direction_check import check_policy

    res = check_policy(a.policy, a.adapter, a.encoding, a.n, a.base)
    print(f"{res['violations']} violations out of {res['tasks']} "
          f"({res['unusable_answers']} unusable answers) in {res['seconds']} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
