#!/usr/bin/env bash
# What the disk tier costs: one cpu rank under a max_memory cap far below the model, its units
# served from the checkpoint's own files (mmap, pages released after each use) vs the resident run.
# Model: 4 full-width ChatGLM-6B layers in fp32 (hidden 4096, heads 32, inner 16384, vocab 130528;
# ~5.4 GB of weights). Checks: fp32 logits bit-identical (forward, 6 ids), VmHWM <= the cap; reports
# ms/token of greedy decode for the resident run and the disk run with a warm page cache and with
# a cold one (the checkpoint's pages evicted with posix_fadvise(DONTNEED) before the run).
# Usage: bench/bench_disk_tier.sh [BUILD_DIR] [CAP]   (default build, 3GiB; prints a markdown report)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cap=${2:-3GiB}
bin=$(realpath "$build/glmpipe")
work=$(mktemp -d "${TMPDIR:-/tmp}/disk_tier.XXXXXX")
trap 'rm -rf "$work"' EXIT
threads=${THREADS:-2}
tokens=${TOKENS:-8}
ids=11,42,7,150,130001,130004
$bin make-tiny-model "$work/model" --layers 4 --hidden 4096 --heads 32 --inner 16384 --vocab 130528 --seed 5 >/dev/null
cat > "$work/disk.yaml" <<YAML
model: {path: $work/model, dtype: float32}
ranks: [{device: cpu, max_memory: $cap, threads: $threads}]
kv_cache: {max_batch: 1, max_seq_len: 64}
reserve: {cpu: 256MiB}
disk: {path: $work/offload}
YAML
evict() { python3 -c 'import os,sys
for p in sys.argv[1:]:
    fd=os.open(p,os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$work"/model/*.safetensors; }
peak() { sed -n 's/.*memory: peak_rss \([0-9]*\).*/\1/p' | tail -1; }
wall() { sed -n 's/.*stage 0\/1: .* wall \([0-9.]*\) s.*/\1/p' | tail -1; }
mib() { awk -v b="$1" 'BEGIN{printf "%.0f MiB", b/1048576}'; }
msper() { awk -v w="$1" -v t="$tokens" 'BEGIN{printf "%.0f", 1000*w/t}'; }

res_log=$($bin forward --model "$work/model" --threads "$threads" --ids $ids --out "$work/res.npy" 2>&1)
disk_log=$($bin forward --config "$work/disk.yaml" --ids $ids --out "$work/disk.npy" 2>&1)
if cmp -s "$work/res.npy" "$work/disk.npy"; then same="bit-identical"; else same="DIFFERENT"; fi
gen() { $bin generate "$@" --ids $ids --max-new-tokens $tokens --greedy --print-ids 2>&1 >/dev/null; }
r_log=$(gen --model "$work/model" --threads "$threads" --max-seq 64)
w_log=$(gen --config "$work/disk.yaml")
evict
c_log=$(gen --config "$work/disk.yaml")
cap_bytes=$($bin plan --config "$work/disk.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stages"][0]["bytes"]["budget"])')

echo "## bench_disk_tier $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $threads threads"
echo
echo "model: 4 layers, hidden 4096, inner 16384, heads 32, vocab 130528, fp32 ($(du -sh "$work/model" | cut -f1)); disk run: 1 cpu rank, max_memory $cap, every unit on disk; $tokens greedy tokens after a 6-token prompt"
echo
echo "| run | VmHWM | ms/token (decode wall / tokens) | logits vs resident |"
echo "|---|---|---|---|"
echo "| resident | $(mib "$(echo "$r_log" | peak)") | $(msper "$(echo "$r_log" | wall)") | (reference) |"
echo "| disk, warm page cache | $(mib "$(echo "$w_log" | peak)") | $(msper "$(echo "$w_log" | wall)") | $same |"
echo "| disk, cold page cache | $(mib "$(echo "$c_log" | peak)") | $(msper "$(echo "$c_log" | wall)") | |"
echo
hw=$(echo "$disk_log" | peak)
if [ "$hw" -le "$cap_bytes" ]; then echo "disk forward: VmHWM $(mib "$hw") <= max_memory $cap ($cap_bytes B): ok"; else echo "disk forward: VmHWM $(mib "$hw") > max_memory $cap: FAIL"; fi
[ "$same" = bit-identical ] && [ "$hw" -le "$cap_bytes" ]
