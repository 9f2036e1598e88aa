#!/usr/bin/env bash
# Builds bench/bare_kernels.cpp with the repo's row kernels into a static binary that needs no
# libtorch at run time (ATen headers only at compile time): OUT (default /tmp/bare_kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/bare_kernels}
# ATen headers of the torch wheel in .venv (scripts/setup.sh), else a system libtorch's
inc=$(ls -d .venv/lib/python3*/site-packages/torch/include 2>/dev/null | head -1)
[ -n "$inc" ] || inc=/usr/include
g++ -std=c++17 -O2 -fopenmp -static -D_GLIBCXX_USE_CXX11_ABI=1 -I. -I"$inc" -I"$inc/torch/csrc/api/include" \
  bench/bare_kernels.cpp model/qgemv_avx2.cpp model/qgemv_avx512.cpp -o "$out"
echo "built $out"
