#!/bin/sh
# Launch agent for hosts made by netns.sh, used by Open MPI instead of ssh
# (`--mca plm_rsh_agent tests/hosts/netns_agent.sh`): `netns_agent.sh HOST CMD...` runs the shell
# command CMD... (joined by spaces, as ssh does) inside network namespace HOST.
[ $# -ge 2 ] || { echo "usage: netns_agent.sh HOST CMD..." >&2; exit 2; }
host=$1
shift
ip netns list | awk '{print $1}' | grep -qx "$host" || { echo "netns_agent.sh: no host (network namespace) '$host'" >&2; exit 255; }
exec ip netns exec "$host" /bin/sh -c "$*"
