#include "stage/stage_runner.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "comm/job_teardown.h"
#include "common/error.h"

namespace glmpipe {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Waits for `rx` without a liveness bound (an idle pipeline is legitimate; a silent peer is caught
// by the heartbeats of comm/liveness.h), polling gently.
Received wait_idle(PendingRecv& rx) {
  while (!rx.test()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  return rx.wait();
}
}  // namespace

// Failure-injection hooks for the failure tests: GLMPIPE_FAULT="RANK:STEP" makes that rank throw
// when it starts micro-batch STEP (an ordinary error mid-generation); GLMPIPE_SLOW_STEP_MS=N makes
// every micro-batch take N ms longer (a slow model, so that server tests have requests in flight);
// GLMPIPE_HANG="RANK:STEP" makes that rank hang inside micro-batch STEP (a GPU hang: the process
// and its heartbeats stay alive, the pipeline stops).
void StageRunner::maybe_inject_fault(int64_t step) const {
  static const int slow_ms = std::getenv("GLMPIPE_SLOW_STEP_MS") ? std::atoi(std::getenv("GLMPIPE_SLOW_STEP_MS")) : 0;
  if (slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
  static const char* hang = std::getenv("GLMPIPE_HANG");
  int hang_rank = -1;
  long long hang_step = -1;
  if (hang && std::sscanf(hang, "%d:%lld", &hang_rank, &hang_step) == 2 && hang_rank == ctx_.rank() && hang_step == step)
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));  // until the job is torn down
  static const char* spec = std::getenv("GLMPIPE_FAULT");
  if (!spec) return;
  int rank = -1;
  long long at_step = -1;
  if (std::sscanf(spec, "%d:%lld", &rank, &at_step) == 2 && rank == ctx_.rank() && at_step == step)
    GLMPIPE_FAIL() << "injected fault (GLMPIPE_FAULT=" << spec << ") at micro-batch " << step;
}

std::string StageStats::summary(const RankContext& ctx) const {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(3);
  s << "stage " << ctx.stage() << "/" << ctx.num_stages() << ": compute " << compute_s << " s, send " << send_s
    << " s, recv " << recv_s << " s, idle " << idle_s << " s, wall " << wall_s << " s, " << micro_batches
    << " micro-batches, " << rows << " rows";
  if (wall_s > 0) s << ", busy " << 100.0 * compute_s / wall_s << "%";
  return s.str();
}

StageRunner::StageRunner(const RankContext& ctx, Shard& shard, Transport* transport, const RunnerOptions& opts,
                         TokenCallback on_token)
    : StageRunner(ctx, shard, StageEdges::uniform(ctx, transport), opts, std::move(on_token)) {}

StageRunner::StageRunner(const RankContext& ctx, Shard& shard, StageEdges edges, const RunnerOptions& opts,
                         TokenCallback on_token)
    : ctx_(ctx), shard_(shard), edges_(std::move(edges)), opts_(opts), cache_(shard.make_cache(opts.slots, opts.max_seq)) {
  GLMPIPE_CHECK(ctx.num_stages() == 1 || edges_.host()) << "a pipeline of " << ctx.num_stages() << " stages needs a transport";
  GLMPIPE_CHECK(ctx.is_first_stage() == shard.spec().has_embedding && ctx.is_last_stage() == shard.spec().has_head)
      << "rank " << ctx.rank() << ": the first stage must hold the embedding and the last the head";
  if (ctx.is_first_stage())
    scheduler_ = std::make_unique<Scheduler>(shard.config(), opts.slots, opts.max_seq, opts.micro_batches,
                                             std::move(on_token), opts.prefill_chunk);
}

Scheduler& StageRunner::scheduler() {
  GLMPIPE_CHECK(scheduler_) << "rank " << ctx_.rank() << " is not the first stage: it has no scheduler";
  return *scheduler_;
}

void StageRunner::run() {
  auto t0 = Clock::now();
  if (ctx_.is_first_stage())
    run_first();
  else
    run_downstream();
  activity(Activity::kFinishing, "finishing (waiting for the last sends)");
  reap_sends(true);
  stats_.wall_s = seconds_since(t0);
}

at::Tensor StageRunner::compute(int64_t step, const std::vector<SeqMeta>& meta, const at::Tensor& ids, at::Tensor hidden) {
  auto t0 = Clock::now();
  activity(Activity::kComputing, "computing", -1, step);
  maybe_inject_fault(step);
  BatchLayout layout;
  for (const auto& m : meta)
    if (m.chunk.len > 0) layout.push_back(m.chunk);
  if (ctx_.is_first_stage()) hidden = shard_.embed(ids);
  if (!layout.empty()) hidden = shard_.forward_blocks(hidden, layout, cache_);
  stats_.rows += total_tokens(layout);
  stats_.micro_batches += 1;
  at::Tensor reply;
  if (ctx_.is_last_stage()) {
    // Rows for the head: every row of all-logits sequences, the last row of the others.
    std::vector<int64_t> all_rows, last_rows;
    int64_t row = 0;
    for (const auto& m : meta) {
      if (m.chunk.len == 0) continue;
      if (m.flags & kFlagAllLogits) {
        for (int64_t r = 0; r < m.chunk.len; ++r) all_rows.push_back(row + r);
      } else if (!(m.flags & kFlagPrefillPart)) {
        last_rows.push_back(row + m.chunk.len - 1);
      }
      row += m.chunk.len;
    }
    // Row indices live where `hidden` does (a cuda stage); logits come to the host (fp32) only for
    // sampling and the logits callback (no copy on a cpu stage).
    const auto rows_of = [&](const std::vector<int64_t>& r) { return at::tensor(r, at::kLong).to(hidden.device()); };
    const auto to_host = [](const at::Tensor& t) { return t.to(at::kCPU, at::kFloat); };
    at::Tensor last_logits;
    if (!last_rows.empty()) last_logits = to_host(shard_.head(hidden.index_select(0, rows_of(last_rows))));
    if (!all_rows.empty()) {
      auto logits = to_host(shard_.head(hidden.index_select(0, rows_of(all_rows))));
      int64_t off = 0;
      for (const auto& m : meta)
        if ((m.flags & kFlagAllLogits) && m.chunk.len > 0) {
          if (on_logits_) on_logits_(m.seq_id, logits.narrow(0, off, m.chunk.len));
          off += m.chunk.len;
        }
    }
    reply = selector_.select(meta, ids, last_logits);
    stats_.compute_s += seconds_since(t0);
    return reply;
  }
  stats_.compute_s += seconds_since(t0);
  send_on(step, pack_meta(meta), ids, hidden);
  return reply;
}

void StageRunner::send_on(int64_t step, const at::Tensor& meta, const at::Tensor& ids, const at::Tensor& hidden) {
  auto t0 = Clock::now();
  const int next = ctx_.next_rank();
  sends_.push_back(edges_.host()->isend(next, Tag::kControl, step, step, meta));
  sends_.push_back(edges_.host()->isend(next, Tag::kControl, step, step, ids));
  sends_.push_back(edges_.next().data->isend(next, Tag::kActivations, step, step, hidden.contiguous()));
  reap_sends(false);
  stats_.send_s += seconds_since(t0);
}

void StageRunner::send_params(int64_t step, const std::vector<SeqMeta>& meta) {
  const int last = ctx_.num_stages() - 1;
  for (const auto& m : meta)
    if (needs_params(m)) sends_.push_back(edges_.feedback().data->isend(last, Tag::kParams, step, m.seq_id, pack_params(m.params)));
}

void StageRunner::recv_params(std::vector<SeqMeta>& meta) {
  for (auto& m : meta) {
    if (!needs_params(m)) continue;
    Received r = edges_.feedback().data->recv(0, Tag::kParams);
    GLMPIPE_CHECK(r.header.seq_id == m.seq_id)
        << "rank " << ctx_.rank() << ": sampling parameters for sequence " << r.header.seq_id << " arrived where "
        << m.seq_id << " was expected";
    m.params = unpack_params(r.tensor);
  }
}

void StageRunner::reap_sends(bool all) {
  for (auto it = sends_.begin(); it != sends_.end();) {
    if (all) (*it)->wait();
    if (all || (*it)->test())
      it = sends_.erase(it);
    else
      ++it;
  }
}

void StageRunner::wait_reply(PendingRecv& rx, Clock::time_point since) {
  const int last = ctx_.num_stages() - 1;
  activity(Activity::kWaitingTokens, "waiting for the kTokens reply", last);
  const auto deadline = since + opts_.liveness_timeout;
  while (!rx.test()) {
    const auto now = Clock::now();
    if (now >= deadline) {
      const std::string silent = liveness_ ? liveness_->silent_peers(2 * liveness_->interval()) : "";
      if (liveness_) note_silent_rank(liveness_->first_silent_peer(2 * liveness_->interval()));  // for the launcher
      GLMPIPE_FAIL() << "rank " << ctx_.rank() << " (stage " << ctx_.stage() << "): no kTokens reply from rank " << last
                     << " (stage " << last << ") for " << std::chrono::duration<double>(now - since).count() << " s with "
                     << scheduler_->in_flight() << " micro-batch(es) in flight (bound "
                     << std::chrono::duration<double>(opts_.liveness_timeout).count()
                     << " s: mpi.liveness_timeout_s / --liveness-timeout); "
                     << (!silent.empty() ? silent
                         : liveness_ ? "every rank still answers heartbeats (a stage is stuck in compute, or one step "
                                       "takes longer than the bound); they last reported: " + liveness_->peer_report()
                                     : std::string("no heartbeats to tell which stage is stuck"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void StageRunner::run_first() {
  Scheduler& sched = *scheduler_;
  std::unique_ptr<PendingRecv> token_rx;
  const int last = ctx_.num_stages() - 1;
  if (ctx_.num_stages() > 1) token_rx = edges_.feedback().data->irecv(last, Tag::kTokens);
  int64_t step = 0;
  std::vector<SeqMeta> meta;
  std::vector<int64_t> ids;
  auto wait_since = Clock::now();  // the last reply, or when the pipeline became busy
  while (true) {
    bool progress = false;
    // Feedback first: it makes sequences ready again.
    while (token_rx && token_rx->test()) {
      auto t0 = Clock::now();
      Received r = token_rx->wait();
      stats_.recv_s += seconds_since(t0);
      token_rx = edges_.feedback().data->irecv(last, Tag::kTokens);
      sched.on_tokens(r.tensor);
      wait_since = Clock::now();
      last_reply_ = wait_since;
      progress = true;
    }
    const int64_t was_in_flight = sched.in_flight();
    if (sched.next_micro_batch(meta, ids)) {
      if (was_in_flight == 0) wait_since = Clock::now();
      if (ctx_.num_stages() > 1) send_params(step, meta);
      auto reply = compute(step++, meta, at::tensor(ids, at::kLong), at::Tensor());
      if (reply.defined()) {  // one stage: the reply is local
        sched.on_tokens(reply);
        last_reply_ = Clock::now();
      }
      continue;
    }
    if (sched.shutdown_ready()) break;
    if (progress) continue;
    auto t0 = Clock::now();
    if (sched.in_flight() > 0 && token_rx) {
      wait_reply(*token_rx, wait_since);
    } else {
      activity(Activity::kIdle, "idle, waiting for requests");
      sched.wait_for_work(std::chrono::milliseconds(5));
    }
    stats_.idle_s += seconds_since(t0);
  }
  if (ctx_.num_stages() > 1) {
    // Tell the downstream stages to stop: a one-row meta with the shutdown step.
    auto stop = at::zeros({1, kMetaFields}, at::kLong);
    sends_.push_back(edges_.host()->isend(ctx_.next_rank(), Tag::kControl, kShutdownStep, kShutdownStep, stop));
    token_rx.reset();
  }
}

void StageRunner::run_downstream() {
  const int prev = ctx_.prev_rank();
  const int64_t hidden_size = shard_.config().hidden_size;
  auto meta_rx = edges_.host()->irecv(prev, Tag::kControl);
  while (true) {
    auto t_idle = Clock::now();
    activity(Activity::kIdle, "idle, waiting for the next micro-batch", prev);
    Received m = wait_idle(*meta_rx);
    stats_.idle_s += seconds_since(t_idle);
    if (m.header.step == kShutdownStep) {
      if (!ctx_.is_last_stage())
        sends_.push_back(edges_.host()->isend(ctx_.next_rank(), Tag::kControl, kShutdownStep, kShutdownStep, m.tensor));
      break;
    }
    auto t0 = Clock::now();
    GLMPIPE_CHECK(m.tensor.dim() == 2 && m.tensor.size(1) == kMetaFields)
        << "rank " << ctx_.rank() << ": malformed micro-batch meta from rank " << prev;
    auto meta = unpack_meta(m.tensor);
    activity(Activity::kWaitingInput, "receiving the ids and activations", prev, m.header.step);
    if (ctx_.is_last_stage()) recv_params(meta);
    Expectation same_step;
    same_step.step = m.header.step;
    Received ids = edges_.host()->recv(prev, Tag::kControl, same_step);
    meta_rx = edges_.host()->irecv(prev, Tag::kControl);  // pre-post the next micro-batch's meta
    Expectation want = same_step;
    want.shape = {ids.tensor.size(0), hidden_size};
    want.ndim = 2;
    Received hidden = edges_.prev().data->recv(prev, Tag::kActivations, want);
    stats_.recv_s += seconds_since(t0);
    auto reply = compute(m.header.step, meta, ids.tensor, hidden.tensor);
    if (reply.defined()) {
      auto t1 = Clock::now();
      sends_.push_back(edges_.feedback().data->isend(0, Tag::kTokens, m.header.step, m.header.step, reply));
      reap_sends(false);
      stats_.send_s += seconds_since(t1);
    }
  }
}

}  // namespace glmpipe
