// Sampling of the next token from one sequence's logits, as the reference chat does (spec §1.9),
// plus OpenAI's penalties, logit_bias and logprobs (common/sampling_params.h):
// NaN/Inf guard → repetition penalty → frequency/presence penalties → logit_bias → greedy argmax,
// or temperature → top-k → top-p → softmax → multinomial with the sequence's own seeded RNG (so
// batched and single runs draw the same tokens).
//
// Logprobs are those of the distribution the token was drawn from: greedy → log_softmax of the
// processed logits; sampling → the temperature-scaled softmax renormalised over the top-k/top-p
// set, tokens outside it at kExcludedLogprob (OpenAI's stand-in for -inf, JSON has no -inf).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/sampling_params.h"

namespace glmpipe {

constexpr double kExcludedLogprob = -9999.0;

struct SampleResult {
  int64_t token = -1;
  double logprob = 0;                            // when params.top_logprobs >= 0
  std::vector<std::pair<int64_t, double>> top;   // top_logprobs most likely (id, logprob), best first
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // logits: [vocab] fp32 (modified in place); history: prompt + generated ids so far (the
  // repetition penalty's set). The frequency/presence penalties count only the tokens this sampler
  // returned (the generated ones), as OpenAI defines them.
  SampleResult sample(at::Tensor logits, const std::vector<int64_t>& history);
  const SamplingParams& params() const { return params_; }

 private:
  // The penalties and logit_bias, in place on x[0, v).
  void process(float* x, int64_t v, const std::vector<int64_t>& history) const;
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int64_t, int64_t> counts_;  // generated token → times generated
};

// Applies the reference's NaN/Inf guard: if any logit is NaN/Inf, zero all and set id 5 to 5e4.
void guard_invalid_logits(at::Tensor& logits);

// log_softmax of x[0, v) at `ids` and the `top` most likely (id, logprob), best first (ties: lower id).
double log_softmax_at(const float* x, int64_t v, int64_t id);
std::vector<std::pair<int64_t, double>> top_log_softmax(const float* x, int64_t v, int64_t top);

}  // namespace glmpipe
