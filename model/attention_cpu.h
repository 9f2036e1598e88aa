// One-token (decode) attention read straight from a bf16 KV cache on CPU.
//
// The generic path widens the whole cache of a sequence to fp32 for every layer and token
// (`kc.narrow(1, 0, P).to(kFloat)`: at 8k context 2 × 32 × 8192 × 128 values, ~200 MB written and
// read again per layer-token for v1) before two small matmuls. Here each KV group streams its P
// cached keys once for the scores of all query heads that read it, and its P values once for their
// weighted sums, widening bf16 in registers; fp32 accumulation and softmax, so the result equals the
// widened path up to summation order.
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

// q: [n, d] fp32 (rotated queries of one token); k_cache, v_cache: [G, max_seq, d] bf16, contiguous
// (one slot of the KV cache; G = n for v1, G KV groups for v2+ with n % G == 0: query head h reads
// group ⌊h·G/n⌋), of which positions [0, total) are used; every position is visible (a decode token
// sees its whole past). Returns the context [1, n·d] fp32: softmax(scale · q·Kᵀ)·V per head.
at::Tensor decode_attention_bf16(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                 int64_t total, double scale);

// True when decode_attention_bf16 applies: CPU, bf16 caches, fp32 q, contiguous slot, n % G == 0.
bool decode_attention_bf16_applies(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache);

}  // namespace glmpipe
