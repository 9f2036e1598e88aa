// Transport whose payloads travel over NCCL (GPU to GPU) while a small ActivationHeader announces
// each one over MPI. Built for the edges between two CUDA ranks (edge_plan.h); host tensors travel
// over the MPI transport and are refused here.
//
// Communicator: the world ranks in `members` only (MPI_Comm_split; a CPU rank never needs a GPU),
// created non-blocking with ncclCommInitRankConfig; the constructor waits for it with the transport's
// timeout and aborts it when that passes (a peer that never joins cannot hang the job).
//
// Ordering: NCCL matches the point-to-point operations of a pair in issue order, whatever the Tag.
// Headers therefore share ONE MPI tag per pair; a payload receive is posted only once its header is
// in, and in the order the receives were posted (a FIFO per peer). Between a pair, post receives in
// the order the peer sends; a header of another Tag than expected fails validation (its payload is
// still drained so the stream stays in step).
//
// Grouping: every operation that is ready when the transport makes progress (a new send plus the
// receives whose header has arrived) is posted in one ncclGroupStart/ncclGroupEnd, so two ranks
// that send to and receive from each other cannot deadlock on NCCL's one-operation-at-a-time rule.
// Because a receive is posted only after its sender posted the send, a chain of stages always drains.
//
// Completion: test() makes progress and reports completion (header sent and payload event done);
// wait() polls it. One lock per communicator serializes every NCCL and header call.
//
// Failure: a wait that passes its timeout, or an asynchronous NCCL error seen by any test(), aborts
// the communicator (ncclCommAbort: stuck kernels return) and throws glmpipe::Error naming the peer;
// every later call throws "communicator aborted". The 10 s failure promise (liveness) thus holds
// during init, first connection and every transfer.
#pragma once

#include <memory>
#include <vector>

#include "comm/nccl_comm.h"
#include "comm/rank_context.h"
#include "comm/transport.h"

namespace glmpipe {

struct NcclOptions {
  TransportOptions transport;
  int device = -1;  // CUDA device; -1: RankContext::local_rank()
};

// True when this build has the CUDA/NCCL side (GLMPIPE_HAVE_CUDA).
bool nccl_transport_built();

// Collective over MPI_COMM_WORLD (every rank calls it; ranks not in `members` get null). Requires MPI
// and, on members, a CUDA device; throws glmpipe::Error otherwise (and "built without CUDA").
std::unique_ptr<Transport> make_nccl_transport(const RankContext& ctx, const std::vector<int>& members,
                                               const NcclOptions& options = {});

// The transport over given parts (tests use fakes). `members`: world ranks of the communicator,
// `rank`: this one's world rank (in members). Waits for `comm` to be ready (see above).
std::unique_ptr<Transport> make_nccl_transport_over(int rank, int world, std::vector<int> members,
                                                    std::unique_ptr<NcclComm> comm,
                                                    std::unique_ptr<HeaderChannel> headers,
                                                    const TransportOptions& options = {});

}  // namespace glmpipe
