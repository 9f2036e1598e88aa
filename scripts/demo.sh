#!/usr/bin/env bash
# Set up, build and run the main job on an embedded default: a tiny random ChatGLM-6B-architecture
# checkpoint, planned onto a 2-process CPU pipeline, then greedy generation through that pipeline
# compared with the single-process run (per-stage timings are logged by each rank).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
model=build/demo-model
./build/glmpipe make-tiny-model "$model" --layers 6 --hidden 128 --heads 4 --vocab 1000 --seed 1 --format bin --shards 2
echo "== plan (configs/tiny_cpu_2rank.yaml) =="
./build/glmpipe plan --config configs/tiny_cpu_2rank.yaml --model "$model"
ids=11,42,7,150,996,997   # text ids, [gMASK] (V-4), <sop> (V-3) of the tiny vocabulary
echo "== pipelined generation: 2 MPI processes =="
pipe=$(./build/glmpipe generate --config configs/tiny_cpu_2rank.yaml --model "$model" --ids $ids \
       --max-new-tokens 24 --greedy --print-ids)
echo "generated ids: $pipe"
echo "== single process =="
single=$(./build/glmpipe generate --model "$model" --ids $ids --max-new-tokens 24 --greedy --print-ids 2>/dev/null)
echo "generated ids: $single"
[ "$pipe" = "$single" ] && echo "pipeline output is identical to the single-process output" \
  || { echo "MISMATCH between pipeline and single process" >&2; exit 1; }
