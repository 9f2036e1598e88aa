// The NCCL transport's header channel over MPI: one MPI tag for every header of a pair (so headers
// arrive in the order their payloads were issued to NCCL), on a duplicate of `comm` with
// MPI_ERRORS_RETURN. Peers are ranks of `comm`.
#pragma once

#include <mpi.h>

#include <memory>

#include "comm/nccl_comm.h"

namespace glmpipe {

std::unique_ptr<HeaderChannel> make_mpi_header_channel(MPI_Comm comm);

}  // namespace glmpipe
