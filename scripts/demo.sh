#!/usr/bin/env bash
# Set up, build and run the main job on an embedded default: a tiny random ChatGLM checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/glmpipe demo "$@"
