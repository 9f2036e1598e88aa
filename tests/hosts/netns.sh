#!/usr/bin/env bash
# Hosts on one machine: N network namespaces on one private /24, joined by a bridge, for multi-host
# pipeline tests over TCP. Everything stays inside these namespaces: the bridge lives in its own
# "switch" namespace (nothing of it is in the machine's own network stack), each host has only
# `lo` and `eth0` (a veth to the switch) and a route to its /24 only, so no packet can reach any
# other address.
#
#   netns.sh check                    exit 0 when namespaces can be made here, else print why, exit 1
#   netns.sh up N [OWNER_PID]         make N hosts; prints TAG (say g17): hosts g17-h0 .. g17-h{N-1}
#                                     at 10.250.17.1 .. N on 10.250.17.0/24, switch g17-sw
#   netns.sh down TAG                 remove TAG's namespaces (and with them every veth and the bridge)
#   netns.sh cut TAG I [drop]         host I loses its link: the switch side of its veth goes down
#                                     (or, with `drop`, its link stays up and tc drops every packet, both ways)
#   netns.sh heal TAG I               undo cut
#   netns.sh run N -- CMD...          up N, run CMD with GLMPIPE_NETNS_{TAG,HOSTS,SUBNET,AGENT} set,
#                                     down on exit (trap: also on error, INT and TERM). When namespaces
#                                     cannot be made CMD still runs, with GLMPIPE_NETNS_SKIP=<why>.
#
# The launch agent `netns_agent.sh HOST CMD...` runs CMD "on" HOST (ip netns exec); Open MPI uses it
# instead of ssh: `--mca plm_rsh_agent tests/hosts/netns_agent.sh`. Host names are namespace names.
# TAGs are allocated under /run/glmpipe-netns (one directory each, holding the owner's pid), so
# concurrent test runs never share a tag, and `up` removes the namespaces of owners that died.
set -euo pipefail

STATE=/run/glmpipe-netns
PREFIX=g

die() { echo "netns.sh: $*" >&2; exit 1; }

can_make() {
  [ "$(id -u)" -eq 0 ] || { echo "not root (network namespaces need CAP_SYS_ADMIN)"; return 1; }
  command -v ip >/dev/null 2>&1 || { echo "no 'ip' command (install iproute2)"; return 1; }
  local probe="${PREFIX}probe$$"
  if ! ip netns add "$probe" 2>/dev/null; then echo "cannot create a network namespace (ip netns add failed)"; return 1; fi
  local ok=0
  ip netns exec "$probe" ip link add vprobe type veth peer name vprobe1 2>/dev/null || ok=1
  ip netns exec "$probe" ip link add bprobe type bridge 2>/dev/null || ok=2
  ip netns del "$probe" 2>/dev/null || true
  [ $ok -eq 0 ] || { echo "cannot create veth pairs or bridges inside a namespace"; return 1; }
}

remove_tag() {  # remove every namespace of one tag; never fails
  local tag=$1 ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${tag}-(h[0-9]+|sw)\$" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true  # leftover daemons of that host
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "${STATE:?}/${tag}"
}

reap_dead_owners() {
  local d pid
  for d in "$STATE"/"$PREFIX"*; do
    [ -d "$d" ] || continue
    pid=$(cat "$d/owner" 2>/dev/null || echo 0)
    if [ "$pid" -gt 0 ] 2>/dev/null && kill -0 "$pid" 2>/dev/null; then continue; fi
    remove_tag "$(basename "$d")"
  done
}

allocate_tag() {  # prints a free tag g1..g250, owned by $1
  mkdir -p "$STATE"
  local i
  for i in $(seq 1 250); do
    if mkdir "$STATE/$PREFIX$i" 2>/dev/null; then
      echo "$1" > "$STATE/$PREFIX$i/owner"
      echo "$PREFIX$i"
      return 0
    fi
  done
  die "no free tag under $STATE"
}

up() {
  local n=$1 owner=${2:-$PPID}
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 32 ] || die "up: N must be 1..32, got '$n'"
  reap_dead_owners
  local tag
  tag=$(allocate_tag "$owner")
  local num=${tag#"$PREFIX"} sw="${tag}-sw"
  trap 'remove_tag "$tag"' ERR  # a half-made set of hosts never survives a failed `up`
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local i ns
  for i in $(seq 0 $((n - 1))); do
    ns="${tag}-h$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$sw" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "v$i" master br0 up
    ip -n "$ns" addr add "10.250.$num.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  trap - ERR
  echo "$tag"
}

host_index_ok() { [[ "$2" =~ ^[0-9]+$ ]] && ip netns list | awk '{print $1}' | grep -qx "$1-h$2" || die "no host $1-h$2"; }

cut() {
  local tag=$1 i=$2 how=${3:-down}
  host_index_ok "$tag" "$i"
  case "$how" in
    down) ip -n "${tag}-sw" link set "v$i" down ;;
    drop) # the link stays up but every packet is lost, both ways (a blackhole qdisc on each end)
          tc -n "${tag}-h$i" qdisc replace dev eth0 root blackhole
          tc -n "${tag}-sw" qdisc replace dev "v$i" root blackhole ;;
    *) die "cut: '$how' is not down or drop" ;;
  esac
}

heal() {
  local tag=$1 i=$2
  host_index_ok "$tag" "$i"
  ip -n "${tag}-sw" link set "v$i" up
  tc -n "${tag}-h$i" qdisc del dev eth0 root 2>/dev/null || true
  tc -n "${tag}-sw" qdisc del dev "v$i" root 2>/dev/null || true
}

run() {
  local n=$1
  shift
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "run: no command"
  local why
  if ! why=$(can_make); then
    echo "netns.sh: hosts unavailable: $why" >&2
    GLMPIPE_NETNS_SKIP="$why" "$@"
    return $?
  fi
  RUN_TAG=$(up "$n" $$)  # global: the EXIT trap runs after run() returned
  local tag=$RUN_TAG
  trap 'remove_tag "$RUN_TAG"' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  local hosts="" i
  for i in $(seq 0 $((n - 1))); do hosts="$hosts${hosts:+ }${tag}-h$i"; done
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  GLMPIPE_NETNS_TAG="$tag" GLMPIPE_NETNS_HOSTS="$hosts" GLMPIPE_NETNS_SUBNET="10.250.${tag#"$PREFIX"}.0/24" \
    GLMPIPE_NETNS_AGENT="$here/netns_agent.sh" GLMPIPE_NETNS_SCRIPT="$here/netns.sh" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
  check) why=$(can_make) || { echo "$why"; exit 1; } ;;
  up) [ $# -ge 1 ] || die "usage: netns.sh up N [OWNER_PID]"; up "$@" ;;
  down) [ $# -eq 1 ] || die "usage: netns.sh down TAG"; remove_tag "$1" ;;
  cut) [ $# -ge 2 ] || die "usage: netns.sh cut TAG I [down|drop]"; cut "$@" ;;
  heal) [ $# -eq 2 ] || die "usage: netns.sh heal TAG I"; heal "$@" ;;
  run) [ $# -ge 2 ] || die "usage: netns.sh run N -- CMD..."; run "$@" ;;
  *) die "usage: netns.sh check | up N [OWNER_PID] | down TAG | cut TAG I [down|drop] | heal TAG I | run N -- CMD..." ;;
esac
