// The per-micro-batch control record that travels with the activations, stage to stage.
//
// Each hop of micro-batch k carries three messages, in this order, matched by MPI's FIFO rule:
//   Tag::kControl  meta  int64 [nseq, kMetaFields]   one row per sequence (fields below)
//   Tag::kControl  ids   int64 [T]                   the input token ids of the T rows
//   Tag::kActivations hidden [T, hidden]             (absent on the first stage's input)
// and the feedback edge, last stage → first stage:
//   Tag::kTokens   int64 [nseq, kTokenFields]        seq_id, sampled token (-1: none), finished
// A meta with step == kShutdownStep and zero rows tells a stage to forward it and exit.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "model/batch.h"
#include "stage/sampler.h"

namespace glmpipe {

constexpr int64_t kShutdownStep = -1;

enum MetaField : int64_t {
  kSeqId = 0, kSlot, kPast, kLen, kCtxLen, kMaskPos, kFlags,
  kGreedy, kTemperature, kTopK, kTopP, kRepPenalty, kSeed, kMaxNewTokens, kMaxLength, kEosId,
  kMetaFields
};
enum MetaFlags : int64_t {
  kFlagNewSequence = 1,  // prefill: the last stage creates the sequence's sampler state
  kFlagAllLogits = 2,    // forward mode: report logits of every row, do not sample
  kFlagRelease = 4,      // len 0: the sequence was cancelled; drop its state
};
enum TokenField : int64_t { kTokSeqId = 0, kTokToken, kTokFinished, kTokenFields };

struct SeqMeta {
  int64_t seq_id = 0;
  SeqChunk chunk;
  int64_t flags = 0;
  SamplingParams params;
  int64_t eos_id = 0;
};

inline int64_t bits_of(double d) { int64_t i; std::memcpy(&i, &d, 8); return i; }
inline double double_of(int64_t i) { double d; std::memcpy(&d, &i, 8); return d; }

inline at::Tensor pack_meta(const std::vector<SeqMeta>& rows) {
  auto t = at::zeros({static_cast<int64_t>(rows.size()), kMetaFields}, at::kLong);
  auto a = t.accessor<int64_t, 2>();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    int64_t v[kMetaFields] = {r.seq_id, r.chunk.slot, r.chunk.past, r.chunk.len, r.chunk.ctx_len,
                              r.chunk.mask_pos, r.flags, r.params.greedy, bits_of(r.params.temperature),
                              r.params.top_k, bits_of(r.params.top_p), bits_of(r.params.repetition_penalty),
                              static_cast<int64_t>(r.params.seed), r.params.max_new_tokens,
                              r.params.max_length, r.eos_id};
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
    r.params.greedy = a[i][kGreedy] != 0;
    r.params.temperature = double_of(a[i][kTemperature]);
    r.params.top_k = a[i][kTopK];
    r.params.top_p = double_of(a[i][kTopP]);
    r.params.repetition_penalty = double_of(a[i][kRepPenalty]);
    r.params.seed = static_cast<uint64_t>(a[i][kSeed]);
    r.params.max_new_tokens = a[i][kMaxNewTokens];
    r.params.max_length = a[i][kMaxLength];
    r.eos_id = a[i][kEosId];
  }
  return rows;
}

}  // namespace glmpipe
