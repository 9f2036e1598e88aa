#!/bin/sh
# Launch agent for hosts made by netns.sh, used by Open MPI instead of ssh
# (`--mca plm_rsh_agent tests/hosts/netns_agent.sh`): `netns_agent.sh HOST CMD...` runs the shell
# command CMD... (joined by spaces, as ssh does) inside network namespace HOST.
#
# The namespaces share one hostname and one file system, so without care every host's orted and
# ranks would also share Open MPI's session directory (/tmp/ompi.HOSTNAME.UID/jf.N/...) and vader
# segment names (/dev/shm/vader_segment.HOSTNAME.UID.JOB.LOCALRANK): a daemon finishing on one
# host removed the others' directories, and a start-up raced the other host's (seen as a daemon
# that exits silently after daemonizing, and mpirun waiting for it forever). Real hosts have their
# own /tmp and /dev/shm; here each host gets its own, under netns.sh's state for its tag (removed
# with the tag).
[ $# -ge 2 ] || { echo "usage: netns_agent.sh HOST CMD..." >&2; exit 2; }
host=$1
shift
ip netns list | awk '{print $1}' | grep -qx "$host" || { echo "netns_agent.sh: no host (network namespace) '$host'" >&2; exit 255; }
tmp=/run/glmpipe-netns/${host%-h*}/$host
mkdir -p "$tmp/shm" || exit 255
exec ip netns exec "$host" env TMPDIR="$tmp" OMPI_MCA_btl_vader_backing_directory="$tmp/shm" /bin/sh -c "$*"
