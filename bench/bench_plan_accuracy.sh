#!/usr/bin/env bash
# Plan vs measured memory per rank: for fp32, bf16, int8 and int4 (quantized at load, bf16 rest), in
# one process and as a 2-rank pipeline, the plan's resident bytes of each rank (weights + disk
# window + KV cache: what a rank holds once loaded) against the measured growth of its peak RSS
# (VmHWM once loaded with its KV cache allocated, minus VmRSS before loading), from the ranks'
# `memory:` log lines. The plan's activation estimate (a full-length prefill) is listed apart:
# start-up does not run one.
# Usage: bench/bench_plan_accuracy.sh [BUILD_DIR]   (prints a markdown table; exit 1 if a rank is off by > 5 %)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$(realpath "$build/glmpipe")
work=$(mktemp -d "${TMPDIR:-/tmp}/plan_acc.XXXXXX")
trap 'rm -rf "$work"' EXIT
shape="--layers 4 --hidden 2048 --heads 16 --inner 8192 --vocab 65024"
$bin make-tiny-model "$work/model" $shape --seed 9 >/dev/null
ids=11,42,7,150,65020,65021
echo "## bench_plan_accuracy $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "model: make-tiny-model $shape (fp32 on disk, lm_head stored; tie_word_embeddings default: tied); kv_cache 1 x 256"
echo
echo "| dtype | quantization | ranks | rank | planned resident (weights + window + kv) | measured RSS growth | diff | planned activations (not run) |"
echo "|---|---|---|---|---|---|---|---|"
worst=0
for combo in float32: bfloat16: bfloat16:int8 bfloat16:int4; do
  dtype=${combo%%:*}; q=${combo#*:}
  for n in 1 2; do
    cfg=$work/$dtype$q$n.yaml
    { echo "model: {path: $work/model, dtype: $dtype${q:+, quantization: $q}}"; echo "ranks:";
      for i in $(seq $n); do echo "  - {device: cpu, max_memory: 8GiB, threads: 1}"; done
      echo "kv_cache: {max_batch: 1, max_seq_len: 256}"; echo "reserve: {cpu: 64MiB}"; } > "$cfg"
    log=$($bin generate --config "$cfg" --ids $ids --max-new-tokens 2 --greedy --print-ids 2>&1 >/dev/null)
    while read -r rank planned growth act; do
      diff=$(awk -v p="$planned" -v g="$growth" 'BEGIN{printf "%+.1f", 100*(g-p)/p}')
      abs=$(awk -v d="$diff" 'BEGIN{print (d<0?-d:d)}')
      worst=$(awk -v a="$abs" -v w="$worst" 'BEGIN{print (a>w?a:w)}')
      echo "| $dtype | ${q:-none} | $n | $rank | $(awk -v b="$planned" 'BEGIN{printf "%.1f MiB", b/1048576}') | $(awk -v b="$growth" 'BEGIN{printf "%.1f MiB", b/1048576}') | $diff % | $(awk -v b="$act" 'BEGIN{printf "%.1f MiB", b/1048576}') |"
    done < <(echo "$log" | grep 'memory: peak_rss' |
             awk '{for (i = 1; i < NF; i++) v[$i] = $(i + 1); print v["rank"], v["planned_resident"], v["load_peak_rss"] - v["start_rss"], v["planned_activations"]}' |
             sort -n)
  done
done
echo
echo "worst |diff|: $worst %"
awk -v w="$worst" 'BEGIN{exit !(w <= 5)}'
