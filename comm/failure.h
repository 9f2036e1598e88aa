// Failure handling for pipeline ranks: an error on any rank must end the whole job quickly, with a
// log line that says which rank/stage failed, instead of leaving the other stages blocked.
//
// What Open MPI 4.1's mpirun does (verified by tests/unit/mpi_failure_test.cpp):
//  * a rank killed by a signal (kill -9): mpirun notices at once, kills the other ranks and prints
//    "mpirun noticed that process rank 1 with PID ... on node ... exited on signal 9 (Killed)."
//    on stderr; mpirun exits non-zero (137 here).
//  * a rank that calls MPI_Abort(comm, code): mpirun prints "MPI_ABORT was invoked on rank 1 in
//    communicator ... with errorcode 1", kills the others and exits with `code`.
//  * the transport's liveness timeout (TransportOptions::timeout) is the backstop for a rank that is
//    alive but stuck, or for launchers that do not tear the job down.
#pragma once

#include <functional>
#include <string>

#include "comm/rank_context.h"

namespace glmpipe {

// Remembers `ctx` for failure messages and installs a std::terminate handler that logs the active
// exception with the rank/stage and calls MPI_Abort (so an exception escaping a thread or a noexcept
// function still takes the job down). Call once after RankContext::from_mpi().
void install_failure_handlers(const RankContext& ctx);

// Runs `body`; on an exception logs "rank r (stage s) failed: <what>" and MPI_Aborts the job with
// `abort_code` (when MPI is live). Returns 0 on success, `abort_code` when MPI was not live.
int run_rank_guarded(const std::function<void()>& body, int abort_code = 1);

// The message logged for a failure on this rank (for tests).
std::string failure_message(const std::string& what);

}  // namespace glmpipe
