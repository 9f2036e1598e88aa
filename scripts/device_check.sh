#!/usr/bin/env bash
# scripts/device_check.sh: the prepared GPU check of issue 14, for a machine with a GPU (and, run here,
# everything but the GPU parts, each GPU part recorded as skipped with the reason). Output format:
# bench/DEVICE_CHECK.md. The summary goes to $OUT/summary.txt when OUT is set (work files beside it,
# in $OUT/work), else to stdout (work files in a temporary folder).
#
#   BIN_DIR=build            where glmpipe and bench_decode are (binaries built on the build machine)
#   TORCH_DIR=<auto>         the torch wheel's torch/ folder to load libtorch from (default: .venv's,
#                            else /opt/torch/.venv's: the device image)
#   BUNDLE_LIB=<dir>         extra runtime libraries (Open MPI, yaml-cpp, spdlog, fmt, sentencepiece
#                            for an image that lacks them); added to LD_LIBRARY_PATH when set
#   DC_6B_LAYERS=28          layers of the ChatGLM-6B-shaped random model (GPU parts only)
# Exit status: 0 when no check failed (skipped ones do not count), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BIN_DIR="${BIN_DIR:-build}"
GLMPIPE="$BIN_DIR/glmpipe"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/work"; WORK="$OUT/work"; SUMMARY="$OUT/summary.txt"
else
  WORK="$(mktemp -d)"; SUMMARY=/dev/stdout; trap 'rm -rf "$WORK"' EXIT
fi
: > "$WORK/summary.tmp"
failed=0
# record NAME STATUS DETAIL: one line of the summary (STATUS ok | fail | skipped)
record() {
  printf '%-24s %-8s %s\n' "$1" "$2" "$3" >> "$WORK/summary.tmp"
  [ "$2" = fail ] && failed=1
  printf '[device_check] %-24s %-8s %s\n' "$1" "$2" "$3" >&2
}

# ---- libraries: the build machine's venv, else the device image's ----
if [ -z "${TORCH_DIR:-}" ]; then
  for cand in .venv/lib/python3*/site-packages/torch /opt/torch/.venv/lib/python3*/site-packages/torch; do
    [ -f "$cand/lib/libtorch.so" ] && TORCH_DIR="$cand" && break
  done
fi
if [ -n "${TORCH_DIR:-}" ]; then
  NV="$TORCH_DIR/../nvidia"
  export LD_LIBRARY_PATH="$TORCH_DIR/lib:$NV/cu13/lib:$NV/nccl/lib${BUNDLE_LIB:+:$BUNDLE_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [ ! -x "$GLMPIPE" ] || ! "$GLMPIPE" version > "$WORK/version.txt" 2>&1; then
  record version fail "cannot run $GLMPIPE ($(head -c 300 "$WORK/version.txt" 2>/dev/null | tr '\n' ' '))"
  { echo "# glmpipe device check"; cat "$WORK/summary.tmp"; } > "$SUMMARY"
  exit 1
fi
ver() { grep -m1 "^$1: " "$WORK/version.txt" | cut -d' ' -f2- ; }
record version ok "torch $(ver torch); cuda $(ver cuda); nccl $(ver nccl)"
GPU=""
if grep -q '^gpu: cuda:0 ' "$WORK/version.txt"; then
  GPU="$(grep -m1 '^gpu: cuda:0 ' "$WORK/version.txt" | cut -d' ' -f3-)"
  NO_GPU=""
else
  NO_GPU="$(grep -m1 '^gpu: ' "$WORK/version.txt" | cut -d' ' -f2-)"
  NO_GPU="${NO_GPU:-no GPU line in glmpipe version}"
fi
PY="$(command -v python3 || true)"
[ -z "$PY" ] && [ -n "${TORCH_DIR:-}" ] && PY="$TORCH_DIR/../../../../bin/python"
compare() { "$PY" scripts/npy_compare.py "$1" "$2" 2>&1; }

# yaml FILE DEVICE...: a deployment of one rank per device for the model in $MODEL
yaml() {
  local f="$1"; shift
  { echo "model: {path: $MODEL, dtype: float32}"; echo "ranks:"
    for d in "$@"; do echo "  - {device: $d, max_memory: 32GiB, threads: 2}"; done
    echo "placement: balanced"; echo "kv_cache: {max_batch: 1, max_seq_len: 64}"; echo "reserve: {cpu: 64MiB}"; } > "$f"
}
# forward NAME OUT.npy ARGS...: glmpipe forward; records a failure with the log's last line
forward() {
  local name="$1" out="$2"; shift 2
  local t0; t0=$(date +%s.%N)
  if timeout 300 "$GLMPIPE" forward --ids "$IDS" --out "$out" "$@" > "$WORK/$name.log" 2>&1; then
    echo "$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")"
  else
    record "$name" fail "$(grep -v '^\s*$' "$WORK/$name.log" | tail -1 | head -c 300)"
    return 1
  fi
}

# ---- 1. logits of the same binary: cpu fp32 vs cuda:0 fp16/bf16/int8/int4 ----
logits_checks() {  # PREFIX
  local p="$1" s
  if s=$(forward "${p}_cpu_fp32" "$WORK/${p}_cpu.npy" --model "$MODEL"); then
    record "${p}_cpu_fp32" ok "reference logits in ${s} s"
  else
    return
  fi
  yaml "$WORK/${p}_gpu.yaml" cuda:0
  for v in float16:none bfloat16:none float16:int8 float16:int4; do
    local dt="${v%%:*}" q="${v##*:}" name="${p}_cuda_${v/:/_}"
    name="${name/_none/}"
    if [ -z "$GPU" ]; then record "$name" skipped "$NO_GPU"; continue; fi
    local args=(--config "$WORK/${p}_gpu.yaml" --dtype "$dt")
    [ "$q" != none ] && args+=(--quantize "$q")
    if s=$(forward "$name" "$WORK/$name.npy" "${args[@]}"); then
      record "$name" ok "$(compare "$WORK/${p}_cpu.npy" "$WORK/$name.npy") (${s} s)"
    fi
  done
}
IDS="5,8,20,31,47,60,99,120"
MODEL=models/demo
logits_checks demo
if [ -z "$GPU" ]; then
  record 6b_shape skipped "$NO_GPU (the 6B-shaped model's fp32 CPU reference alone needs ~24 GiB and minutes)"
else
  MODEL="$WORK/chatglm6b_random"
  if "$GLMPIPE" make-tiny-model "$MODEL" --layers "${DC_6B_LAYERS:-28}" --hidden 4096 --heads 32 --inner 16384 \
       --vocab 130528 --dtype float16 --format safetensors > "$WORK/make6b.log" 2>&1; then
    IDS="5,130,2000,31000,47,60000,99,120"
    logits_checks 6b
  else
    record 6b_shape fail "make-tiny-model: $(tail -1 "$WORK/make6b.log")"
  fi
  rm -rf "$WORK/chatglm6b_random"
fi

# ---- 2. pipeline vs single process (bit comparison) ----
MODEL=models/demo
IDS="5,8,20,31,47,60,99,120"
pipeline_check() {  # NAME bit|numbers SINGLE_ARGS... -- DEVICES...
  local name="$1" mode="$2"; shift 2
  local single=(); while [ "$1" != -- ]; do single+=("$1"); shift; done; shift
  yaml "$WORK/$name.yaml" "$@"
  local s1 s2
  s1=$(forward "${name}_single" "$WORK/${name}_single.npy" "${single[@]}") || return
  s2=$(forward "$name" "$WORK/$name.npy" --config "$WORK/$name.yaml") || return
  local c; c=$(compare "$WORK/${name}_single.npy" "$WORK/$name.npy")
  case "$mode:$c" in
    bit:bit_equal=yes* | numbers:*) record "$name" ok "$c (single ${s1} s, pipeline ${s2} s)";;
    *) record "$name" fail "$c: the pipeline differs from its single-process form";;
  esac
}
pipeline_check pipeline_cpu_cpu bit --model "$MODEL" -- cpu cpu
if [ -z "$GPU" ]; then
  record pipeline_cuda_cpu skipped "$NO_GPU"
else
  # One process cannot hold a cuda:0 half and a cpu half: the pipeline (fp32 on both) is compared with
  # the cpu fp32 process in numbers, and its cuda:0+cuda:0-free twin (cpu, cpu) above is the bit check.
  pipeline_check pipeline_cuda_cpu numbers --model "$MODEL" -- cuda:0 cpu
fi

# ---- 3. batch-1 decode ms/token of the 6B shape on the GPU vs the bandwidth floor ----
if [ -z "$GPU" ]; then
  record decode_6b_fp16 skipped "$NO_GPU"
  record decode_6b_int4 skipped "$NO_GPU"
else
  # bench_decode measures CPU ranks only (no --device yet): said, not faked.
  record decode_6b_fp16 fail "bench_decode has no GPU path yet (floor: 12.3 GB of fp16 weights at the GPU's read bandwidth)"
  record decode_6b_int4 fail "bench_decode has no GPU path yet"
fi

# ---- 4. the gpu-labelled tests ----
if command -v ctest >/dev/null 2>&1 && [ -f "$BIN_DIR/CTestTestfile.cmake" ]; then
  if ctest --test-dir "$BIN_DIR" -L gpu --output-on-failure > "$WORK/ctest_gpu.log" 2>&1; then
    n_skip=$(grep -c "\*\*\*Skipped" "$WORK/ctest_gpu.log" || true)
    if [ -z "$GPU" ]; then record ctest_gpu skipped "$n_skip gpu test(s) skipped: $NO_GPU"
    else record ctest_gpu ok "$(grep -m1 'tests passed' "$WORK/ctest_gpu.log")"; fi
  else
    record ctest_gpu fail "$(grep -m1 'tests passed\|FAILED' "$WORK/ctest_gpu.log")"
  fi
else
  record ctest_gpu skipped "no ctest tree in $BIN_DIR"
fi

{
  echo "# glmpipe device check"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname) ($(nproc) cores)"
  echo "gpu: ${GPU:-$NO_GPU}"
  echo "binary: $GLMPIPE"
  echo "torch_dir: ${TORCH_DIR:-?}"
  cat "$WORK/summary.tmp"
  echo "elapsed_s: $(( $(date +%s) - START ))"
  echo "result: $([ $failed = 0 ] && echo pass || echo fail)"
} > "$SUMMARY"
exit $failed
