#!/usr/bin/env bash
# The generalist evaluation matrix (docs/results.md, "Generalist matrix").
#
#   families: quadratic exponential hill media (held-out seed 7; training draws its
#             environments from env-seed 2000/3000 streams) at T in {3, 6, 10, 16},
#             and robyn meridian-national meridian-geo at their own T (sim-to-real);
#   noise 0 and 0.1; 10 rounds; methods dara, heuristic, gradient, local-model, uniform;
#   per-round regret with 95% intervals, parse-error and fallback rate per cell.
#
# Every cell resumes from $OUT/episodes/<cell>/<method>/episodes.jsonl when rerun, so the
# matrix can be run over several sittings:   N=20 benchmarks/eval_generalist.sh
# A cell whose $OUT/<cell>.json exists is complete and skipped (REDO=1 recomputes it from
# its episodes, e.g. after a change to the numeric methods).
# Adapters: REASONER / OPTIMIZER (dirs) and their encodings; defaults are the shipped ones.
# RL comparison (6 cells at noise 0.1: quadratic and media at T 6 and 16, robyn,
# meridian-geo; 30 envs, paired per environment):  MODE=rl benchmarks/eval_generalist.sh
# (RL_RUNS = run names under training/runs, RL_ENCODING = their prompt encoding)
# Reasoner comparison (round 1 only, the Reasoner's round; 9 cells at noise 0.1: quadratic,
# hill and media at T 6 and 16, robyn, meridian-geo, meridian-national; 40 envs, paired):
#   MODE=reasoner REASONER_RUNS="run1 run2" benchmarks/eval_generalist.sh
# CELLS='regex' runs only the matrix cells whose name matches (e.g. CELLS='T16|robyn').
set -euo pipefail
N=${N:-20}
OUT=${OUT:-runs/eval-generalist}
SEED=${SEED:-7}
ROUNDS=${ROUNDS:-10}
MODE=${MODE:-matrix}
ADAPTERS=()
[[ -n "${REASONER:-}" ]] && ADAPTERS+=(--reasoner-adapter "$REASONER")
[[ -n "${REASONER_ENCODING:-}" ]] && ADAPTERS+=(--reasoner-encoding "$REASONER_ENCODING")
[[ -n "${OPTIMIZER:-}" ]] && ADAPTERS+=(--optimizer-adapter "$OPTIMIZER")
[[ -n "${OPTIMIZER_ENCODING:-}" ]] && ADAPTERS+=(--optimizer-encoding "$OPTIMIZER_ENCODING")
mkdir -p "$OUT"

cell() {  # cell NAME FAMILY NOISE [--periods T] [extra bench flags...]
  local name=$1 fam=$2 noise=$3; shift 3
  [[ -n "${CELLS:-}" && ! "$name" =~ $CELLS ]] && return 0
  # a cell's JSON is written when it completes: keep it (and its timings) unless REDO=1 or
  # it was run with another number of environments or rounds
  if [[ -f "$OUT/$name.json" && -z "${REDO:-}" ]] && python3 - "$OUT/$name.json" "$N" "$ROUNDS" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])).get("config", {})
sys.exit(0 if (c.get("envs"), c.get("rounds")) == (int(sys.argv[2]), int(sys.argv[3])) else 1)
PY
  then echo "== $name: done ($OUT/$name.json)" >&2; return 0; fi
  echo "== $name" >&2
  dara bench --family "$fam" --noise "$noise" --envs "$N" --rounds "$ROUNDS" --seed "$SEED" \
      --policies "${POLICIES:-dara,heuristic,gradient,local-model,uniform}" "$@" "${ADAPTERS[@]}" \
      --json "$OUT/$name.json" --plot "$OUT/$name.png" --llm-out "$OUT/episodes/$name"
}

paired_cell() {  # paired_cell RUN "FAMILY [--periods T]": DARA only, noise 0.1, named rl-RUN-CELL
  local run=$1; set -- $2
  POLICIES=dara cell "rl-$run-$1${3:+-T$3}" "$1" 0.1 "${@:2}" --no-oracle
}

if [[ "$MODE" == matrix ]]; then
  for noise in 0 0.1; do
    for fam in quadratic exponential hill media; do
      for T in 3 6 10 16; do
        cell "$fam-T$T-n$noise" "$fam" "$noise" --periods "$T"
      done
    done
    for fam in robyn meridian-national meridian-geo; do
      cell "$fam-n$noise" "$fam" "$noise"
    done
  done
elif [[ "$MODE" == rl ]]; then
  # GRPO-A vs fixed-reference GRPO vs SFT-only Optimizers, same environments and the same
  # Reasoner (REASONER/REASONER_ENCODING, default shipped); paired by episode id in
  # benchmarks/rl_compare.py.
  N=${N_RL:-30}
  RL_RUNS=${RL_RUNS:-"gen-grpo-optimizer-hint gen-grpo-optimizer-hint-fixed-ref gen-sft-optimizer-hint"}
  REASONER_FLAGS=("${ADAPTERS[@]}")
  for run in $RL_RUNS; do
    for spec in "quadratic --periods 6" "quadratic --periods 16" "media --periods 6" \
                "media --periods 16" "robyn" "meridian-geo"; do
      ADAPTERS=("${REASONER_FLAGS[@]}" --optimizer-adapter "training/runs/$run/adapter"
                --optimizer-encoding "${RL_ENCODING:-delta-hint}")
      paired_cell "$run" "$spec"
    done
  done
  echo "paired tests: python benchmarks/rl_compare.py $OUT/episodes --runs $RL_RUNS" >&2
elif [[ "$MODE" == reasoner ]]; then
  # Reasoner adapters (training/runs/<run>/adapter, each with the encoding its run declares) on the same environments at
  # round 1; paired by episode id in benchmarks/rl_compare.py like the RL comparison.
  N=${N_REASONER:-40}
  ROUNDS=1
  REASONER_RUNS=${REASONER_RUNS:-"gen-sft-reasoner-hint"}
  for run in $REASONER_RUNS; do
    for spec in "quadratic --periods 6" "quadratic --periods 16" "hill --periods 6" "hill --periods 16" \
                "media --periods 6" "media --periods 16" "robyn" "meridian-geo" "meridian-national"; do
      ADAPTERS=(--reasoner-adapter "training/runs/$run/adapter")
      paired_cell "$run" "$spec"
    done
  done
  echo "paired tests: python benchmarks/rl_compare.py $OUT/episodes --runs $REASONER_RUNS" >&2
else
  echo "MODE must be matrix, rl or reasoner, got '$MODE'" >&2
  exit 2
fi
echo "tables: python benchmarks/results_table.py $OUT/*.json" >&2
