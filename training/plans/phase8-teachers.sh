#!/usr/bin/env bash
# Phase 8, call 1 (one H200 call, < 10 min): MiniLM-L6 teachers for SST-2 (training/minilm_teacher.py).
# Phases 4-7 left every SST-2 LSTM and ensemble at 0.85-0.86 dev, so phase 7's distillation had no accuracy
# above the students' to pass on. Here the teachers are a pretrained Transformer encoder (all-MiniLM-L6-v2,
# from PyPI, training/minilm.py) fine-tuned on SST-2's 6,920 training sentences, lr x seed, early-stopped on
# dev; their mean probabilities label the same 250,000 IMDb sentences as phase 7. Call 2 (phase8.sh) trains
# the students. Carry: .carry/minilm (python -m training.minilm --out .carry/minilm --dataset sst2 --texts
# .carry/transfer/imdb-sentences.jsonl.gz), .carry/data (sst2 train/dev), .carry/transfer/imdb-sentences.jsonl.gz.
# Usage: bash training/plans/phase8-teachers.sh RUNS LOGS [PACK_DEST]   (SMOKE=1: tiny run, plumbing only)
source training/plans/common.sh "$@"
TEXTS=${TEXTS:-.carry/transfer/imdb-sentences.jsonl.gz}
EXTRA=""; [ "${SMOKE:-0}" = 1 ] && EXTRA="--limit 200 --epochs 1 --eval-every 5"
timeout -k 20 "$(left)" python3 -m training.minilm_teacher --minilm .carry/minilm --dataset sst2 \
  --data-dir .carry/data --texts "$TEXTS" --out "$RUNS/sst2-minilm.jsonl.gz" --lrs 5e-5 1e-4 --seeds 1 2 3 \
  --epochs 4 --eval-every 50 --time-budget $(( $(left) - 90 )) $EXTRA 2>&1 | tee "$LOGS/minilm-teachers.log"
if [ -n "$PACK" ]; then
  mkdir -p "$PACK" && cp "$RUNS/sst2-minilm.jsonl.gz" "$PACK/"
  tar -czf "$PACK/logs.tar.gz" -C "$LOGS" .
fi
