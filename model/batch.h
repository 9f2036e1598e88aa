// A ragged batch step: several sequences, each contributing `len` new tokens at absolute
// positions [past, past + len) of its own KV-cache slot. Rows of the hidden-state tensor are the
// sequences' tokens concatenated in order, so Linear layers run once over all of them while
// attention runs per sequence. This serves prefill, decode, mixed steps of continuous batching and
// micro-batches alike, and needs no padding: each sequence computes exactly what it would alone.
#pragma once

#include <cstdint>
#include <vector>

namespace glmpipe {

struct SeqChunk {
  int64_t slot = 0;      // KV-cache slot owned by this sequence
  int64_t past = 0;      // tokens already in the cache (P)
  int64_t len = 0;       // new tokens this step (S)
  // GLM 2D positions (spec §1.6), fixed at prefill from the prompt:
  int64_t ctx_len = 0;   // index of the first <sop>; columns < ctx_len are visible to every row
  int64_t mask_pos = 0;  // index of the first [gMASK] (or [MASK]); frozen position of generated tokens
};

using BatchLayout = std::vector<SeqChunk>;

inline int64_t total_tokens(const BatchLayout& b) {
  int64_t t = 0;
  for (const auto& s : b) t += s.len;
  return t;
}

// GLM position of absolute index p (spec §1.6, closed form of HF's incremental rule):
// context tokens (p < ctx_len) are at (p, 0); from <sop> on, (mask_pos, p - ctx_len + 1).
inline int64_t glm_position(const SeqChunk& s, int64_t p) { return p < s.ctx_len ? p : s.mask_pos; }
inline int64_t glm_block_position(const SeqChunk& s, int64_t p) { return p < s.ctx_len ? 0 : p - s.ctx_len + 1; }

}  // namespace glmpipe
