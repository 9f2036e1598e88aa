#!/usr/bin/env bash
# Configure and build glmpipe into ./build (Release). Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
