// Transport whose payloads travel over NCCL (GPU to GPU) while the small ActivationHeader still
// travels over MPI. Compiles without CUDA: make_nccl_transport() then throws "built without CUDA".
//
// One NCCL communicator spans all ranks (ncclUniqueId from rank 0 via MPI_Bcast); sends and receives
// run on the transport's own CUDA stream, completion is a CUDA event; on a timeout or an NCCL error
// the communicator is aborted (ncclCommAbort) so no kernel waits forever.
//
// Ordering: NCCL matches point-to-point operations between two ranks in issue order, whatever the
// tag. Headers therefore share ONE MPI tag per pair and every payload receive is issued in header
// order: between a pair of ranks, receives must be posted in the order the peer sends (any Tag); a
// message of another Tag than the one expected fails validation instead of corrupting data.
// Libtorch here is CPU-only: CPU tensors are staged through device buffers; the *_device calls take
// raw device pointers.
#pragma once

#include <memory>
#include <vector>

#include "comm/rank_context.h"
#include "comm/transport.h"

namespace glmpipe {

struct NcclOptions {
  TransportOptions transport;
  int device = -1;  // CUDA device; -1: RankContext::local_rank()
};

class NcclTransport : public Transport {
 public:
  virtual int device() const = 0;
  // Asynchronous send of `nbytes` of device memory at `dev` described by dtype/shape.
  virtual std::unique_ptr<PendingOp> isend_device(int peer, Tag tag, int64_t step, int64_t seq_id, DType dtype,
                                                  const std::vector<int64_t>& shape, const void* dev) = 0;
  // Blocking receive into device memory `dev` of `capacity` bytes; returns the validated header.
  virtual ActivationHeader recv_device(int peer, Tag tag, const Expectation& want, void* dev,
                                       int64_t capacity) = 0;
};

// True when this build has the NCCL transport (GLMPIPE_HAVE_CUDA).
bool nccl_transport_built();
// Requires MPI (RankContext::from_mpi()) and a CUDA device; throws glmpipe::Error otherwise.
std::unique_ptr<NcclTransport> make_nccl_transport(const RankContext& ctx, const NcclOptions& options = {});

}  // namespace glmpipe
