#!/usr/bin/env bash
# Configure and build glmpipe into ./build (Release). Used by demo.sh and test.sh.
# BUILD_DIR overrides the folder (one per git worktree when several people build at once);
# ccache is used when installed (it is not required).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
