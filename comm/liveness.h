// LivenessMonitor: heartbeats between the ranks of a pipeline, so that a rank that is alive but
// silent (SIGSTOP, a swapped-out node, a cut network link) ends the job instead of hanging it.
//
// Every rank runs one background thread that sends a small heartbeat to every other rank each
// `interval` (on its own duplicate of MPI_COMM_WORLD, so it never mixes with the activation
// stream) and keeps one receive posted per peer. A peer not heard from for `timeout` is silent:
// the thread logs one line and ends the job (MPI_Abort; mpirun then takes every rank down):
//
//   rank 0/3 (stage 0): liveness: rank 1 (stage 1) silent for 3.1 s (bound 3 s: mpi.liveness_timeout_s /
//   --liveness-timeout); it last reported: computing micro-batch 17; this rank was waiting for:
//   kTokens reply to micro-batch 17 from rank 2 (stage 2); ending the job
//
// Heartbeats flow whatever the stage loop does, so an idle pipeline is not a stall. A stage stuck
// inside compute while its heartbeat thread still runs is caught by the stage loop's own bounded
// waits (StageRunner), whose error message uses silent_peers()/peer_report() from here.
// A rank that stops its monitor normally sends a last "goodbye" heartbeat; its peers then stop
// expecting it (so ranks that finish at different times are not mistaken for stalled ones).
//
// Needs MPI_THREAD_MULTIPLE (the thread calls MPI while the stage loop does); with a lower thread
// level the monitor logs a warning and stays inactive (the bounded waits remain).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/rank_context.h"
#include "comm/transport.h"

namespace glmpipe {

// What this rank's stage loop is doing (sent in heartbeats, shown in liveness messages).
enum class Activity : int32_t {
  kStarting = 0,
  kIdle = 1,            // waiting for work (no bound)
  kComputing = 2,       // running a micro-batch through the shard
  kWaitingTokens = 3,   // first stage: waiting for the kTokens reply of in-flight micro-batches
  kWaitingInput = 4,    // downstream stage: receiving a micro-batch's ids/activations
  kSending = 5,         // waiting for sends to complete
  kFinishing = 6,       // after the stage loop (barrier, shutdown)
};
const char* activity_name(Activity a);

struct LivenessOptions {
  Duration timeout = std::chrono::seconds(60);  // silence after which a peer is declared stalled
  Duration interval = Duration::zero();         // heartbeat period; 0 = timeout / 6 clamped to [20 ms, 1 s]
  // Called (on the monitor thread) with the message when a peer is silent; the default logs it
  // at error level, flushes and MPI_Aborts the job with code 1.
  std::function<void(int peer, const std::string& message)> on_silent;
  // Host of each rank (ranks[].host of the deployment; "" or missing: not named), so that a cut
  // link is reported as "rank 1 (stage 1, host node2)".
  std::vector<std::string> hosts;
};

class LivenessMonitor {
 public:
  // Collective over MPI_COMM_WORLD (duplicates it): every rank constructs its monitor at the same
  // point. Starts the heartbeat thread.
  LivenessMonitor(const RankContext& ctx, LivenessOptions options);
  // stop(true).
  ~LivenessMonitor();
  LivenessMonitor(const LivenessMonitor&) = delete;
  LivenessMonitor& operator=(const LivenessMonitor&) = delete;

  // Ends the thread; `goodbye` tells the peers that this rank leaves on purpose (skip it while an
  // error is unwinding: the job is about to be aborted). Idempotent.
  void stop(bool goodbye);

  // Records what this rank does now; `what` must be a string literal (kept by pointer).
  void set_activity(Activity a, const char* what, int peer = -1, int64_t step = -1);

  bool active() const { return active_; }
  Duration timeout() const { return opt_.timeout; }
  Duration interval() const { return opt_.interval; }
  // Seconds since `peer` was last heard from (0 for this rank, for gone peers, or when inactive).
  double silence_s(int peer) const;
  // "rank 1 (stage 1) silent for 2.9 s (it last reported: computing micro-batch 17)" for every peer
  // silent for longer than `older_than`, joined by "; " ("" when none).
  std::string silent_peers(Duration older_than) const;
  // The first peer silent for longer than `older_than` (-1: none).
  int first_silent_peer(Duration older_than) const;
  // What every other rank last reported: "rank 1 (stage 1): computing micro-batch 17, heard 0.2 s
  // ago; rank 2 (stage 2): idle, waiting for work, heard 0.1 s ago" (names a rank stuck in compute
  // while its heartbeat thread still runs).
  std::string peer_report() const;
  // True when every peer that has not said goodbye was heard from within `within`.
  bool all_heard_within(Duration within) const;
  // This rank's current activity in words: "kTokens reply to micro-batch 17 from rank 2 (stage 2)".
  std::string activity_text() const;

 private:
  struct Peer;
  void loop();
  void poll_peers(std::chrono::steady_clock::time_point now);
  void send_heartbeats(int64_t kind);
  std::string peer_text(int peer, double silent_s) const;
  std::string rank_name(int r) const;  // "rank 1 (stage 1)" or "rank 1 (stage 1, host node2)"

  RankContext ctx_;
  LivenessOptions opt_;
  bool active_ = false;
  struct Comm;  // the MPI communicator (defined in liveness.cpp: this header does not need mpi.h)
  std::unique_ptr<Comm> comm_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::thread thread_;
  int64_t seq_ = 0;
  std::atomic<int32_t> act_{0};
  std::atomic<const char*> act_what_{nullptr};
  std::atomic<int> act_peer_{-1};
  std::atomic<int64_t> act_step_{-1};
};

}  // namespace glmpipe
