#!/usr/bin/env bash
# A one-machine Slurm for tests: munged + slurmctld + slurmd (Debian's slurm-wlm), all with their
# own key, socket, ports, state and logs in a fresh temp directory, talking over 127.0.0.1 only.
# Nothing is left behind: the daemons are stopped and the directory removed on exit (trap).
#
#   slurm.sh check               exit 0 when a Slurm can be started here, else print why, exit 1
#   slurm.sh run -- CMD...       start Slurm, wait for its node to be idle, run CMD with SLURM_CONF
#                                (and GLMPIPE_SLURM_DIR, the daemons' directory) set, stop Slurm.
#                                Where Slurm cannot be started CMD still runs, with
#                                GLMPIPE_SLURM_SKIP=<why>.
#
# One Slurm at a time per machine (flock on /run/glmpipe-slurm.lock): concurrent test runs wait.
# The Debian packages (slurmctld slurmd slurm-client munge) come from scripts/setup.sh, which
# installs them without starting their services.
set -euo pipefail

CTLD_PORT=${GLMPIPE_SLURMCTLD_PORT:-26817}
SLURMD_PORT=${GLMPIPE_SLURMD_PORT:-26818}

die() { echo "slurm.sh: $*" >&2; exit 1; }

can_start() {
  [ "$(id -u)" -eq 0 ] || { echo "not root (slurmd must run as root)"; return 1; }
  local b
  for b in munged slurmctld slurmd sbatch scancel squeue sinfo; do
    command -v "$b" >/dev/null 2>&1 || { echo "no '$b' (install slurmctld slurmd slurm-client munge)"; return 1; }
  done
}

write_conf() {  # $1 = directory
  local d=$1 node cpus mem
  node=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  cat > "$d/slurm.conf" <<EOF
# written by tests/hosts/slurm.sh: one node, this machine, over 127.0.0.1
ClusterName=glmpipe-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge.socket
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

stop_all() {  # $1 = directory; stops the daemons started from it, removes it
  local d=$1 f pid
  for f in slurmd slurmctld munged; do
    pid=$(cat "$d/$f.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 1
  for f in slurmd slurmctld munged; do
    pid=$(cat "$d/$f.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "${d:?}"
}

start_all() {  # $1 = directory
  local d=$1
  mkdir -p "$d/state" "$d/spool"
  chmod 700 "$d"
  head -c 1024 /dev/urandom > "$d/munge.key"
  chmod 400 "$d/munge.key"
  munged --force --key-file="$d/munge.key" --socket="$d/munge.socket" --pid-file="$d/munged.pid" \
    --log-file="$d/munged.log" --seed-file="$d/munged.seed" || { cat "$d/munged.log" >&2; return 1; }
  write_conf "$d"
  export SLURM_CONF=$d/slurm.conf
  slurmctld -c -f "$SLURM_CONF" || { cat "$d/slurmctld.log" >&2; return 1; }
  slurmd -f "$SLURM_CONF" || { cat "$d/slurmd.log" >&2; return 1; }
  local i state
  for i in $(seq 1 60); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    [ "$state" = "idle" ] && return 0
    sleep 0.5
  done
  echo "slurm.sh: the node never became idle (state '${state:-?}')" >&2
  tail -20 "$d/slurmctld.log" "$d/slurmd.log" >&2 || true
  return 1
}

run() {
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "run: no command"
  local why
  if ! why=$(can_start); then
    echo "slurm.sh: Slurm unavailable: $why" >&2
    GLMPIPE_SLURM_SKIP="$why" "$@"
    return $?
  fi
  exec 9>/run/glmpipe-slurm.lock
  flock -w 1200 9 || die "another test's Slurm held /run/glmpipe-slurm.lock for 20 minutes"
  SLURM_DIR=$(mktemp -d /tmp/glmpipe-slurm.XXXXXX)  # global: the EXIT trap runs after run() returned
  local d=$SLURM_DIR
  trap 'stop_all "$SLURM_DIR"' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  if ! start_all "$d"; then
    echo "slurm.sh: Slurm did not start" >&2
    GLMPIPE_SLURM_SKIP="the one-machine Slurm did not start (see the logs above)" "$@"
    return $?
  fi
  GLMPIPE_SLURM_DIR="$d" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
  check) why=$(can_start) || { echo "$why"; exit 1; } ;;
  run) run "$@" ;;
  *) die "usage: slurm.sh check | run -- CMD..." ;;
esac
