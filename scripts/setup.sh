#!/usr/bin/env bash
# Idempotent set-up: installs every system package glmpipe needs (Debian bookworm, run as root).
# Safe to run repeatedly; skips apt entirely when everything is already installed.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
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
  python3-venv                 # .venv/: libtorch (the torch wheel) and the openai client
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

# .venv/ of the source tree (Debian's python3 -m venv):
#  * torch==2.11.0 from PyPI: the one libtorch glmpipe builds against (CUDA 13.0 + NCCL 2.28.9, CXX11
#    ABI; cmake/GlmpipeTorch.cmake). Required: ~2.7 GB download, ~4.7 GB installed. Pinned: later
#    wheels move to CUDA 13.2 / NCCL 2.30, away from /usr/local/cuda's 13.0 and the device image.
#  * the official `openai` client for tests/pipeline/openai_client_test.cpp. Optional: without it
#    the test skips with a message.
# Reruns skip what is installed. pip keeps its usual cache (~/.cache/pip) where the index allows it.
TORCH_VERSION=2.11.0
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
has() { "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2' if '$2' else 0)" 2>/dev/null; }
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$VENV"
fi
if ! has torch "$TORCH_VERSION" || ! compgen -G "$VENV/lib/python3*/site-packages/torch/share/cmake/Torch/TorchConfig.cmake" >/dev/null; then
  echo "[setup] installing torch==$TORCH_VERSION from PyPI into $VENV (about 2.7 GB, a few minutes)"
  if ! "$VENV/bin/pip" install -q --progress-bar off "torch==$TORCH_VERSION"; then
    echo "[setup] ERROR: could not install torch==$TORCH_VERSION into $VENV (no PyPI?): glmpipe cannot be built" >&2
    exit 1
  fi
else
  echo "[setup] torch $TORCH_VERSION present in $VENV"
fi
if ! has openai ""; then
  if "$VENV/bin/pip" install -q openai >/dev/null 2>&1; then
    echo "[setup] openai client installed in $VENV"
  else
    echo "[setup] could not install the openai package (no PyPI?): openai_client_test will skip"
  fi
fi
