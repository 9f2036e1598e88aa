// SamplingParams: the one description of how a sequence is generated, shared by every entry point
// (`serve` requests, `batch` JSONL lines, the YAML `generation:` defaults, `generate`/`chat` flags),
// and its one validator. All of them accept the same field names with the same meaning:
//
//   max_tokens | max_completion_tokens | max_new_tokens   generated tokens (>= 1)
//   max_length            prompt + generated, like HF max_length (>= 1)
//   temperature           >= 0; 0 means greedy (argmax), as over HTTP
//   greedy                true: argmax regardless of temperature
//   top_p (0, 1], top_k (>= 0, 0 or -1 = all)
//   repetition_penalty    HF's multiplicative penalty on every token seen so far, (0, 100]
//   presence_penalty, frequency_penalty   OpenAI's additive penalties on generated tokens, [-2, 2]:
//                         logit[j] -= frequency_penalty * count[j] + presence_penalty * (count[j] > 0)
//   logit_bias            {"token id": bias in [-100, 100]} added to the logits
//   seed                  integer; same seed + same request = same tokens
//   stop                  a string or up to 4 strings; generation ends before the first occurrence
//
// Order on the logits (stage/sampler.cpp): NaN/Inf guard → repetition penalty → frequency/presence
// penalties → logit_bias → greedy argmax, or temperature → top-k → top-p → draw.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace glmpipe {

constexpr int kMaxTopLogprobs = 20;  // OpenAI's bound on top_logprobs
constexpr int kMaxStopStrings = 4;

struct SamplingParams {
  bool greedy = false;
  double temperature = 0.95;
  int64_t top_k = 50;
  double top_p = 0.7;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::vector<std::pair<int64_t, double>> logit_bias;  // (token id, bias), sorted by id
  uint64_t seed = 0;
  int64_t max_new_tokens = 256;  // 0 = only max_length limits the output
  int64_t max_length = 2048;     // prompt + generated, like HF max_length
  // -1: no logprobs; 0..kMaxTopLogprobs: report the sampled token's logprob and this many of the
  // most likely alternatives (last stage → first stage with every token).
  int64_t top_logprobs = -1;
  std::vector<std::string> stop;  // applied where the text is (the first stage), not on the logits

  bool is_greedy() const { return greedy || temperature <= 0; }
};

// A field that is wrong: `field` is its name as the user wrote it ("top_p", "logit_bias").
class SamplingError : public Error {
 public:
  SamplingError(std::string field, const std::string& message)
      : Error(field + ": " + message), field_(std::move(field)), message_(message) {}
  const std::string& field() const { return field_; }
  const std::string& message() const { return message_; }

 private:
  std::string field_;
  std::string message_;
};

// The field names read_sampling_fields() understands.
const std::vector<std::string>& sampling_field_names();

// Reads every sampling field present in the JSON object `j` into `p` (null values are ignored, as
// OpenAI does) and validates them: throws SamplingError naming the first bad field. `vocab_size`
// > 0 also bounds logit_bias ids. Other keys are left alone.
void read_sampling_fields(const nlohmann::json& j, SamplingParams& p, int64_t vocab_size = 0);

// Range checks on a complete SamplingParams (CLI flags end here too); throws SamplingError.
void validate_sampling(const SamplingParams& p, int64_t vocab_size = 0);

}  // namespace glmpipe
