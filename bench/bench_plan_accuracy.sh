#!/usr/bin/env bash
# Plan vs measured memory per rank: for fp32, bf16, int8 and int4 (quantized at load, bf16 rest), in
# one process and as 2- and 3-rank pipelines, from the ranks' `memory:` log lines:
#   load: the plan's resident bytes (weights + disk window + KV cache) against the growth of the
#         rank's peak RSS once loaded with its KV cache (VmHWM minus VmRSS, both from the baseline
#         taken just before loading, see reset_memory_baseline in launcher/startup_report.h);
#   run:  resident + the plan's activations (one full-length prefill and its GEMM workspace) against
#         the peak RSS growth after a prefill of S - 2 tokens (kv_cache 1 x S) and 2 decode steps.
# Usage: bench/bench_plan_accuracy.sh [BUILD_DIR]   (prints a markdown table; exit 1 if a rank is off by > 5 %)
#   PLAN_ACC_SHAPE  make-tiny-model shape (default: 2 full-width ChatGLM-6B blocks, its vocabulary)
#   PLAN_ACC_SEQ    kv_cache.max_seq_len S (default 512)
#   PLAN_ACC_RANKS  pipeline sizes (default "1 2 3")
#   PLAN_ACC_MODEL  reuse a model made with the same shape and --seed 9 (writing the 5.9 GB default takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$(realpath "$build/glmpipe")
work=$(mktemp -d "${TMPDIR:-/tmp}/plan_acc.XXXXXX")
trap 'rm -rf "$work"' EXIT
shape=${PLAN_ACC_SHAPE:-"--layers 2 --hidden 4096 --heads 32 --inner 16384 --vocab 130528"}
S=${PLAN_ACC_SEQ:-512}
model=${PLAN_ACC_MODEL:-$work/model}  # PLAN_ACC_MODEL: a model this script made before (same shape, seed 9)
[ -n "${PLAN_ACC_MODEL:-}" ] || $bin make-tiny-model "$model" $shape --seed 9 >/dev/null
ids=$(seq -s, 5 $((S + 2)))  # S - 2 prompt tokens (raw ids: --ids takes no prompt validation)
mib() { awk -v b="$1" 'BEGIN{printf "%.1f MiB", b/1048576}'; }
pct() { awk -v p="$1" -v g="$2" 'BEGIN{printf "%+.1f", 100*(g-p)/p}'; }
echo "## bench_plan_accuracy $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(lscpu | sed -n 's/^Model name: *//p')"
echo
echo "model: make-tiny-model $shape (fp32 on disk; tied head); kv_cache 1 x $S; prompt $((S - 2)) tokens + 2 decoded; threads 1 per rank"
echo
echo "| dtype | quantization | ranks | rank | planned resident | load growth | diff | planned + activations | run growth | diff |"
echo "|---|---|---|---|---|---|---|---|---|---|"
worst=0
for combo in float32: bfloat16: bfloat16:int8 bfloat16:int4; do
  dtype=${combo%%:*}; q=${combo#*:}
  for n in ${PLAN_ACC_RANKS:-1 2 3}; do
    cfg=$work/$dtype$q$n.yaml
    { echo "model: {path: $model, dtype: $dtype${q:+, quantization: $q}}"; echo "ranks:";
      for i in $(seq $n); do echo "  - {device: cpu, max_memory: 8GiB, threads: 1}"; done
      echo "kv_cache: {max_batch: 1, max_seq_len: $S}"; echo "reserve: {cpu: 64MiB}"
      echo "mpi: {liveness_timeout_s: 1200}"; } > "$cfg"  # a long 1-thread prefill on a loaded machine
    log=$($bin generate --config "$cfg" --ids "${ids%,*}" --max-new-tokens 2 --greedy --print-ids 2>&1 >/dev/null) ||
      { echo "$log" >&2; exit 1; }
    while read -r rank planned load act run; do
      d1=$(pct "$planned" "$load"); d2=$(pct $((planned + act)) "$run")
      worst=$(awk -v a="$d1" -v b="$d2" -v w="$worst" 'BEGIN{a=a<0?-a:a; b=b<0?-b:b; m=a>b?a:b; print (m>w?m:w)}')
      echo "| $dtype | ${q:-none} | $n | $rank | $(mib "$planned") | $(mib "$load") | $d1 % | $(mib $((planned + act))) | $(mib "$run") | $d2 % |"
    done < <(echo "$log" | grep 'memory: peak_rss' |
             awk '{for (i = 1; i < NF; i++) v[$i] = $(i + 1);
                   print v["rank"], v["planned_resident"], v["load_peak_rss"] - v["start_rss"], v["planned_activations"], v["peak_rss"] - v["start_rss"]}' |
             sort -n)
  done
done
echo
echo "worst |diff|: $worst %"
awk -v w="$worst" 'BEGIN{exit !(w <= 5)}'
