#!/usr/bin/env bash
# Idempotent set-up: installs every system package glmpipe needs (Debian bookworm, run as root).
# Safe to run repeatedly; skips apt entirely when everything is already installed.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libtorch-dev                 # libtorch 1.13 (CPU)
  libopenblas0-openmp          # without it libtorch uses reference BLAS: ~40x slower GEMM
  libopenmpi-dev openmpi-bin   # launcher + MPI transport
  libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  libsentencepiece-dev sentencepiece
  python3-torch python3-numpy  # /usr/bin/python3: cross-checks torch.save files in tests
  curl procps
  clang libclang-rt-14-dev     # libFuzzer + ASan/UBSan runtimes: tests/fuzz, scripts/fuzz.sh (CI runs it)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "[setup] all system packages present"
fi
