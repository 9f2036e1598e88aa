#!/usr/bin/env bash
# scripts/device_bundle.sh [DIR]: gathers what scripts/device_check.sh needs on the GPU machine whose
# image has the torch wheel (/opt/torch/.venv), nvcc and CMake but none of Debian's -dev packages and
# no network: the binaries built here and the runtime libraries the image lacks (Open MPI with its
# plugins and help files, yaml-cpp, spdlog, fmt, sentencepiece, ...). Libraries of the torch wheel and
# of glibc are left out (the image has them). DIR defaults to device-bundle/ (git-ignored); carry it
# (a few tens of MiB) and run there:
#   BIN_DIR=device-bundle/bin BUNDLE_LIB=device-bundle/lib OPAL_PREFIX=$PWD/device-bundle/ompi \
#     PATH=$PWD/device-bundle/ompi/bin:$PATH bash scripts/device_check.sh
# Untested on the device image (no GPU machine was lent to the session that wrote it).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-device-bundle}"
BUILD="${BUILD_DIR:-build}"
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib"
cp "$BUILD/glmpipe" "$BUILD/libglmpipe_spm.so" "$DIR/bin/"
[ -x "$BUILD/bench/bench_decode" ] && cp "$BUILD/bench/bench_decode" "$DIR/bin/"
# Open MPI, relocated with OPAL_PREFIX: Debian's layout under DIR/ompi (prefix /usr).
ORTERUN="$(readlink -f "$(command -v mpirun)")"
PKGLIB="$(ompi_info --path pkglibdir --parsable 2>/dev/null | sed 's/.*:pkglibdir://')"
LIBDIR="$(ompi_info --path libdir --parsable 2>/dev/null | sed 's/.*:libdir://')"
mkdir -p "$DIR/ompi/bin" "$DIR/ompi${PKGLIB#/usr}" "$DIR/ompi/share"
cp "$ORTERUN" "$DIR/ompi/bin/mpirun"
cp -a "$PKGLIB/." "$DIR/ompi${PKGLIB#/usr}/"
cp -a /usr/share/openmpi "$DIR/ompi/share/"
# Every library the binaries, mpirun and the MPI plugins need, minus glibc and the torch wheel's.
skip='^(linux-vdso|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|ld-linux|libutil\.so|libstdc\+\+|libgcc_s)'
{ ldd "$DIR/bin/glmpipe" "$DIR/bin/libglmpipe_spm.so" "$ORTERUN" "$PKGLIB"/*.so 2>/dev/null || true; } |
  awk '/=> \//{print $1, $3}' | sort -u | while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [[ "$path" == *"/site-packages/"* ]] && continue
    cp -nL "$path" "$DIR/lib/$name"
  done
cp -n "$LIBDIR"/libmpi.so.* "$LIBDIR"/libopen-*.so.* "$DIR/lib/" 2>/dev/null || true
du -sh "$DIR"
