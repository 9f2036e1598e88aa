#include "stage/scheduler.h"

#include <algorithm>

#include "common/error.h"
#include "model/family.h"

namespace glmpipe {

Scheduler::Scheduler(const ModelConfig& cfg, int64_t slots, int64_t max_seq, int micro_batches, TokenCallback on_token,
                     int64_t prefill_chunk)
    : cfg_(cfg),
      max_seq_(max_seq),
      prefill_chunk_(cfg.family == Family::kChatGLM ? 0 : std::max<int64_t>(0, prefill_chunk)),
      micro_batches_(std::max(1, micro_batches)),
      on_token_(std::move(on_token)) {
  for (int64_t s = slots - 1; s >= 0; --s) free_slots_.push_back(s);
}

int64_t Scheduler::take_len(const Sequence& s) const {
  const auto n = static_cast<int64_t>(s.pending.size());
  // Forward mode reports every row's logits in one piece per step: not chunked.
  if (prefill_chunk_ <= 0 || s.req.all_logits) return n;
  return std::min(n, prefill_chunk_);
}

std::array<int64_t, kMaxStopIds> Scheduler::stop_ids_of(const Request& r) const {
  std::array<int64_t, kMaxStopIds> out = {-1, -1, -1, -1};
  // No stop ids in the request: every eos id of config.json (GLM-4 lists 3), else eos_token_id.
  const std::vector<int64_t> fallback =
      cfg_.eos_token_ids.empty() ? std::vector<int64_t>{cfg_.eos_token_id} : cfg_.eos_token_ids;
  const std::vector<int64_t>& ids = r.stop_ids.empty() ? fallback : r.stop_ids;
  for (size_t k = 0; k < ids.size() && k < out.size(); ++k) out[k] = ids[k];
  return out;
}

int64_t Scheduler::submit(Request r) {
  GLMPIPE_CHECK(r.stop_ids.size() <= size_t(kMaxStopIds))
      << "request " << r.id << ": " << r.stop_ids.size() << " stop ids, at most " << kMaxStopIds;
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t id = next_seq_id_++;
  queue_.emplace_back(id, std::move(r));
  cv_.notify_all();
  return id;
}

void Scheduler::cancel(int64_t seq_id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(seq_id);
  cv_.notify_all();
}

void Scheduler::request_shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  cv_.notify_all();
}

int64_t Scheduler::queued() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

void Scheduler::wait_for_work(std::chrono::microseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || !cancels_.empty() || shutdown_; });
}

bool Scheduler::shutdown_ready() {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_ && queue_.empty() && seqs_.empty() && in_flight_ == 0;
}

void Scheduler::finish(int64_t seq_id, const std::string& reason, int64_t token, const std::string& error,
                       const TokenEvent* logprobs) {
  auto it = seqs_.find(seq_id);
  TokenEvent ev{it != seqs_.end() ? it->second.req.id : "", seq_id, token, true, reason, error};
  if (logprobs) {
    ev.has_logprob = logprobs->has_logprob;
    ev.logprob = logprobs->logprob;
    ev.top_logprobs = logprobs->top_logprobs;
  }
  if (it != seqs_.end()) {
    if (it->second.slot >= 0) free_slots_.push_back(it->second.slot);
    seqs_.erase(it);
  }
  if (on_token_) on_token_(ev);
}

// Called with mu_ held: moves queued requests into free slots, rejecting those that cannot fit.
void Scheduler::admit_locked() {
  while (!queue_.empty() && !free_slots_.empty()) {
    auto [id, req] = std::move(queue_.front());
    queue_.pop_front();
    const int64_t need = static_cast<int64_t>(req.input_ids.size() + req.forced.size()) + (req.all_logits ? 0 : 1);
    std::string err;
    if (req.input_ids.empty()) err = "empty prompt";
    for (int64_t t : req.input_ids)
      if (t < 0 || t >= cfg_.vocab_size) err = "token id " + std::to_string(t) + " outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")";
    if (err.empty() && need > max_seq_)
      err = "prompt of " + std::to_string(req.input_ids.size()) + " tokens does not fit the KV cache of " +
            std::to_string(max_seq_) + " tokens per sequence";
    if (!err.empty()) {
      if (on_token_) on_token_(TokenEvent{req.id, id, -1, true, "error", err});
      continue;
    }
    Sequence s;
    s.req = std::move(req);
    s.slot = free_slots_.back();
    free_slots_.pop_back();
    const PromptLayout layout = prompt_layout(cfg_, s.req.input_ids);  // the family's positions
    s.ctx_len = layout.ctx_len;
    s.mask_pos = layout.mask_pos;
    s.pending = s.req.input_ids;
    seqs_.emplace(id, std::move(s));
  }
}

bool Scheduler::next_micro_batch(std::vector<SeqMeta>& meta, std::vector<int64_t>& ids) {
  meta.clear();
  ids.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int64_t c : cancels_) {
      auto it = seqs_.find(c);
      if (it != seqs_.end()) it->second.cancelled = true;
      for (auto q = queue_.begin(); q != queue_.end(); ++q)
        if (q->first == c) {
          if (on_token_) on_token_(TokenEvent{q->second.id, c, -1, true, "cancelled", ""});
          queue_.erase(q);
          break;
        }
    }
    cancels_.clear();
    admit_locked();
  }
  if (in_flight_ >= micro_batches_) return false;
  // Cancelled sequences that are not in flight: release their slot, tell the last stage.
  std::vector<int64_t> released;
  for (auto& [id, s] : seqs_)
    if (s.cancelled && !s.in_flight) released.push_back(id);
  for (int64_t id : released) {
    SeqMeta m;
    m.seq_id = id;
    m.chunk = SeqChunk{seqs_[id].slot, 0, 0, 0, 0};
    m.flags = kFlagRelease;
    meta.push_back(m);
    finish(id, "cancelled");
  }
  const int64_t cap = std::max<int64_t>(1, (active() + released.size() + micro_batches_ - 1) / micro_batches_);
  int64_t taken = 0;
  for (auto& [id, s] : seqs_) {
    if (taken >= cap) break;
    if (s.in_flight || s.cancelled || s.pending.empty()) continue;
    const int64_t len = take_len(s);
    const bool part = len < static_cast<int64_t>(s.pending.size());
    SeqMeta m;
    m.seq_id = id;
    m.chunk = SeqChunk{s.slot, s.past, len, s.ctx_len, s.mask_pos};
    m.flags = (s.past == 0 ? kFlagNewSequence : 0) | (s.req.all_logits ? kFlagAllLogits : 0) |
              (part ? kFlagPrefillPart : 0);
    m.params = s.req.params;
    m.params.max_length = std::min(s.req.params.max_length, max_seq_);
    m.stop_ids = stop_ids_of(s.req);
    meta.push_back(m);
    ids.insert(ids.end(), s.pending.begin(), s.pending.begin() + len);
    s.past += len;
    s.pending.erase(s.pending.begin(), s.pending.begin() + len);
    // A prompt chunk that is not the last leaves the sequence ready: the next chunk may follow in
    // the next micro-batch (stages keep micro-batch order); the last one waits for the token.
    s.in_flight = !part;
    ++taken;
  }
  if (meta.empty()) return false;
  ++in_flight_;  // every micro-batch sent gets exactly one kTokens reply
  return true;
}

void Scheduler::on_tokens(const at::Tensor& tokens) {
  --in_flight_;
  auto a = tokens.accessor<int64_t, 2>();
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    const int64_t id = a[i][kTokSeqId], tok = a[i][kTokToken];
    const bool done = a[i][kTokFinished] != 0;
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;  // already finished (cancelled while in flight)
    if (tok < 0 && !done && !it->second.req.all_logits) continue;  // a prompt chunk's acknowledgement
    Sequence& s = it->second;
    s.in_flight = false;
    if (s.cancelled) continue;  // released on the next micro-batch
    if (s.req.all_logits) {
      if (s.forced_next < s.req.forced.size())
        s.pending = {s.req.forced[s.forced_next++]};
      else
        finish(id, "length");
      continue;
    }
    TokenEvent lp;
    if (a[i][kTokHasLogprob]) {
      lp.has_logprob = true;
      lp.logprob = double_of(a[i][kTokLogprob]);
      for (int64_t k = 0; k < a[i][kTokNumTop] && k < kMaxTopLogprobs; ++k)
        lp.top_logprobs.emplace_back(a[i][kTokTop + 2 * k], double_of(a[i][kTokTop + 2 * k + 1]));
    }
    if (done) {
      SeqMeta stops;
      stops.stop_ids = stop_ids_of(s.req);
      finish(id, stops.is_stop(tok) ? "stop" : "length", tok, "", &lp);
    } else {
      lp.request_id = s.req.id;
      lp.seq_id = id;
      lp.token = tok;
      if (on_token_) on_token_(lp);
      s.pending = {tok};
    }
  }
}

}  // namespace glmpipe
