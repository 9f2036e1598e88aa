// Process-level MPI helpers used outside the transports: whether we run under mpirun, the job-wide
// abort that main() calls on any error so that no rank waits forever, and the MPI return-code check.
// (RankContext::from_mpi() and finalize_mpi(), declared in rank_context.h, live in world.cpp too.)
#pragma once

#include <string>

#include "common/error.h"

namespace glmpipe {

// True when started by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the env).
bool launched_by_mpi();
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is initialized and not finalized; otherwise nothing.
void abort_world_if_initialized(int code);
// True between MPI_Init and MPI_Finalize.
bool mpi_is_live();
// MPI_Error_string for a return code ("MPI error 5" when MPI cannot say).
std::string mpi_error_string(int code);

}  // namespace glmpipe

// Wraps an MPI call (for .cpp files that include <mpi.h>): throws glmpipe::Error with the call, the
// MPI error string and the streamed context. MPI_SUCCESS is 0 by the standard.
//   GLMPIPE_MPI_CHECK(MPI_Isend(...)) << "sending to rank " << peer;
#define GLMPIPE_MPI_CHECK(call)                                             \
  if (int glmpipe_mpi_rc_ = (call); glmpipe_mpi_rc_ == 0) {                 \
  } else                                                                    \
    ::glmpipe::detail::ErrorBuilder(__FILE__, __LINE__, nullptr).stream()   \
        << #call << " failed: " << ::glmpipe::mpi_error_string(glmpipe_mpi_rc_) << ": "
