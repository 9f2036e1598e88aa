// Scaled dot-product attention of one sequence over its cached keys/values, with grouped KV heads
// (v1: one group per head; ChatGLM2/3, GLM-4: G groups, query head h reads group ⌊h·G/n⌋, i.e.
// n/G consecutive query heads per group, as HF's expand does).
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

// q: [S, n, d]; keys, values: [G, T, d] with T = past + S (same dtype as q), n % G == 0.
// Query row i (absolute position past + i) sees key j when j <= past + i, or j < visible_prefix
// (v1's bidirectional context); other scores are filled with `mask_value` (v1: −10000, v2+: −inf).
// Scores and softmax in fp32. Returns [S, n·d].
at::Tensor grouped_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t past,
                             int64_t visible_prefix, double scale, double mask_value);

// Attention of one sequence's S new queries over its KV-cache slot, after their keys/values were
// written at [past, past + S): q [S, n, d]; k_slot, v_slot: [G, max_seq, d] (cache dtype). A decode
// step (S = 1) on a bf16 cache on CPU reads the cache in place (model/attention_cpu.h); otherwise
// the used part is widened to q's dtype for grouped_attention. Returns [S, n·d].
at::Tensor cached_attention(const at::Tensor& q, const at::Tensor& k_slot, const at::Tensor& v_slot, int64_t past,
                            int64_t visible_prefix, double scale, double mask_value);

}  // namespace glmpipe
