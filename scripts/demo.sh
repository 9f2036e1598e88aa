#!/usr/bin/env bash
# Set up, build and run the main job on the embedded demo model: models/demo, a 4-layer
# ChatGLM-6B-architecture model trained in this repository (scripts/train_demo_model.py) until it
# memorized the opening of Pride and Prejudice (public domain, models/demo/README.md).
#   1. the plan of configs/tiny_cpu_2rank.yaml: which rank holds which units, bytes per stage;
#   2. greedy generation through that 2-process CPU pipeline, streamed as it is generated, with the
#      start-up summary and each stage's timings (stderr);
#   3. the same generation in one process, which must write the same text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
model=models/demo
config=configs/tiny_cpu_2rank.yaml
prompt=${DEMO_PROMPT:-'"Why, my dear, you must know,'}
log=$(mktemp /tmp/glmpipe-demo.XXXXXX)
trap 'rm -f "$log" "$log.out"' EXIT

echo "== plan ($config, model $model) =="
./build/glmpipe plan --config "$config" --model "$model"

echo
echo "== 2-process pipeline, greedy, prompt: \"$prompt\" =="
./build/glmpipe generate --config "$config" --model "$model" --greedy --prompt "$prompt" \
  2> >(tee "$log" >&2) | tee "$log.out"
pipe=$(cat "$log.out")
sleep 0.2  # let tee flush the log
echo
echo "== per-stage timings =="
grep -E "stage [0-9]+/[0-9]+: compute" "$log" || echo "(no stage timing lines in the log)"

echo
echo "== single process =="
single=$(./build/glmpipe generate --model "$model" --greedy --prompt "$prompt" 2>/dev/null)
echo "$single"
[ "$pipe" = "$single" ] && echo "pipeline output is identical to the single-process output" \
  || { echo "MISMATCH between pipeline and single process" >&2; exit 1; }
if grep -qF -- "$prompt $pipe" "$model/source_text.txt"; then
  echo "the model recited the memorized text of $model/source_text.txt"
else
  echo "(the output is not the memorized text: a prompt that does not start a paragraph of $model/source_text.txt?)"
fi
