// The messages of the stage loop.
//
// Each hop of micro-batch k carries three messages, in this order, matched by MPI's FIFO rule:
//   Tag::kControl  meta  int64 [nseq, kMetaFields]   one row per sequence (fields below)
//   Tag::kControl  ids   int64 [T]                   the input token ids of the T rows
//   Tag::kActivations hidden [T, hidden]             (absent on the first stage's input)
// Sampling parameters are not in the meta (middle stages have no use for them): the first stage
// sends them once per new sequence straight to the last stage, before the micro-batch that starts
// the sequence:
//   Tag::kParams   int64 [kParamFields + 2 * n_bias] pack_params() (first → last stage)
// The last stage takes one kParams message for every kFlagNewSequence row (not kFlagAllLogits),
// in micro-batch order, which is the order they were sent in.
// The feedback edge, last stage → first stage:
//   Tag::kTokens   int64 [nseq, kTokenFields]        seq_id, sampled token (-1: none), finished,
//                                                    logprob and top logprobs (when asked)
// A meta with step == kShutdownStep and zero rows tells a stage to forward it and exit.
// Chunked prefill: a long prompt of a causal family goes out as several micro-batches of at most
// RunnerOptions::prefill_chunk rows (kFlagPrefillPart on all but the last); every stage handles
// them in order, so chunk k is in each stage's KV cache before chunk k + 1 attends to it.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/sampling_params.h"
#include "model/batch.h"

namespace glmpipe {

constexpr int64_t kShutdownStep = -1;

enum MetaField : int64_t {
  kSeqId = 0, kSlot, kPast, kLen, kCtxLen, kMaskPos, kFlags,
  kStopId0, kStopId1, kStopId2, kStopId3,  // generation stops on any of these (-1: unused)
  kMetaFields
};
constexpr int kMaxStopIds = 4;  // GLM-4 needs 3 (chatglm2-family.md §2.2)
enum MetaFlags : int64_t {
  kFlagNewSequence = 1,  // prefill: the last stage creates the sequence's sampler state
  kFlagAllLogits = 2,    // forward mode: report logits of every row, do not sample
  kFlagRelease = 4,      // len 0: the sequence was cancelled; drop its state
  kFlagPrefillPart = 8,  // a prompt chunk that is not the last: fill the KV cache, do not sample
                         // (the reply row says token -1, not finished)
};
// kTokTop.. holds kMaxTopLogprobs (id, bits of logprob) pairs, kTokNumTop of them used.
enum TokenField : int64_t {
  kTokSeqId = 0, kTokToken, kTokFinished, kTokHasLogprob, kTokLogprob, kTokNumTop, kTokTop,
  kTokenFields = kTokTop + 2 * kMaxTopLogprobs
};
enum ParamField : int64_t {
  kPGreedy = 0, kPTemperature, kPTopK, kPTopP, kPRepPenalty, kPPresence, kPFrequency, kPSeed,
  kPMaxNewTokens, kPMaxLength, kPTopLogprobs, kPNumBias, kParamFields
};

struct SeqMeta {
  int64_t seq_id = 0;
  SeqChunk chunk;
  int64_t flags = 0;
  SamplingParams params;  // first stage: from the request; last stage: from the kParams message
  std::array<int64_t, kMaxStopIds> stop_ids = {-1, -1, -1, -1};

  bool is_stop(int64_t tok) const {
    for (int64_t s : stop_ids)
      if (s >= 0 && s == tok) return true;
    return false;
  }
};

inline int64_t bits_of(double d) { int64_t i; std::memcpy(&i, &d, 8); return i; }
inline double double_of(int64_t i) { double d; std::memcpy(&d, &i, 8); return d; }

inline bool needs_params(const SeqMeta& m) { return (m.flags & kFlagNewSequence) && !(m.flags & kFlagAllLogits); }

inline at::Tensor pack_meta(const std::vector<SeqMeta>& rows) {
  auto t = at::zeros({static_cast<int64_t>(rows.size()), kMetaFields}, at::kLong);
  auto a = t.accessor<int64_t, 2>();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    int64_t v[kMetaFields] = {r.seq_id, r.chunk.slot, r.chunk.past, r.chunk.len, r.chunk.ctx_len,
                              r.chunk.mask_pos, r.flags, r.stop_ids[0], r.stop_ids[1],
                              r.stop_ids[2], r.stop_ids[3]};
    for (int64_t f = 0; f < kMetaFields; ++f) a[i][f] = v[f];
  }
  return t;
}

inline std::vector<SeqMeta> unpack_meta(const at::Tensor& t) {
  std::vector<SeqMeta> rows(t.size(0));
  auto a = t.accessor<int64_t, 2>();
  for (int64_t i = 0; i < t.size(0); ++i) {
    auto& r = rows[i];
    r.seq_id = a[i][kSeqId];
    r.chunk = SeqChunk{a[i][kSlot], a[i][kPast], a[i][kLen], a[i][kCtxLen], a[i][kMaskPos]};
    r.flags = a[i][kFlags];
    for (int k = 0; k < kMaxStopIds; ++k) r.stop_ids[size_t(k)] = a[i][kStopId0 + k];
  }
  return rows;
}

// The sampling parameters the last stage needs (the stop strings stay on the first stage).
inline at::Tensor pack_params(const SamplingParams& p) {
  const int64_t nb = static_cast<int64_t>(p.logit_bias.size());
  auto t = at::zeros({kParamFields + 2 * nb}, at::kLong);
  int64_t* a = t.data_ptr<int64_t>();
  a[kPGreedy] = p.greedy;
  a[kPTemperature] = bits_of(p.temperature);
  a[kPTopK] = p.top_k;
  a[kPTopP] = bits_of(p.top_p);
  a[kPRepPenalty] = bits_of(p.repetition_penalty);
  a[kPPresence] = bits_of(p.presence_penalty);
  a[kPFrequency] = bits_of(p.frequency_penalty);
  a[kPSeed] = static_cast<int64_t>(p.seed);
  a[kPMaxNewTokens] = p.max_new_tokens;
  a[kPMaxLength] = p.max_length;
  a[kPTopLogprobs] = p.top_logprobs;
  a[kPNumBias] = nb;
  for (int64_t i = 0; i < nb; ++i) {
    a[kParamFields + 2 * i] = p.logit_bias[i].first;
    a[kParamFields + 2 * i + 1] = bits_of(p.logit_bias[i].second);
  }
  return t;
}

inline SamplingParams unpack_params(const at::Tensor& t) {
  GLMPIPE_CHECK(t.dim() == 1 && t.scalar_type() == at::kLong && t.size(0) >= kParamFields)
      << "malformed sampling-parameters message";
  const int64_t* a = t.data_ptr<int64_t>();
  const int64_t nb = a[kPNumBias];
  GLMPIPE_CHECK(nb >= 0 && t.size(0) == kParamFields + 2 * nb) << "malformed sampling-parameters message";
  SamplingParams p;
  p.greedy = a[kPGreedy] != 0;
  p.temperature = double_of(a[kPTemperature]);
  p.top_k = a[kPTopK];
  p.top_p = double_of(a[kPTopP]);
  p.repetition_penalty = double_of(a[kPRepPenalty]);
  p.presence_penalty = double_of(a[kPPresence]);
  p.frequency_penalty = double_of(a[kPFrequency]);
  p.seed = static_cast<uint64_t>(a[kPSeed]);
  p.max_new_tokens = a[kPMaxNewTokens];
  p.max_length = a[kPMaxLength];
  p.top_logprobs = a[kPTopLogprobs];
  for (int64_t i = 0; i < nb; ++i)
    p.logit_bias.emplace_back(a[kParamFields + 2 * i], double_of(a[kParamFields + 2 * i + 1]));
  return p;
}

}  // namespace glmpipe
