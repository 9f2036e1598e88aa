// Scheduler: the first stage's view of generation — the request queue, the sequences in flight,
// KV-cache slot allocation and the grouping of ready sequences into micro-batches.
//
// Continuous batching: a request is admitted as soon as a slot is free (never truncated: a prompt
// that cannot fit the KV budget is rejected with an error event). A sequence is "ready" when it has
// input to feed (its prompt, or the token sampled last) and is not in flight. Up to
// `micro_batches` micro-batches circulate at once; each takes ceil(active / M) ready sequences, so
// with M ≥ S every stage has work (GPipe utilization M / (M + S − 1)).
//
// Thread safety: submit() and cancel() may be called from any thread (HTTP handlers, the CLI);
// everything else runs on the stage loop's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/model_config.h"
#include "stage/sampler.h"
#include "stage/step_message.h"

namespace glmpipe {

struct Request {
  std::string id;
  std::vector<int64_t> input_ids;  // the prompt, special tokens included
  SamplingParams params;
  // Generation stops on any of these (at most kMaxStopIds); empty: the model's eos_token_ids.
  // Chat, serve, batch and generate --prompt set the chat family's (model/chat/chat_family.h).
  std::vector<int64_t> stop_ids;
  // Forward mode (teacher forcing): after the prompt, feed these ids one at a time instead of
  // sampled tokens; the last stage reports the logits of every row.
  bool all_logits = false;
  std::vector<int64_t> forced;
};

struct TokenEvent {
  std::string request_id;
  int64_t seq_id = 0;
  int64_t token = -1;  // -1 when no token was sampled (forward mode, errors)
  bool finished = false;
  std::string finish_reason;  // "stop" | "length" | "cancelled" | "error" (when finished)
  std::string error;
  // With SamplingParams::top_logprobs >= 0: the sampled token's logprob and the most likely
  // alternatives (id, logprob), best first (see stage/sampler.h for which distribution).
  bool has_logprob = false;
  double logprob = 0;
  std::vector<std::pair<int64_t, double>> top_logprobs;
};
using TokenCallback = std::function<void(const TokenEvent&)>;

class Scheduler {
 public:
  // prefill_chunk: prompt tokens per micro-batch and sequence for causal families (ChatGLM2/3,
  // GLM-4), bounding a long prompt's activations (scores [heads, chunk, past + chunk] instead of
  // [heads, S, S]); 0 = the whole prompt at once. v1 always prefills whole: its context attends
  // bidirectionally (spec §1.6), so a context token needs the keys of later ones.
  Scheduler(const ModelConfig& cfg, int64_t slots, int64_t max_seq, int micro_batches, TokenCallback on_token,
            int64_t prefill_chunk = 0);

  int64_t submit(Request r);  // returns the sequence id
  void cancel(int64_t seq_id);
  void request_shutdown();    // finish what is queued, then stop

  // Stage loop side.
  // Forms the next micro-batch if one may start now; false when nothing is ready or M are in flight.
  bool next_micro_batch(std::vector<SeqMeta>& meta, std::vector<int64_t>& ids);
  // Feedback from the last stage: int64 [nseq, kTokenFields].
  void on_tokens(const at::Tensor& tokens);
  bool shutdown_ready();  // shutdown requested and nothing left
  int64_t in_flight() const { return in_flight_; }
  // Blocks up to `timeout` for a submit/cancel/shutdown when the loop has nothing to do.
  void wait_for_work(std::chrono::microseconds timeout);

  int64_t queued();
  int64_t active() const { return static_cast<int64_t>(seqs_.size()); }

 private:
  // The request's stop ids, or the model's eos_token_ids (config.json) when it names none.
  std::array<int64_t, kMaxStopIds> stop_ids_of(const Request& r) const;
  struct Sequence {
    Request req;
    int64_t slot = -1;
    int64_t past = 0;  // tokens already in the KV cache
    int64_t ctx_len = 0, mask_pos = 0;  // prompt_layout() of the family (model/family.h)
    std::vector<int64_t> pending;  // input ids for the next step
    size_t forced_next = 0;
    bool in_flight = false;
    bool cancelled = false;
  };
  void admit_locked();
  void finish(int64_t seq_id, const std::string& reason, int64_t token = -1, const std::string& error = "",
              const TokenEvent* logprobs = nullptr);

  // Tokens of s.pending the next micro-batch takes (a prompt chunk or everything).
  int64_t take_len(const Sequence& s) const;

  ModelConfig cfg_;
  int64_t max_seq_;
  int64_t prefill_chunk_ = 0;
  int micro_batches_;
  TokenCallback on_token_;
  std::vector<int64_t> free_slots_;
  std::map<int64_t, Sequence> seqs_;  // admitted, by seq id (ordered: oldest first)
  int64_t in_flight_ = 0;             // micro-batches in flight

  std::mutex mu_;  // guards the fields below (shared with submit/cancel)
  std::condition_variable cv_;
  std::deque<std::pair<int64_t, Request>> queue_;
  std::vector<int64_t> cancels_;
  int64_t next_seq_id_ = 0;
  bool shutdown_ = false;
};

}  // namespace glmpipe
