#!/usr/bin/env bash
# Trains the demo model from scratch on this machine and writes it to models/tah-arith:
# data and tokenizer, a reference Qwen3 (base), oracle labels, stage 1 (LoRA only, TaH+), stage 2
# (decider), then the evaluation table. Each step is skipped when its output exists and training
# steps resume from their last checkpoint, so an interrupted run continues where it stopped.
# Environment: WORK (scratch, default /tmp/tah-arith-work), OUT (default models/tah-arith),
# THREADS (libtorch threads, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/tah-arith-work}
out=${OUT:-models/tah-arith}
threads=${THREADS:-2}
tah() { scripts/tah "$@"; }

[ -f "$work/data/test.jsonl" ] || tah train make-data --out "$work/data"
[ -f "$work/base/model.safetensors" ] || tah train base --tokenizer "$work/data/tokenizer" \
  --data "$work/data/train.jsonl" --held-out "$work/data/val.jsonl" --out "$work/base" \
  --steps 4000 --batch-size 48 --lr 2e-3 --eval-every 250 --threads "$threads" --resume

# Stages 1 and 2 see the first 64,000 training problems, labelled by the frozen reference.
head -n 64000 "$work/data/train.jsonl" > "$work/data/train-64k.jsonl"
[ -f "$work/labels/train.jsonl" ] || tah train label --model "$work/base" --data "$work/data/train-64k.jsonl" --out "$work/labels/train.jsonl" --threads "$threads"
[ -f "$work/labels/val.jsonl" ] || tah train label --model "$work/base" --data "$work/data/val.jsonl" --out "$work/labels/val.jsonl" --threads "$threads"

[ -f "$work/stage1/model.safetensors" ] || tah train stage1 --model "$work/base" --lora-only \
  --labels "$work/labels/train.jsonl" --held-out "$work/labels/val.jsonl" --out "$work/stage1" \
  --steps 1000 --batch-size 64 --lr 2e-3 --eval-every 100 --threads "$threads" --resume
tah train stage2 --model "$work/stage1" --labels "$work/labels/train.jsonl" --held-out "$work/labels/val.jsonl" \
  --out "$out" --steps 600 --batch-size 64 --lr 1e-3 --eval-every 100 --threads "$threads" --resume

cp "$work/base/loss.png" "$out/base-loss.png"
cp "$work/stage1/loss.png" "$out/stage1-loss.png"
mv "$out/loss.png" "$out/stage2-loss.png"
rm -f "$out/training_log.json"
tah train eval --model "$out" --data "$work/data/test.jsonl" --json "$out/eval.json" --threads "$threads" | tee "$out/eval.md"
# Accuracy against depth-2 share: depth budgets, fixed thresholds and the Oracle (tradeoff.md/.json/.png).
tah train tradeoff --model "$out" --data "$work/data/test.jsonl" --out "$out" --threads "$threads"
