#!/usr/bin/env bash
# Side by side with chatglm.cpp on the same weights (issue 19): runs glmpipe and chatglm.cpp's `main`
# interleaved (peer, glmpipe, peer, glmpipe, ...), on 2 and 1 threads, and prints
#
#   | format (glmpipe / chatglm.cpp) | decode ms/token, 2 threads | 1 thread | fraction of the floor,
#     2 threads | prefill ms per prompt token (128), 2 threads |
#
# with the read probe of the same run (bench_decode --probe-only, before and after; the best is the
# floor). Decode ms/token comes from whole-process time differences, the same way for both tools:
# (time(prompt 4, N2 new tokens) - time(prompt 4, N1 new tokens)) / (N2 - N1); prefill from
# (time(prompt 128, 1 new) - time(prompt 4, 1 new)) / 124. Medians of RUNS.
#
#   bench/compare_peer.sh --peer-main /work/peer/build/bin/main --model HF_DIR \
#       [--peer-f16 FILE] [--peer-q8_0 FILE] [--peer-q4_0 FILE] [--glmpipe build/glmpipe]
#       [--runs 3] [--n1 8] [--n2 40]
#
# HF_DIR: the float ChatGLM-6B checkpoint the peer files were converted from (chatglm.cpp's
# convert.py -i HF_DIR -t f16|q8_0|q4_0); glmpipe runs it as bf16, --quantize int8, --quantize int4
# (or a `glmpipe quantize` output given as --model-int8 / --model-int4). chatglm.cpp is built outside
# this repository (see bench/RESULTS_peer.md); nothing of it is vendored here.
# Both tools decode greedily and must not stop early: glmpipe gets --max-new-tokens N and the
# peer --max_new_tokens N with a random-weight model (no natural EOS); check the printed token counts.
set -euo pipefail

peer_main="" model="" glmpipe="build/glmpipe" runs=3 n1=8 n2=40
declare -A peer_file=() glm_model=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peer-main) peer_main=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --model-int8) glm_model[int8]=$2; shift 2 ;;
    --model-int4) glm_model[int4]=$2; shift 2 ;;
    --peer-f16) peer_file[f16]=$2; shift 2 ;;
    --peer-q8_0) peer_file[q8_0]=$2; shift 2 ;;
    --peer-q4_0) peer_file[q4_0]=$2; shift 2 ;;
    --glmpipe) glmpipe=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --n1) n1=$2; shift 2 ;;
    --n2) n2=$2; shift 2 ;;
    *) echo "compare_peer.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
[ -x "$peer_main" ] || { echo "compare_peer.sh: --peer-main '$peer_main' is not an executable" >&2; exit 1; }
[ -f "$model/config.json" ] || { echo "compare_peer.sh: --model '$model' has no config.json" >&2; exit 1; }
[ -x "$glmpipe" ] || { echo "compare_peer.sh: glmpipe binary '$glmpipe' not found" >&2; exit 1; }
probe_bin="$(dirname "$glmpipe")/bench/bench_decode"
[ -x "$probe_bin" ] || { echo "compare_peer.sh: $probe_bin not found (cmake --build build --target bench_decode)" >&2; exit 1; }

short_ids="5,74874,130001,130004"   # "[gMASK] <sop>" at the end, as ChatGLM-6B prompts
long_ids=$(python3 -c 'print(",".join(["5"] + [str(100 + 37 * i % 60000) for i in range(125)] + ["130001", "130004"]))')
short_text="hi"
long_text=$(python3 -c 'print(" ".join(["word%d" % (i % 50) for i in range(120)]))')

now() { date +%s.%N; }
# seconds one command takes (stdout/stderr to a log)
timed() { local t0 t1; t0=$(now); "$@" > /tmp/compare_peer.$$.log 2>&1 || { cat /tmp/compare_peer.$$.log >&2; return 1; }; t1=$(now); echo "$t1 - $t0" | bc -l; }

glm_run() {  # fmt threads ids new
  local fmt=$1 th=$2 ids=$3 new=$4 args=()
  case $fmt in
    bf16) args=(--model "$model" --dtype bfloat16) ;;
    int8|int4) if [ -n "${glm_model[$fmt]:-}" ]; then args=(--model "${glm_model[$fmt]}"); else args=(--model "$model" --quantize "$fmt"); fi ;;
  esac
  OMP_NUM_THREADS=$th timed taskset -c "0-$((th - 1))" "$glmpipe" generate "${args[@]}" --threads "$th" --ids "$ids" --greedy --max-new-tokens "$new"
}
peer_run() {  # file threads text new
  # chatglm.cpp 0.4.2's main has no thread option (ggml uses every core it sees): taskset limits both
  timed taskset -c "0-$(($2 - 1))" "$peer_main" -m "$1" --mode generate -p "$3" --max_new_tokens "$4" --temp 0 --max_length 512
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

probes=("$("$probe_bin" --probe-only 2)")
declare -A res=()
pairs=("bf16:f16" "int8:q8_0" "int4:q4_0")
for pair in "${pairs[@]}"; do
  g=${pair%%:*} p=${pair##*:}
  [ -n "${peer_file[$p]:-}" ] || { echo "skip $g / $p: no --peer-$p file" >&2; continue; }
  for th in 2 1; do
    for tool in glm peer; do : > /tmp/compare_peer.$$.$tool.dec; : > /tmp/compare_peer.$$.$tool.pre; done
    for ((r = 0; r < runs; r++)); do
      a=$(peer_run "${peer_file[$p]}" "$th" "$short_text" "$n1"); b=$(peer_run "${peer_file[$p]}" "$th" "$short_text" "$n2")
      echo "($b - $a) * 1000 / ($n2 - $n1)" | bc -l >> /tmp/compare_peer.$$.peer.dec
      a=$(glm_run "$g" "$th" "$short_ids" "$n1"); b=$(glm_run "$g" "$th" "$short_ids" "$n2")
      echo "($b - $a) * 1000 / ($n2 - $n1)" | bc -l >> /tmp/compare_peer.$$.glm.dec
      if [ "$th" = 2 ]; then
        a=$(peer_run "${peer_file[$p]}" 2 "$short_text" 1); b=$(peer_run "${peer_file[$p]}" 2 "$long_text" 1)
        echo "($b - $a) * 1000 / 124" | bc -l >> /tmp/compare_peer.$$.peer.pre
        a=$(glm_run "$g" 2 "$short_ids" 1); b=$(glm_run "$g" 2 "$long_ids" 1)
        echo "($b - $a) * 1000 / 124" | bc -l >> /tmp/compare_peer.$$.glm.pre
      fi
    done
    for tool in glm peer; do
      res[$g.$tool.dec$th]=$(median < /tmp/compare_peer.$$.$tool.dec)
      [ "$th" = 2 ] && res[$g.$tool.pre]=$(median < /tmp/compare_peer.$$.$tool.pre)
    done
  done
  probes+=("$("$probe_bin" --probe-only 2)")
done
rm -f /tmp/compare_peer.$$.*
best=$(printf '%s\n' "${probes[@]}" | sort -g | tail -1)
# bytes read per decode token, ChatGLM-6B: 28 blocks + lm_head (bf16 lm_head for both quantized runs;
# chatglm.cpp keeps its lm_head in the file's type: q8_0/q4_0 blocks also carry one fp16 scale per 32)
declare -A gb=([bf16]=12.35 [int8]=6.71 [int4]=3.89 [f16]=12.35 [q8_0]=6.56 [q4_0]=3.48)
echo "## compare_peer $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "read probe (2 threads, GB/s): ${probes[*]}; floor = bytes / $best GB/s. glmpipe kernels: see its log line 'kernels'."
echo
echo "| format (glmpipe / chatglm.cpp) | decode ms/token, 2 threads | 1 thread | fraction of the floor, 2 threads | prefill ms per prompt token (128), 2 threads |"
echo "|---|---|---|---|---|"
for pair in "${pairs[@]}"; do
  g=${pair%%:*} p=${pair##*:}
  [ -n "${res[$g.glm.dec2]:-}" ] || continue
  fg=$(echo "${gb[$g]} / $best * 1000 / ${res[$g.glm.dec2]}" | bc -l)
  fp=$(echo "${gb[$p]} / $best * 1000 / ${res[$g.peer.dec2]}" | bc -l)
  printf '| %s / %s | %.0f / %.0f | %.0f / %.0f | %.2f / %.2f | %.0f / %.0f |\n' "$g" "$p" \
    "${res[$g.glm.dec2]}" "${res[$g.peer.dec2]}" "${res[$g.glm.dec1]}" "${res[$g.peer.dec1]}" "$fg" "$fp" \
    "${res[$g.glm.pre]}" "${res[$g.peer.pre]}"
done
