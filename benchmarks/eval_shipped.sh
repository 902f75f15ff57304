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
    --policies optimizer-only,reasoner-only,base --no-oracle \
    --json runs/eval/ablations.json --llm-out runs/eval/episodes
# the T = 6 recipe's plain-GRPO Optimizer (the `dara-fixed-ref` row of docs/results.md §2)
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies dara --no-oracle \
    --optimizer-adapter training/runs/grpo-optimizer-fixed-ref/adapter \
    --json runs/eval/dara-fixed-ref.json --llm-out runs/eval/dara-fixed-ref
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies dara --no-oracle \
    --optimizer-adapter "$SFT_OPT" --json runs/eval/dara-sft.json --llm-out runs/eval/dara-sft
# Optimizer encoding at an equal budget (100 SFT steps each, uniform start)
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer-absolute/adapter --optimizer-encoding absolute \
    --json runs/eval/enc-absolute.json --llm-out runs/eval/enc-absolute
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies optimizer-only --no-oracle \
    --optimizer-adapter training/runs/sft-optimizer/adapter-step100 --optimizer-encoding delta \
    --json runs/eval/enc-delta.json --llm-out runs/eval/enc-delta
# 3. other families, incl. the data-driven ones (sim-to-real), shipped adapters
for fam in exponential hill robyn meridian-national meridian-geo; do
  dara bench --family "$fam" --envs "$N_OTHER" --rounds 10 --seed 7 \
      --policies dara,heuristic,gradient,local-model,uniform \
      --json "runs/eval/famg-$fam.json" --plot "runs/eval/famg-$fam.png" --llm-out "runs/eval/famg-$fam"
done
# 4. experiments that were not shipped (docs/results.md §2-3)
# GRPO-A Reasoner vs the SFT one, round 1 only, 100 environments
dara bench --family quadratic --envs 100 --rounds 1 --seed 7 --policies reasoner-only --no-oracle \
    --json runs/eval/r100-sft.json --llm-out runs/eval/r100-sft
dara bench --family quadratic --envs 100 --rounds 1 --seed 7 --policies reasoner-only --no-oracle \
    --reasoner-adapter training/runs/grpo-reasoner-m8/adapter --json runs/eval/r100-grpo.json --llm-out runs/eval/r100-grpo
dara bench --family quadratic --envs "$N" --rounds 10 --seed 7 --policies dara --no-oracle \
    --reasoner-adapter training/runs/grpo-reasoner-m8/adapter --json runs/eval/r-grpo.json --llm-out runs/eval/r-grpo
# delta-slope Optimizer (SFT 300 delta + 100 delta-slope) vs its control (SFT 300 delta + 100
# delta; that adapter is not committed: rerun the command in training/runs/sft-optimizer-delta400)
for fam in robyn quadratic; do
  n=$([ "$fam" = quadratic ] && echo "$N" || echo "$N_OTHER")
  dara bench --family "$fam" --envs "$n" --rounds 10 --seed 7 --policies dara --no-oracle \
      --optimizer-adapter training/runs/sft-optimizer-slope/adapter --optimizer-encoding delta-slope \
      --json "runs/eval/$fam-slope.json" --llm-out "runs/eval/$fam-slope"
  dara bench --family "$fam" --envs "$n" --rounds 10 --seed 7 --policies dara --no-oracle \
      --optimizer-adapter runs/sft-optimizer-delta400/adapter \
      --json "runs/eval/$fam-delta400.json" --llm-out "runs/eval/$fam-delta400"
  # GRPO-A on delta-slope (adapter not committed: rerun training/runs/grpo-optimizer-slope-m8's config)
  dara bench --family "$fam" --envs "$n" --rounds 10 --seed 7 --policies dara --no-oracle \
      --optimizer-adapter runs/grpo-optimizer-slope-m8/adapter --optimizer-encoding delta-slope \
      --json "runs/eval/$fam-slope-grpo.json" --llm-out "runs/eval/$fam-slope-grpo"
done
