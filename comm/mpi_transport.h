// Transport over MPI point-to-point (MPI_Isend/MPI_Irecv on a duplicate of MPI_COMM_WORLD with
// MPI_ERRORS_RETURN, host memory). CUDA tensors, in a CUDA build, are staged through pinned host
// buffers. Requires MPI to be initialized (RankContext::from_mpi()).
//
// MPI tags: logical Tag t uses 1000 + 2t for headers and 1000 + 2t + 1 for payloads.
#pragma once

#include <memory>

#include "comm/rank_context.h"
#include "comm/transport.h"

namespace glmpipe {

std::unique_ptr<Transport> make_mpi_transport(const RankContext& ctx, const TransportOptions& options = {});

// MPI tags used for a logical tag (exposed for tests and the NCCL transport's header channel).
int header_mpi_tag(Tag tag);
int payload_mpi_tag(Tag tag);

}  // namespace glmpipe
