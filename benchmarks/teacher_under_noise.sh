#!/usr/bin/env bash
# Which numeric method should teach the adapters? local-model vs gradient (and the
# heuristic for scale) under observation noise, per family and slot count.
# 300 held-out environments per cell, 6 rounds, seed 77; JSON in docs/data/teacher/,
# the table in docs/training.md ("Choosing the SFT teacher").
set -euo pipefail
out=${1:-docs/data/teacher}
mkdir -p "$out"
for f in quadratic hill media; do
  for T in 3 6 16; do
    for nz in 0 0.1 0.2; do
      dara bench --family $f --periods $T --envs 300 --rounds 6 --noise $nz --seed 77 \
        --policies heuristic,gradient,local-model --no-oracle --json "$out/$f-$T-$nz.json" >/dev/null
    done
  done
done
