#!/usr/bin/env bash
# E2E low-data measurements on the real model (SmolLM2-135M-Instruct, CPU, one thread, greedy, <= 60 new
# tokens, first line kept). Test = the first 100 MRs of testset_w_refs.csv with all references (as in
# ANCHORS.md); the 200 training / 50 dev MRs are seed 13's draw from devset. Run from the repo root:
#   bash results/e2e/run.sh [zero-shot|demos|demos-similar|prefix-tuning]...   (default: zero-shot demos prefix-tuning)
# Writes results/e2e/<part>.json (prefix-tuning also its run directory under runs/e2e-prefix-200-13).
# Prefix-tuning settings: lr and batch size from a 10-step pilot on the training split (lr 3e-3 diverged:
# per-token loss 3.0 -> 17.8 in 3 steps; 3e-4 fell 2.5 -> ~1.4); 100 steps of 4 (input, reference)
# pairs is what ~15 minutes of one CPU thread allow (~8.5 s a step), selected on dev likelihood at 50/100.
set -euo pipefail
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD"
DATA_DIR="${AUTOPROMPT_DATA_DIR:-../shared/data}"
DATA=runs/e2e-200-13-test100
CLI="python -m autoprompt_search.cli"
INSTRUCTION='Write one sentence describing the restaurant from its attributes.\nAttributes: {mr}\nDescription:[P]'
[ -f "$DATA/test.jsonl" ] || $CLI make-e2e --data-dir "$DATA_DIR" --train 200 --dev 50 --seed 13 --test-limit 100 --out "$DATA"
for part in "${@:-zero-shot demos prefix-tuning}"; do for p in $part; do case "$p" in
  zero-shot) $CLI evaluate --data "$DATA" --split test --template "$INSTRUCTION" --output-json results/e2e/zero-shot.json ;;
  demos) $CLI evaluate --data "$DATA" --split test --template "$INSTRUCTION" --demos 2 --no-demo-per-class \
           --demo-selection random --demo-seed 13 --output-json results/e2e/demos-2-random.json ;;
  demos-similar) $CLI evaluate --data "$DATA" --split test --template "$INSTRUCTION" --demos 2 --no-demo-per-class \
           --demo-selection similar --output-json results/e2e/demos-2-similar.json ;;
  prefix-tuning) $CLI discover --searcher prefix-tuning --data "$DATA" --seed 13 \
           --template 'Attributes: {mr}\nDescription:[P]' \
           --config '{"prefix_length": 10, "mlp_hidden": 512, "init": "text:Write one sentence describing the restaurant from its attributes.", "lr": 0.0003, "batch_size": 4, "steps": 100, "eval_every": 50, "patience": null}' \
           --seconds 1200 --out runs/e2e-prefix-200-13 --output-json results/e2e/prefix-tuning-200-13.json ;;
  *) echo "unknown part $p: zero-shot, demos, demos-similar or prefix-tuning" >&2; exit 2 ;;
esac; done; done
