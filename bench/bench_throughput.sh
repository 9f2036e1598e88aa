#!/usr/bin/env bash
# Throughput (generated tokens/s) against micro-batches in flight M = 1..2S for S = 1, 2, 3 CPU
# stages of one intra-op thread each (`glmpipe batch --micro-batches M`, NREQ (32) concurrent greedy
# requests), each stage's busy fraction from its own timers (the "busy" field of the stage log
# lines), the ideal GPipe utilisation M/(M+S-1) beside each row; then time to first token and
# inter-token latency at 1, 4 and 16 concurrent requests (`glmpipe batch --timings`: per-token ms
# from the request's submit to the token reaching rank 0), and the PNG plot.
#
# One command regenerates everything (tables on stdout, bench/throughput.csv, bench/latency.csv,
# bench/throughput.png):
#   bash bench/bench_throughput.sh [BUILD_DIR]
# Models (random weights, fp32, made here): "small" 12 layers hidden 1024 vocab 32000; "6B-shaped"
# hidden 4096, inner 16384, 32 heads, vocab 130528 with BIG_LAYERS blocks (default 4, 7.5 GB;
# BIG_LAYERS=0 skips it). The plot needs python3-matplotlib (bench only: apt-get install
# python3-matplotlib); without it the PNG step is skipped with a message. NREQ=32 (default) keeps the
# micro-batches of M <= 3 above 8 rows, where fp32 decode switches from sgemm to the row kernel
# (model/linear.cpp kGemvMaxTokens), so M is not confounded with a kernel change until M >= 4.
# PARTS (default "small big high") picks sections; CSVs are rewritten only when all three run.
# "high": S = 2, M = 1 vs 2 at HIGH_REQ (128) concurrent requests on the small model, where a
# micro-batch's cost grows with its rows (see RESULTS.md for why fewer rows do not gain).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/glmpipe
big_layers=${BIG_LAYERS:-4}
work=$(mktemp -d /tmp/bench_tput.XXXXXX)
trap 'rm -rf "$work"' EXIT
csv=bench/throughput.csv
lat_csv=bench/latency.csv

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "## bench_throughput $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo
echo "command: bash bench/bench_throughput.sh $build; uptime at start: $(uptime)"

# config FILE S PLACEMENT SLOTS MAX_SEQ: S one-thread CPU ranks.
config() {
  { echo "model: {path: unused, dtype: float32}"; echo "ranks:"
    for _ in $(seq "$2"); do echo "  - {device: cpu, max_memory: 16GiB, threads: 1}"; done
    echo "placement: $3"; echo "kv_cache: {max_batch: $4, max_seq_len: $5}"; echo "reserve: {cpu: 64MiB}"; } > "$1"
}

# config_id MODEL KEY: an id from the model's config.json (make-tiny-model writes the family's real
# special ids, 130001 / 130004 at vocab 130528, its own at the end of a smaller vocabulary).
config_id() { sed -n "s/.*\"$2\": *\([0-9][0-9]*\).*/\1/p" "$1/config.json" | head -1; }

# requests FILE N TOKENS MODEL PROMPT_LEN: N greedy requests, prompts ending in [gMASK] <sop>.
requests() {
  local g s
  g=$(config_id "$4" gmask_token_id) s=$(config_id "$4" bos_token_id)
  [ -n "$g" ] && [ -n "$s" ] || { echo "bench_throughput: no gmask/bos_token_id in $4/config.json" >&2; exit 1; }
  for i in $(seq "$2"); do
    local ids=""
    for k in $(seq $(($5 - 2))); do ids+="$(( (i * 131 + k * 17) % 20000 + 5 )), "; done
    echo "{\"id\": \"r$i\", \"ids\": [$ids$g, $s], \"max_new_tokens\": $3, \"greedy\": true}"
  done > "$1"
}

# run MODEL CFG M IN OUT [extra batch args]: one batch job; sets tps and busy (stderr kept in $work/log).
run() {
  local model=$1 cfg=$2 m=$3 in=$4 out=$5; shift 5
  rm -f "$out" "${out%.jsonl}.errors.jsonl"
  $bin batch --config "$cfg" --model "$model" --micro-batches "$m" --input "$in" --output "$out" --no-fsync "$@" \
    2> "$work/log" > /dev/null || { cat "$work/log" >&2; exit 1; }
  tps=$(sed -n 's/.* \([0-9.]*\) tokens\/s$/\1/p' "$work/log" | tail -1)
  busy=$(sed -n 's/.*stage \([0-9]\)\/[0-9]*: .*busy \([0-9.]*\)%.*/s\1 \2%/p' "$work/log" | sort | tr '\n' ' ')
}

# sweep LABEL MODEL VOCAB PLACEMENT "S list" MMAX_FACTOR: the throughput table for one model.
sweep() {
  local label=$1 model=$2 vocab=$3 placement=$4 slist=$5 mfac=$6 nreq=${NREQ:-32} ntok=${TOKENS:-24}
  requests "$work/in.jsonl" $nreq "$ntok" "$model" 5
  echo
  echo "### $label, placement $placement: $nreq requests x $ntok greedy tokens (prompt 5), KV slots $nreq, load $(load)"
  echo
  echo "| S | M | tokens/s | vs M=1 | ideal M/(M+S-1) | ideal x S (vs M=1) | per-stage busy |"
  echo "|---|---|---|---|---|---|---|"
  for s in $slist; do
    config "$work/s$s.yaml" "$s" "$placement" $nreq 64
    local base=""
    for m in $(seq $((mfac * s))); do
      run "$model" "$work/s$s.yaml" "$m" "$work/in.jsonl" "$work/out.jsonl"
      [ -z "$base" ] && base=$tps
      echo "| $s | $m | $tps | $(awk -v a="$tps" -v b="$base" 'BEGIN{printf "%.2f", a/b}') | $(awk -v m=$m -v s=$s 'BEGIN{printf "%.2f", m/(m+s-1)}') | $(awk -v m=$m -v s=$s 'BEGIN{printf "%.2f", s*m/(m+s-1)}') | $busy |"
      echo "$label,$placement,$s,$m,$nreq,$ntok,$tps,$busy" >> "$csv"
    done
  done
  echo "(load after: $(load))"
}

# latency LABEL MODEL VOCAB S: TTFT and ITL at 1, 4, 16 concurrent requests (M = S, balanced_work).
latency() {
  local label=$1 model=$2 vocab=$3 s=$4 ntok=${LAT_TOKENS:-16}
  echo
  echo "### $label, S = $s, M = $s, placement balanced_work: time to first token and inter-token latency, load $(load)"
  echo "(prompt 32 tokens, $ntok greedy tokens each; all requests submitted at once, KV slots = requests;"
  echo "ms from submit to the token reaching rank 0; percentiles over requests (TTFT) and over all gaps (ITL))"
  echo
  echo "| concurrent | TTFT p50 ms | TTFT p90 ms | ITL p50 ms | ITL p90 ms | tokens/s |"
  echo "|---|---|---|---|---|---|"
  for c in 1 4 16; do
    config "$work/lat.yaml" "$s" balanced_work "$c" 64
    requests "$work/lat.jsonl" "$c" "$ntok" "$model" 32
    run "$model" "$work/lat.yaml" "$s" "$work/lat.jsonl" "$work/lat_out.jsonl" --timings
    /usr/bin/python3 - "$work/lat_out.jsonl" "$label" "$c" "$tps" "$lat_csv" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
ttft = [r["token_ms"][0] for r in rows]
itl = [b - a for r in rows for a, b in zip(r["token_ms"], r["token_ms"][1:])]
vals = [pct(ttft, 50), pct(ttft, 90), pct(itl, 50), pct(itl, 90)]
print("| %s | %s | %s |" % (sys.argv[3], " | ".join("%.0f" % v for v in vals), sys.argv[4]))
with open(sys.argv[5], "a") as f:
    f.write("%s,%s,%s,%s\n" % (sys.argv[2], sys.argv[3], ",".join("%.1f" % v for v in vals), sys.argv[4]))
EOF
  done
  echo "(load after: $(load))"
}

parts=${PARTS:-small big high}
has() { case " $parts " in *" $1 "*) return 0;; *) return 1;; esac; }
if [ "$parts" = "small big high" ] || [ ! -f "$csv" ]; then
  echo "model,placement,S,M,requests,tokens,tokens_per_s,busy" > "$csv"
  echo "model,concurrent,ttft_p50_ms,ttft_p90_ms,itl_p50_ms,itl_p90_ms,tokens_per_s" > "$lat_csv"
fi

small=$work/small
slabel="small 12 x 1024 V32000"
$bin make-tiny-model "$small" --layers 12 --hidden 1024 --heads 16 --vocab 32000 --seed 3 > /dev/null
if has small; then
  sweep "$slabel" "$small" 32000 balanced_work "1 2 3" 2
  sweep "$slabel" "$small" 32000 balanced "2" 1
  [ "$big_layers" -gt 0 ] || latency "$slabel" "$small" 32000 2
fi
if has high; then
  NREQ=${HIGH_REQ:-128} sweep "$slabel ${HIGH_REQ:-128} req" "$small" 32000 balanced_work "2" 1
fi
rm -rf "$small"

if [ "$big_layers" -gt 0 ] && has big; then
  big=$work/big
  $bin make-tiny-model "$big" --layers "$big_layers" --hidden 4096 --inner 16384 --heads 32 --vocab 130528 \
    --seed 3 --format safetensors > /dev/null
  label="6B-shaped $big_layers x 4096 V130528"
  echo
  echo "6B-shaped model ($big_layers blocks of hidden 4096 / inner 16384, vocab 130528, fp32): plans for S = 2"
  for p in balanced balanced_work; do
    config "$work/plan.yaml" 2 $p 16 64
    echo; echo "    placement $p:"
    $bin plan --config "$work/plan.yaml" --model "$big" | sed -n '/^rank/,/^per-token/p' | sed 's/^/    /'
  done
  TOKENS=${BIG_TOKENS:-8} sweep "$label" "$big" 130528 balanced_work "1 2 3" 2
  TOKENS=${BIG_TOKENS:-8} sweep "$label" "$big" 130528 balanced "2" 1
  latency "$label" "$big" 130528 2
fi

if /usr/bin/python3 -c 'import matplotlib' 2> /dev/null; then
  /usr/bin/python3 bench/plot_throughput.py "$csv" bench/throughput.png \
    "glmpipe tokens/s vs micro-batches M, 1-thread CPU ranks, $(date -u +%F), load $(load)"
  echo; echo "plot: bench/throughput.png"
else
  echo; echo "plot skipped: /usr/bin/python3 has no matplotlib (apt-get install python3-matplotlib)"
fi
echo "uptime at end: $(uptime)"
