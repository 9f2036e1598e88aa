#!/usr/bin/env bash
# Per-token cost of the pipeline: batch-1 greedy decode ms/token for S = 1, 2, 3 stages of the same
# model on the same machine, one intra-op thread per rank (so S stages use S threads in total but the
# work per token is the same: the stages run one after another for a single sequence).
# Usage: bench/bench_pipeline.sh [BUILD_DIR]  (prints a markdown table; numbers from rank 0's timers)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/glmpipe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$bin make-tiny-model "$work/model" --layers 12 --hidden 1024 --heads 16 --vocab 32000 --seed 3 >/dev/null
ids=11,42,7,150,31996,31997
tokens=64
echo "## bench_pipeline $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "model: 12 layers, hidden 1024, inner 4096, vocab 32000 (fp32, $(du -sh "$work/model" | cut -f1)); $tokens greedy tokens, batch 1"
echo
echo "| stages | ms/token (rank 0 wall / tokens) | vs S=1 | per-stage busy |"
echo "|---|---|---|---|"
base=""
for s in 1 2 3; do
  cfg=$work/s$s.yaml
  { echo "model: {path: $work/model, dtype: float32}"; echo "ranks:";
    for i in $(seq $s); do echo "  - {device: cpu, max_memory: 4GiB, threads: 1}"; done
    echo "placement: balanced"; echo "kv_cache: {max_batch: 1, max_seq_len: 256}"; echo "reserve: {cpu: 64MiB}"; } > "$cfg"
  if [ "$s" = 1 ]; then
    log=$($bin generate --model "$work/model" --threads 1 --max-seq 256 --ids $ids --max-new-tokens $tokens --greedy --print-ids 2>&1 >/dev/null)
  else
    log=$($bin generate --config "$cfg" --ids $ids --max-new-tokens $tokens --greedy --print-ids 2>&1 >/dev/null)
  fi
  wall=$(echo "$log" | sed -n 's/.*stage 0\/[0-9]*: .* wall \([0-9.]*\) s.*/\1/p')
  busy=$(echo "$log" | sed -n 's/.*stage \([0-9]\)\/[0-9]*: .*busy \([0-9.]*\)%.*/s\1 \2%/p' | tr '\n' ' ')
  ms=$(awk -v w="$wall" -v t=$tokens 'BEGIN{printf "%.2f", 1000*w/t}')
  [ -z "$base" ] && base=$ms
  ratio=$(awk -v a="$ms" -v b="$base" 'BEGIN{printf "%.2f", a/b}')
  echo "| $s | $ms | $ratio | $busy |"
done
