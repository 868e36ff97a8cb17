#!/usr/bin/env bash
# A real (small) adaptation of SmolLM2-135M-Instruct on English Wikipedia that fits a 2-core CPU:
# 200 steps x 4 blocks x 128 tokens, attention annealed over the first 60 steps, held-out ELBO before and after.
# Usage: bash training/smollm2_enwiki_cpu.sh [OUTPUT_DIR] [SHARED_DATA_DIR]
set -euo pipefail
OUT=${1:-runs/smollm2-enwiki}
DATA=${2:-../shared/data}
diffusion-lm adapt \
  --dataset "$DATA/corpus/enwiki/enwiki_train-00-of-04.jsonl" --streaming \
  --eval-dataset "$DATA/corpus/enwiki/enwiki_validation.jsonl" --eval-samples 64 --eval-on-start \
  --output-dir "$OUT" --max-steps 200 --anneal-steps 60 --block-size 128 --batch-size 4 \
  --learning-rate 1e-4 --warmup-steps 20 --lr-scheduler-type cosine --save-steps 100 --logging-steps 10 \
  --seed 0 --no-sample
