#!/usr/bin/env bash
# bench_hop (one-way hop latency of a [rows, 4096] activation, f32 and bf16) between two hosts over
# TCP -- two network namespaces joined by a veth/bridge (tests/hosts/netns.sh), Open MPI's daemons
# started in them by the netns launch agent -- next to the same two ranks on one host over shared
# memory. Needs root (namespaces). Results: bench/RESULTS_hop.md.
#   bench/bench_hop_tcp.sh [BUILD_DIR=build] [ITERATIONS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ITERS=${2:-2000}
BENCH=$(realpath "$BUILD/bench/bench_hop")
[ -x "$BENCH" ] || { echo "no $BENCH (cmake --build $BUILD --target bench_hop)" >&2; exit 1; }
export OMPI_MCA_pml=ob1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "## shared memory, one host: mpirun -np 2 --bind-to none --mca btl self,vader bench_hop $ITERS"
mpirun -np 2 --bind-to none --mca btl self,vader "$BENCH" "$ITERS"
echo
# shellcheck disable=SC2016
tests/hosts/netns.sh run 2 -- bash -c '
  set -eu
  set -- $GLMPIPE_NETNS_HOSTS
  line="mpirun --bind-to none --mca btl self,tcp --mca btl_tcp_if_include $GLMPIPE_NETNS_SUBNET
        --mca oob_tcp_if_include $GLMPIPE_NETNS_SUBNET --mca plm_rsh_agent $GLMPIPE_NETNS_AGENT
        --mca plm_rsh_no_tree_spawn 1 --host $1:1,$2:1 -np 2"
  echo "## TCP between two hosts (namespaces $1, $2 on $GLMPIPE_NETNS_SUBNET over a veth bridge): $(echo $line) bench_hop '"$ITERS"'"
  ip netns exec "$1" $line '"$BENCH $ITERS"'
'
