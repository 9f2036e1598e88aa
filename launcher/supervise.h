// Runs a child program (mpirun) and stays its parent, turning SIGTERM/SIGINT into another signal
// for it. Used by `glmpipe serve --config` with several ranks: Open MPI's mpirun answers SIGTERM
// by killing the job (SIGTERM, then SIGKILL to every rank) and exits 1, so a server under mpirun
// could not drain; it does forward SIGUSR1 to every rank, which the ranks of `serve` treat as a
// stop request (rank 0 drains and shuts the pipeline down; the others follow it).
//
// The child runs in its own process group (a Ctrl-C on the terminal reaches only this process,
// which forwards it), with stdin from /dev/null (a background process group must not read the
// terminal), and gets SIGTERM if this process dies (PR_SET_PDEATHSIG), so no job outlives it.
#pragma once

#include <string>
#include <vector>

namespace glmpipe {

// Forks, execs argv[0] (PATH search) in the child, forwards SIGTERM/SIGINT/SIGHUP as `forward_as`
// until the child exits. Returns the child's exit status (128 + signal when killed by one).
// Throws glmpipe::Error naming the program when it cannot be started.
int run_supervised(const std::vector<std::string>& argv, int forward_as);

}  // namespace glmpipe
