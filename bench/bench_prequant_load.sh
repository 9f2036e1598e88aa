#!/usr/bin/env bash
# Issue 19 "a pre-quantized int4 6B checkpoint loads in <= 10 s; its logits equal quantize-at-load's":
# builds a random ChatGLM-6B-shaped fp16 checkpoint (28 layers, hidden 4096, heads 32, inner 16384,
# vocab 130528; 13.4 GB), writes int4 and int8 checkpoints of it with `glmpipe quantize` (timed), and
# times `glmpipe forward` (single process, THREADS threads, 3 ids) of each pre-quantized checkpoint
# with a warm page cache and a cold one (its files evicted with posix_fadvise(DONTNEED): this VM
# refuses drop_caches) and of quantize-at-load (`--model FP16_DIR --quantize intN`, warm). Per run:
# the stage's own load time ("weights loaded in X s"), the whole process (start to logits written),
# minor/major page faults and system time (GNU time). Checks the .npy logits of pre-quantized and
# quantize-at-load runs byte for byte (cmp). Prints a markdown report; exits 1 if a check fails.
# Usage: bench/bench_prequant_load.sh WORK_DIR [BUILD_DIR]   (WORK_DIR: ~35 GB free; removed at the
# end unless KEEP=1; an existing WORK_DIR/f16 is reused). AT_LOAD=0 skips quantize-at-load (~2 min each).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: bench_prequant_load.sh WORK_DIR [BUILD_DIR]}
build=${2:-build}
bin=$(realpath "$build/glmpipe")
threads=${THREADS:-2}
at_load=${AT_LOAD:-1}
ids=5,130001,130004
mkdir -p "$work"
work=$(realpath "$work")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"/f16 "$work"/q4 "$work"/q8 "$work"/*.npy "$work"/*.log' EXIT
gnutime() { /usr/bin/time -f 'TIME wall %e sys %S minflt %R majflt %F' "$@"; }
field() { sed -n "s/^TIME.* $1 \([0-9.]*\).*/\1/p" "$2" | tail -1; }
load_s() { sed -n 's/.*weights loaded in \([0-9.]*\) s.*/\1/p' "$1" | tail -1; }
evict() { python3 -c 'import os,sys
for p in sys.argv[1:]:
    fd=os.open(p,os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"/*.safetensors; }
warm() { cat "$1"/*.safetensors >/dev/null; }

if [ ! -f "$work/f16/config.json" ]; then
  gnutime "$bin" make-tiny-model "$work/f16" --layers 28 --hidden 4096 --heads 32 --inner 16384 --vocab 130528 \
    --seed 5 --dtype float16 --shards 7 >"$work/make.log" 2>&1
fi
rows=()
for bits in 4 8; do
  rm -rf "$work/q$bits"
  warm "$work/f16"
  gnutime "$bin" quantize "$work/f16" "$work/q$bits" --bits $bits >"$work/quantize$bits.log" 2>&1
  rows+=("| \`glmpipe quantize --bits $bits\` (fp16 in, warm) | | $(field wall "$work/quantize$bits.log") | $(field minflt "$work/quantize$bits.log") | $(field majflt "$work/quantize$bits.log") | $(field sys "$work/quantize$bits.log") | $(du -sh "$work/q$bits" | cut -f1) written |")
done
run() {  # label dir log npy extra-args...
  local label=$1 dir=$2 log=$3 npy=$4; shift 4
  gnutime "$bin" forward --model "$dir" "$@" --threads "$threads" --ids $ids --out "$npy" >"$log" 2>&1
  rows+=("| $label | $(load_s "$log") | $(field wall "$log") | $(field minflt "$log") | $(field majflt "$log") | $(field sys "$log") | |")
}
same=()
status=0
for bits in 4 8; do
  q=$work/q$bits
  warm "$q"
  run "int$bits pre-quantized, warm" "$q" "$work/pre$bits.log" "$work/pre$bits.npy"
  evict "$q"
  run "int$bits pre-quantized, cold" "$q" "$work/cold$bits.log" "$work/cold$bits.npy"
  cmp -s "$work/pre$bits.npy" "$work/cold$bits.npy" || { same+=("int$bits: warm and cold logits DIFFER"); status=1; }
  if [ "$at_load" = 1 ]; then
    warm "$work/f16"
    run "int$bits quantize-at-load (fp16 dir, warm)" "$work/f16" "$work/atload$bits.log" "$work/atload$bits.npy" --quantize int$bits
    if cmp -s "$work/pre$bits.npy" "$work/atload$bits.npy"; then same+=("int$bits: pre-quantized and quantize-at-load logits bit-identical ($(stat -c %s "$work/pre$bits.npy") B .npy)")
    else same+=("int$bits: pre-quantized and quantize-at-load logits DIFFER"); status=1; fi
  fi
done

isa=$(for f in avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx_bf16 amx_int8; do grep -m1 -q -w $f /proc/cpuinfo && printf '%s ' $f; done)
dev=$(df -P "$work" | awk 'NR==2{print $1}')
echo "## bench_prequant_load $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, ISA: ${isa% }, load $(cut -d' ' -f1-3 /proc/loadavg), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, disk $dev ($(df -h --output=avail "$work" | tail -1 | tr -d ' ') free), $threads threads"
echo
echo "model: ChatGLM-6B shape (28 layers, hidden 4096, heads 32, inner 16384, vocab 130528), random fp16 ($(du -sh "$work/f16" | cut -f1)); forward of $ids (3-token prefill, compute dtype float32)"
echo
echo "| run | stage load_s | process wall s (start to logits) | minor faults | major faults | system s | note |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
printf -- '- %s\n' "${same[@]}"
exit $status
