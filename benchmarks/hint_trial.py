"""``dara bench`` with ``local-model`` options changed everywhere it plans: the numeric
baseline *and* the ``hint=`` line of the ``delta-hint`` prompts (a trial, not the product).

``benchmarks/trust_region.py`` measures ``local-model`` options on their own; whether
DARA gains from them depends on whether the shipped adapters follow a hint they were
not trained on (larger moves, say). This runs ``dara bench`` in-process with
``policies.baselines.local_model`` replaced by the same function with the options set,
so the hint, the ``local-model`` baseline and any fallback all use them; nothing in the
product changes:

    python benchmarks/hint_trial.py --option grow:1 -- --family media --periods 16 --noise 0.1 \\
        --envs 20 --rounds 10 --seed 7 --policies dara,local-model \\
        --json runs/hint-trial/media-T16.json --llm-out runs/hint-trial/episodes/media-T16

Compare with the matrix cell of the same seed and environments
(``docs/data/matrix/<cell>.json``; its episodes pair with these by episode id). The
figures in ``docs/data/hint-trial/`` were taken when ``grow`` was off by default (1);
``--option grow:1`` now runs that old behaviour against the default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.trust_region import local_model_options, parse_variant  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, bench_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--option", action="append", default=[], help="param:value for local_model (repeatable)")
    args = ap.parse_args(ours)
    if not bench_args:
        ap.error("give the dara bench arguments after --")
    try:
        _, options = parse_variant("trial=" + ",".join(args.option))
    except ValueError as e:
        ap.error(f"--option: {e}")
    from graph.commands import bench

    print(f"local-model options for this run: {options}", file=sys.stderr)
    with local_model_options(options):
        return bench.main(bench_args)


if __name__ == "__main__":
    raise SystemExit(main())
