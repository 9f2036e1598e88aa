// Sampling of the next token from one sequence's logits, as the reference chat does (spec §1.9):
// NaN/Inf guard → repetition penalty → greedy argmax, or temperature → top-k → top-p → softmax →
// multinomial with the sequence's own seeded RNG (so batched and single runs draw the same tokens).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <vector>

namespace glmpipe {

struct SamplingParams {
  bool greedy = false;
  double temperature = 0.95;
  int64_t top_k = 50;
  double top_p = 0.7;
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
  int64_t max_new_tokens = 256;
  int64_t max_length = 2048;  // prompt + generated, like HF max_length
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // logits: [vocab] fp32 (modified in place); history: prompt + generated ids so far.
  int64_t sample(at::Tensor logits, const std::vector<int64_t>& history);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Applies the reference's NaN/Inf guard: if any logit is NaN/Inf, zero all and set id 5 to 5e4.
void guard_invalid_logits(at::Tensor& logits);

}  // namespace glmpipe
