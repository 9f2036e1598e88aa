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
  libpcre2-dev                 # GLM-4 tokenizer pre-tokenizer regex (Unicode classes, look-ahead)
  python3-torch python3-numpy  # /usr/bin/python3: cross-checks torch.save files in tests
  curl procps
  clang libclang-rt-14-dev     # libFuzzer + ASan/UBSan runtimes: tests/fuzz, scripts/fuzz.sh (CI runs it)
  iproute2                     # tests/hosts/netns.sh: hosts as network namespaces (ip, tc)
  slurmctld slurmd slurm-client munge  # tests/hosts/slurm.sh: a one-machine Slurm, started by the test
  python3-venv                 # .venv/ with the openai package for tests/pipeline/openai_client_test
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  # No service may start at install time (munge, slurmctld, slurmd): the tests start their own and
  # stop them. policy-rc.d answering 101 ("action forbidden") stops invoke-rc.d/deb-systemd-invoke.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; fi
else
  echo "[setup] all system packages present"
fi

# The official `openai` Python client (PyPI) for tests/pipeline/openai_client_test.cpp, in .venv/ of
# the source tree. Optional: without network access the test skips with a message.
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai' 2>/dev/null; then
  if /usr/bin/python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/pip" install -q openai >/dev/null 2>&1; then
    echo "[setup] openai client installed in $VENV"
  else
    echo "[setup] could not install the openai package (no PyPI?): openai_client_test will skip"
  fi
fi
