// TokenSelector: the last stage's per-sequence sampling state (sampler RNG, token history for the
// repetition penalty, generated count) and the stop rule: <eop>, max_new_tokens, or max_length
// (prompt + generated, capped by the KV budget). Sampling parameters come with each new
// sequence's meta row (kFlagNewSequence: SeqMeta::params).
#pragma once

#include <ATen/ATen.h>

#include <unordered_map>
#include <vector>

#include "stage/sampler.h"
#include "stage/step_message.h"

namespace glmpipe {

class TokenSelector {
 public:
  // meta: the micro-batch's rows; ids: [T] the input ids; last_logits: [nsampled, vocab] fp32, one
  // row per sequence without kFlagAllLogits and with len > 0, in meta order.
  // Returns int64 [nseq, kTokenFields].
  at::Tensor select(const std::vector<SeqMeta>& meta, const at::Tensor& ids, const at::Tensor& last_logits);
  size_t live_sequences() const { return states_.size(); }

 private:
  struct State {
    Sampler sampler;
    std::vector<int64_t> history;
    int64_t generated = 0;
  };
  std::unordered_map<int64_t, State> states_;
};

}  // namespace glmpipe
