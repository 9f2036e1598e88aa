// Process-level MPI helpers used outside the transports: whether we run under mpirun, and the
// job-wide abort that main() calls on any error so that no rank waits forever.
#pragma once

namespace glmpipe {

// True when started by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the env).
bool launched_by_mpi();
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is initialized and not finalized; otherwise nothing.
void abort_world_if_initialized(int code);

}  // namespace glmpipe
