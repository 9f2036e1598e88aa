#!/usr/bin/env bash
# Throughput (generated tokens/s) against micro-batches in flight M, for S = 1, 2, 3 CPU stages of
# one intra-op thread each, with 16 concurrent greedy requests (glmpipe batch). Each stage's busy
# fraction comes from its own timers (the "busy" field of the stage log lines). The ideal GPipe
# utilisation M/(M+S-1) is printed beside each row.
# Usage: bench/bench_throughput.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/glmpipe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$bin make-tiny-model "$work/model" --layers 12 --hidden 1024 --heads 16 --vocab 32000 --seed 3 >/dev/null
for i in $(seq 16); do
  echo "{\"id\": \"r$i\", \"ids\": [11, $((100 + i)), 7, 31996, 31997], \"max_new_tokens\": 24, \"greedy\": true}"
done > "$work/in.jsonl"
echo "## bench_throughput $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "model: 12 layers, hidden 1024, vocab 32000, fp32; 16 requests x 24 greedy tokens; KV slots 16"
echo
echo "| S | M | tokens/s | vs M=1 | ideal M/(M+S-1) | per-stage busy |"
echo "|---|---|---|---|---|---|"
for s in 1 2 3; do
  cfg=$work/s$s.yaml
  { echo "model: {path: $work/model, dtype: float32}"; echo "ranks:";
    for i in $(seq $s); do echo "  - {device: cpu, max_memory: 4GiB, threads: 1}"; done
    echo "placement: balanced"; echo "kv_cache: {max_batch: 16, max_seq_len: 64}"; echo "reserve: {cpu: 64MiB}"; } > "$cfg"
  base=""
  for m in $(seq $((2 * s))); do
    rm -f "$work/out.jsonl" "$work/out.errors.jsonl"
    log=$($bin batch --config "$cfg" --micro-batches $m --input "$work/in.jsonl" --output "$work/out.jsonl" 2>&1 >/dev/null)
    tps=$(echo "$log" | sed -n 's/.* \([0-9.]*\) tokens\/s$/\1/p' | tail -1)
    busy=$(echo "$log" | sed -n 's/.*stage \([0-9]\)\/[0-9]*: .*busy \([0-9.]*\)%.*/s\1 \2%/p' | tr '\n' ' ')
    [ -z "$base" ] && base=$tps
    echo "| $s | $m | $tps | $(awk -v a="$tps" -v b="$base" 'BEGIN{printf "%.2f", a/b}') | $(awk -v m=$m -v s=$s 'BEGIN{printf "%.2f", m/(m+s-1)}') | $busy |"
  done
done
