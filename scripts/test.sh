#!/usr/bin/env bash
# Set up, build and run every test (unit, mpi, gpu labels; gpu tests skip without a device), the
# device check (scripts/device_check.sh: its GPU parts skip without a device), then
# every libFuzzer target for a short bounded time with ASan + UBSan (FUZZ_SECONDS each, default 20;
# 0 skips it; see tests/fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
# The prepared GPU check, GPU parts skipped here (bench/DEVICE_CHECK.md); summary in build/device-check/.
OUT=build/device-check bash scripts/device_check.sh
if [ "${FUZZ_SECONDS:-20}" -gt 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
