"""Cost of the constrained-decoding logits processor per sequence per decoding step.

Feeds the processor every prefix of 16 well-formed T-slot answers (signed), as a batch of
16 rows, on 1 torch thread; the first pass fills the allowed-set memo (one entry per regex
state), the second is the steady state a serving process runs in.

    python benchmarks/answer_format_processor.py [--periods 6] [--rows 16]

``--compare REF`` times an older ``policies/constrained.py`` from git beside this one
(e.g. ``--compare HEAD~1``), in the same process, alternating.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _module_at(ref: str):
    src = subprocess.run(["git", "show", f"{ref}:policies/constrained.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "constrained_ref.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("constrained_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--periods", type=int, default=6)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--compare", default=None, help="A git ref whose processor to time beside this one.")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import policies.constrained as current
    from policies.models import embedded_tokenizer

    torch.set_num_threads(1)
    tok = embedded_tokenizer()
    rng = random.Random(1)
    texts = ["<answer>[" + ",".join(f"{rng.uniform(-1, 1):.2f}" for _ in range(args.periods)) + "]</answer>"
             for _ in range(args.rows)]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    steps = min(map(len, ids))
    variants = [("this checkout", current)] + ([(args.compare, _module_at(args.compare))] if args.compare else [])
    for rep in ("first pass", "steady state"):
        for name, mod in variants:
            proc = mod.AnswerFormatProcessor(tok, [mod.answer_pattern(args.periods, True)] * args.rows, 0)
            t0, n = time.perf_counter(), 0
            for k in range(1, steps):
                proc(torch.tensor([i[:k] for i in ids]), torch.zeros(args.rows, len(tok)))
                n += args.rows
            print(f"| {name} | {rep} | {(time.perf_counter() - t0) / n * 1e3:.3f} ms |", flush=True)
    print(f"(T = {args.periods}, {args.rows} rows, {steps - 1} steps, 1 torch thread, "
          f"load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
