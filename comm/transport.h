// The activation transport between pipeline stages: asynchronous, typed, tagged.
//
//   auto op = transport.isend(next, Tag::kActivations, step, mb, hidden);   // post now
//   auto rx = transport.irecv(prev, Tag::kActivations, want);               // post now
//   ... compute ...
//   op->wait();  Received r = rx->wait();                                   // wait later
//
// Matching. A message is (peer, Tag, seq_id). Each logical Tag uses its own pair of MPI tags (one for
// the fixed-size header, one for the payload), and the payload is received from the rank that sent
// the header. Several messages of one Tag may be in flight between two ranks: MPI's non-overtaking
// rule (two messages from the same source with the same tag and communicator are matched in the
// order they were sent) keeps them in order, so the k-th irecv posted for (peer, Tag) gets the k-th
// message sent; receivers pass Expectation::seq_id to turn an ordering bug into a clear error.
// Different Tags are independent streams (a kTokens message can overtake kActivations).
//
// Liveness. wait() never blocks forever: it throws glmpipe::Error naming the peer rank after
// `timeout` (TransportOptions::timeout by default) with no progress.
//
// Lifetime. The Transport must outlive its pending ops. A pending send may be dropped before it
// completes (the transport keeps the buffer alive until MPI is done with it); a dropped receive
// cancels its header receive when nothing has matched it yet, otherwise its message is drained.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>

#include "comm/wire_header.h"

namespace glmpipe {

constexpr int kAnySource = -1;

using Duration = std::chrono::microseconds;

struct TransportOptions {
  // Silence after which wait() throws ("rank N may be dead or stuck").
  Duration timeout = std::chrono::seconds(60);
  // wait(): spin on MPI_Test for `spin`, then sleep `poll_interval` between tests. Spinning gives the
  // lowest latency (a hop of a 16 KiB activation is a few µs) but burns a core; sleeping costs
  // ~poll_interval + the kernel's timer slack (~50 µs) of extra latency per message and almost no
  // CPU. A stage that waits while another thread computes should keep `spin` small.
  Duration spin = std::chrono::microseconds(200);
  Duration poll_interval = std::chrono::microseconds(20);
  int64_t max_message_bytes = kMaxPayloadBytes;
};

class PendingOp {
 public:
  virtual ~PendingOp() = default;
  // Non-blocking: true once complete. Throws glmpipe::Error on a transport error.
  virtual bool test() = 0;
  // Blocks until complete; `timeout` <= 0 means TransportOptions::timeout.
  virtual void wait(Duration timeout) = 0;
  void wait() { wait(Duration::zero()); }
};

struct Received {
  ActivationHeader header;
  at::Tensor tensor;  // contiguous, dtype/shape from the header
  int source = -1;    // rank that sent it
};

class PendingRecv {
 public:
  virtual ~PendingRecv() = default;
  // Non-blocking: true once the payload has arrived (wait() then returns at once).
  virtual bool test() = 0;
  // Blocks until the message is in; throws on timeout or when the header fails validation.
  virtual Received wait(Duration timeout) = 0;
  Received wait() { return wait(Duration::zero()); }
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Asynchronous send of a tensor (made contiguous if needed) to `peer`.
  virtual std::unique_ptr<PendingOp> isend(int peer, Tag tag, int64_t step, int64_t seq_id,
                                           const at::Tensor& t) = 0;
  // Asynchronous receive from `peer` (or kAnySource) of the next message with `tag`. The header is
  // validated against `want` (Expectation::tag is set to `tag`); the payload lands in `into` when it
  // is defined (contiguous, matching dtype and numel), else in a freshly allocated tensor.
  virtual std::unique_ptr<PendingRecv> irecv(int peer, Tag tag, const Expectation& want,
                                             at::Tensor into) = 0;
  std::unique_ptr<PendingRecv> irecv(int peer, Tag tag, const Expectation& want = {}) {
    return irecv(peer, tag, want, at::Tensor());
  }
  virtual void barrier() = 0;
  virtual std::string name() const = 0;

  // Blocking helpers: post and wait.
  void send(int peer, Tag tag, int64_t step, int64_t seq_id, const at::Tensor& t) {
    isend(peer, tag, step, seq_id, t)->wait();
  }
  Received recv(int peer, Tag tag, const Expectation& want = {}) { return irecv(peer, tag, want)->wait(); }
};

}  // namespace glmpipe
