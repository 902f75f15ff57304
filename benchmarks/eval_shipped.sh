#!/usr/bin/env bash
# Evaluation of the shipped adapters (docs/results.md). Held-out seed 7 (training uses
# env-seed 1000). LLM methods run through the DARA graph with tolerance 0; numeric rows
# use the same environments. Results: runs/eval/*.json, plots runs/eval/*.png; every
# call resumes from runs/eval/<dir>/<method>/episodes.jsonl when rerun.
# Tables for docs/results.md: benchmarks/results_table.py on these JSON files.
set -euo pipefail
N=${N:-20}
N_OTHER=${N_OTHER:-10}
SFT_OPT=training/runs/sft-optimizer/adapter
mkdir -p runs/eval
# 1. headline: shipped Reasoner + GRPO-A Optimizer vs the numeric baselines (= make demo)
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 \
    --policies dara,heuristic,gradient,local-model,uniform \
    --json runs/eval/quadratic.json --plot runs/eval/quadratic.png --llm-out runs/eval/episodes
# 2. ablations
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 \
    --policies dara-fixed-ref,optimizer-only,reasoner-only,base --no-oracle \
    --json runs/eval/ablations.json --llm-out runs/eval/episodes
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies dara --no-oracle \
    --optimizer-adapter "$SFT_OPT" --json runs/eval/dara-sft.json --llm-out runs/eval/dara-sft
# Optimizer encoding at an equal budget (100 SFT steps each, uniform start)
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer-absolute/adapter --optimizer-encoding absolute \
    --json runs/eval/enc-absolute.json --llm-out runs/eval/enc-absolute
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer/adapter-step100 --optimizer-encoding delta \
    --json runs/eval/enc-delta.json --llm-out runs/eval/enc-delta
# 3. other families, incl. the data-driven ones (sim-to-real); SFT Optimizer as in docs/results.md §3
for fam in exponential hill robyn meridian-national; do
  dara bench --family "$fam" --envs "$N_OTHER" --rounds 10 --seed 7 \
      --policies dara,heuristic,gradient,local-model,uniform --optimizer-adapter "$SFT_OPT" \
      --json "runs/eval/fam-$fam.json" --plot "runs/eval/fam-$fam.png" --llm-out "runs/eval/fam-$fam"
done
