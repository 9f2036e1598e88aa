#!/usr/bin/env bash
# scripts/fuzz.sh SECONDS [TARGET ...]: builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan)
# into build-fuzz/ and runs each TARGET (default: all) for SECONDS, starting from the seed corpus
# tests/fuzz/corpus/<target>/ and the regression inputs tests/fuzz/regressions/<target>/ (read only;
# new inputs go to build-fuzz/fuzz-work/<target>/). Prints one line per target (execs, exec/s, cov,
# ft, corpus size, findings) and writes them to build-fuzz/fuzz-results/summary.tsv.
#   FUZZ_JOBS=N    targets run at once (default 1; the machine is shared)
#   FUZZ_RSS_MB=M  libFuzzer's per-process memory limit (default 2048)
# A finding (crash, leak, UB, timeout, out-of-memory) leaves its input in build-fuzz/fuzz-results/<target>/
# and makes the script exit 1: fix it, then copy the input to tests/fuzz/regressions/<target>/
# (tests/unit/fuzz_replay_test.cpp replays every file there in the ordinary build).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:?usage: scripts/fuzz.sh SECONDS [TARGET ...]}"
shift
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${FUZZ_JOBS:-1}"
RSS="${FUZZ_RSS_MB:-2048}"
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DGLMPIPE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$BUILD"/fuzz/*_fuzz; do targets+=("$(basename "$f" _fuzz)"); done
fi
results="$BUILD/fuzz-results"
mkdir -p "$results"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local t="$1" work="$BUILD/fuzz-work/$1" art="$results/$1" log="$results/$1.log"
  mkdir -p "$work" "$art"
  local dirs=("$work" "tests/fuzz/corpus/$t") rc=0
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  "$BUILD/fuzz/${t}_fuzz" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb="$RSS" -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$art/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  local execs cov ft corp findings
  last() { grep -o "$1 [0-9]*" "$log" | awk '{print $NF}' | tail -1 || true; }
  execs=$(last 'stat::number_of_executed_units:')
  cov=$(last 'cov:')
  ft=$(last 'ft:')
  corp=$(last 'corp:')
  findings=$(find "$art" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$SECONDS_EACH" "${execs:-0}" \
    "$(( ${execs:-0} / (SECONDS_EACH > 0 ? SECONDS_EACH : 1) ))" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$findings" >"$results/$t.tsv"
  if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    echo "[fuzz] $t: FINDING (exit $rc), see $log and $art/" >&2
    grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log" >&2 || true
    return 1
  fi
}

pids=() failed=0
for t in "${targets[@]}"; do
  run_one "$t" & pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done

{
  printf 'target\tseconds\texecs\texecs_per_s\tcov\tft\tcorpus\tfindings\n'
  for t in "${targets[@]}"; do cat "$results/$t.tsv"; done
} >"$results/summary.tsv"
column -t -s $'\t' "$results/summary.tsv" 2>/dev/null || cat "$results/summary.tsv"
[ "$failed" -eq 0 ] || { echo "[fuzz] findings: see $results" >&2; exit 1; }
echo "[fuzz] ${#targets[@]} targets x ${SECONDS_EACH} s: no findings"
