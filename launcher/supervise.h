// Runs a child program (mpirun) and stays its parent, for every pipeline glmpipe starts:
//  * signals: SIGTERM/SIGINT/SIGHUP sent to this process are passed on to the child (see
//    SuperviseOptions::forward_as). `glmpipe serve --config` passes them as SIGUSR1: Open MPI's
//    mpirun answers SIGTERM by killing the job (SIGTERM, then SIGKILL to every rank), so a server
//    under mpirun could not drain; it does forward SIGUSR1 to every rank, which the ranks of `serve`
//    treat as a stop request (rank 0 drains and shuts the pipeline down; the others follow it).
//  * a job that does not end: a rank that ends the job (MPI_Abort, e.g. on a liveness failure)
//    reports it with kLauncherSignal (comm/job_teardown.h). mpirun then normally ends the job within
//    a second; when it does not (it waits for a daemon on a host whose link is cut, for ever), this
//    process ends it after SuperviseOptions::grace_s: SIGKILL to mpirun and the processes it started
//    here (its daemons elsewhere end when they lose their connection to it).
// The child gets SIGTERM if this process dies (PR_SET_PDEATHSIG), so no job outlives it.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace glmpipe {

struct SuperviseOptions {
  // SIGTERM/SIGINT/SIGHUP received reach the child as this signal. 0: as themselves, except those a
  // terminal sent to the whole process group (the child, in that group, has them already).
  int forward_as = 0;
  // The child runs in a process group of its own with stdin from /dev/null (`serve`: a Ctrl-C must
  // reach only this process, which forwards it; a background group must not read the terminal).
  // Otherwise it shares this process's group, terminal and stdin (`chat`, `batch --input -`).
  bool own_group = false;
  double grace_s = 3;  // after a rank's report: time mpirun gets to end the job itself
};

struct SupervisedExit {
  int status = 0;          // the child's exit status (128 + signal when killed by one)
  bool reported = false;   // a rank reported ending the job
  int reporter = -1;       // that rank
  int silent = -1;         // the rank whose silence it reported (-1: another failure)
  bool ended_by_us = false;  // the child did not end within grace_s and was killed
};

// Forks, execs argv[0] (PATH search) in the child and waits for it as described above.
// Throws glmpipe::Error naming the program when it cannot be started.
SupervisedExit run_supervised(const std::vector<std::string>& argv, const SuperviseOptions& options);

}  // namespace glmpipe
