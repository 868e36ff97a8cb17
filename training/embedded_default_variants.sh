#!/usr/bin/env bash
# Embedded-default comparison (issue 21): the same sampled corpus, seed and 30 steps x 4 x 128 tokens per variant.
set -u
cd "$(dirname "$0")/.."
out=runs/embedded-default
first=""
for spec in \
  "block16|" \
  "block16-teacher|--context-attention causal --ar-loss-weight 1 --distill-weight 0.5 --block-curriculum 1:0,4:10,16:20" \
  "block4-teacher|--diffusion-block-size 4 --context-attention causal --ar-loss-weight 1 --distill-weight 0.5" \
  ; do
  name=${spec%%|*}; flags=${spec#*|}
  dir=$out/$name
  if [ -f "$dir/model.safetensors" ]; then echo "$name done"; continue; fi
  mkdir -p "$dir"
  if [ -n "$first" ] && [ -f "$first/embedded_corpus.jsonl" ] && [ ! -f "$dir/embedded_corpus.jsonl" ]; then
    cp "$first/embedded_corpus.jsonl" "$dir/"
  fi
  start=$(date +%s)
  python -m diffusion_lm.cli adapt --output-dir "$dir" $flags > "$dir/train.log" 2>&1
  echo "$name exit $? in $(( $(date +%s) - start )) s" | tee -a $out/times.txt
  [ -z "$first" ] && first=$dir
done
