// StageRunner: one rank's step loop. The model shard stays free of communication; the runner
// receives (or embeds), runs the shard's blocks, and sends on (or samples, on the last stage):
//
//   first stage:  Scheduler → micro-batch → embed → blocks → isend(meta, ids, hidden) → next
//   middle stage: recv(meta, ids, hidden) → blocks → isend → next
//   last stage:   recv → blocks → head → TokenSelector → isend(tokens) → first stage
//   (sampling parameters: first → last stage once per new sequence, Tag::kParams)
//   one stage:    all of the above in one process, no transport
//
// Several micro-batches are in flight at once (Scheduler's M): the first stage keeps forming and
// sending micro-batches while earlier ones are downstream, and every stage pre-posts its next
// receive so that the transfer overlaps compute. Sends are asynchronous and reaped later.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "comm/liveness.h"
#include "comm/rank_context.h"
#include "comm/stage_edges.h"
#include "comm/transport.h"
#include "model/model.h"
#include "stage/scheduler.h"
#include "stage/token_selector.h"

namespace glmpipe {

struct StageStats {
  double compute_s = 0, send_s = 0, recv_s = 0, idle_s = 0, wall_s = 0;
  int64_t micro_batches = 0, rows = 0;
  std::string summary(const RankContext& ctx) const;
};

struct RunnerOptions {
  int64_t slots = 1;         // KV-cache slots (max concurrent sequences)
  int64_t max_seq = 2048;    // per-sequence KV capacity
  int micro_batches = 1;     // M: micro-batches in flight (first stage)
  int64_t prefill_chunk = 0; // prompt tokens per micro-batch and sequence (causal families; 0: whole)
  // While work is in flight, the longest this stage waits for the pipeline (the first stage for a
  // kTokens reply, the others for the rest of a micro-batch) before the job ends with an error.
  // Waiting for work (an idle pipeline) is not bounded.
  Duration liveness_timeout = std::chrono::seconds(60);
};

class StageRunner {
 public:
  // `transport` may be null when the world has one rank; every edge then uses it.
  StageRunner(const RankContext& ctx, Shard& shard, Transport* transport, const RunnerOptions& opts,
              TokenCallback on_token = {});
  // Activations over each edge's own transport (NCCL between two CUDA ranks), host tensors over
  // edges.host() (comm/stage_edges.h). Pass a view(): the owner of the transports outlives the runner.
  StageRunner(const RankContext& ctx, Shard& shard, StageEdges edges, const RunnerOptions& opts,
              TokenCallback on_token = {});

  Scheduler& scheduler();  // first stage only
  // Last stage: receives the logits of every row of kFlagAllLogits sequences ([rows, vocab] fp32).
  // Heartbeats: the runner reports what it is doing (for liveness messages); may stay null.
  void set_liveness(LivenessMonitor* monitor) { liveness_ = monitor; }
  // Steady-clock time of the last kTokens reply (first stage), for /health.
  std::chrono::steady_clock::time_point last_reply() const { return last_reply_.load(); }
  void set_logits_callback(std::function<void(int64_t seq_id, const at::Tensor& logits)> cb) { on_logits_ = std::move(cb); }
  // Runs until the first stage's scheduler is shut down and drained (it then tells the others).
  void run();
  const StageStats& stats() const { return stats_; }

 private:
  void run_first();
  void run_downstream();
  // hidden [T, hidden] (or ids on the first stage) through this shard; on the last stage returns
  // the kTokens reply, otherwise sends on and returns an undefined tensor.
  at::Tensor compute(int64_t step, const std::vector<SeqMeta>& meta, const at::Tensor& ids, at::Tensor hidden);
  void send_on(int64_t step, const at::Tensor& meta, const at::Tensor& ids, const at::Tensor& hidden);
  void reap_sends(bool all);
  // Sampling parameters of the micro-batch's new sequences: first stage → last stage (kParams),
  // sent before the micro-batch itself; the last stage fills SeqMeta::params from them.
  void send_params(int64_t step, const std::vector<SeqMeta>& meta);
  void recv_params(std::vector<SeqMeta>& meta);
  void maybe_inject_fault(int64_t step) const;
  void activity(Activity a, const char* what, int peer = -1, int64_t step = -1) {
    if (liveness_) liveness_->set_activity(a, what, peer, step);
  }
  // First stage: waits for `rx` (the kTokens reply) while micro-batches are in flight; throws
  // after opts_.liveness_timeout without a reply since `since`, naming the silent rank if known.
  void wait_reply(PendingRecv& rx, std::chrono::steady_clock::time_point since);

  RankContext ctx_;
  Shard& shard_;
  StageEdges edges_;
  RunnerOptions opts_;
  KVCache cache_;
  std::unique_ptr<Scheduler> scheduler_;
  TokenSelector selector_;
  std::function<void(int64_t, const at::Tensor&)> on_logits_;
  std::vector<std::unique_ptr<PendingOp>> sends_;
  StageStats stats_;
  LivenessMonitor* liveness_ = nullptr;
  std::atomic<std::chrono::steady_clock::time_point> last_reply_{std::chrono::steady_clock::now()};
};

}  // namespace glmpipe
