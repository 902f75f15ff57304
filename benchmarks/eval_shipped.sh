#!/usr/bin/env bash
# Evaluation of the shipped adapters (docs/results.md). Held-out seed 7 (training uses
# env-seed 1000). LLM methods run through the DARA graph with tolerance 0; numeric rows
# use the same environments. Results: runs/eval/*.json, plots runs/eval/*.png.
set -euo pipefail
N=${N:-20}
mkdir -p runs/eval
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 \
    --policies dara,heuristic,gradient,local-model,uniform \
    --json runs/eval/quadratic.json --plot runs/eval/quadratic.png --llm-out runs/eval/episodes
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 \
    --policies dara-fixed-ref,optimizer-only,reasoner-only,base --no-oracle \
    --json runs/eval/ablations.json --llm-out runs/eval/episodes
for fam in exponential hill robyn meridian-national; do
  dara bench --family "$fam" --envs "${N_OTHER:-10}" --rounds 10 --seed 7 \
      --policies dara,heuristic,local-model,uniform \
      --json "runs/eval/$fam.json" --plot "runs/eval/$fam.png" --llm-out runs/eval/episodes
done
# Optimizer encoding ablation at an equal budget (100 SFT steps each, uniform start):
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer-absolute/adapter --optimizer-encoding absolute \
    --json runs/eval/enc-absolute.json --llm-out runs/eval/enc-absolute
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer/adapter-step100 --optimizer-encoding delta \
    --json runs/eval/enc-delta.json --llm-out runs/eval/enc-delta
