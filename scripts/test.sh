#!/usr/bin/env bash
# Set up, build and run every test (unit, mpi, gpu labels; gpu tests skip without a device).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
