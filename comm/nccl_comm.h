// What the NCCL transport (nccl_transport.h) needs from NCCL/CUDA and from its header channel, as two
// small interfaces: the transport's state machine (posting, grouping, completion, abort) is plain C++
// and is unit-tested against fakes of both (tests/unit/nccl_transport_state_test.cpp) on machines
// without a GPU; nccl_comm_cuda.cpp implements them with NCCL, CUDA events and MPI.
//
// Ranks: both interfaces speak communicator ranks (0..members-1), not world ranks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/wire_header.h"

namespace glmpipe {

// One point-to-point operation of a group.
struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind = Kind::kSend;
  int peer = -1;  // communicator rank
  void* data = nullptr;
  int64_t bytes = 0;
};

class NcclComm {
 public:
  enum class State { kReady, kInProgress, kFailed };
  virtual ~NcclComm() = default;
  // ncclCommGetAsyncError: kInProgress while a non-blocking init or group launch is under way (no
  // other call may be made then), kFailed (with `error`) after an asynchronous error.
  virtual State state(std::string* error) = 0;
  // ncclGroupStart; every op; ncclGroupEnd; then a completion marker (a CUDA event once the launch
  // has finished). Only called in kReady. Returns the group's id.
  virtual int64_t post_group(const std::vector<P2POp>& ops) = 0;
  // True once every op of the group is complete (cudaEventQuery); throws glmpipe::Error on a CUDA
  // error. May be called again after it returned true, until release().
  virtual bool finished(int64_t group) = 0;
  virtual void release(int64_t group) = 0;
  // ncclCommAbort: stuck kernels return, the communicator is unusable afterwards.
  virtual void abort() = 0;
  // The tensor a send reads: contiguous, on the communicator's device, ordered after the work that
  // produced `t`. Throws for host tensors (they travel over MPI: see edge_plan.h).
  virtual at::Tensor send_source(const at::Tensor& t) = 0;
  // A receive buffer on the communicator's device.
  virtual at::Tensor empty(const std::vector<int64_t>& shape, at::ScalarType dtype) = 0;
};

// The small fixed-size headers that announce each payload (MPI, one tag for the whole stream of a
// pair so that they arrive in NCCL's issue order).
class HeaderChannel {
 public:
  virtual ~HeaderChannel() = default;
  virtual int64_t post_send(int peer, const ActivationHeader& h) = 0;
  virtual int64_t post_recv(int peer) = 0;
  // True once complete (a receive's header is then in *out); each id completes once, after which it
  // is forgotten. Throws glmpipe::Error on a channel error.
  virtual bool test(int64_t id, ActivationHeader* out) = 0;
  // Cancels an unmatched receive; false when a header already matched it (it must then be consumed).
  virtual bool cancel(int64_t id) = 0;
  virtual void barrier() = 0;
};

}  // namespace glmpipe
