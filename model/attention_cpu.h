// One-token (decode) attention read straight from a bf16 KV cache on CPU.
//
// The generic path widens the whole cache of a sequence to fp32 for every layer and token
// (`kc.narrow(1, 0, P).to(kFloat)`: at 8k context 2 × 32 × 8192 × 128 values, ~200 MB written and
// read again per layer-token) before two small matmuls. Here each head streams its P cached keys
// once for the scores and its P values once for the weighted sum, widening 16 bf16 values per
// vector op in registers; fp32 accumulation and softmax, so the result equals the widened path up to
// summation order.
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

// q: [n, d] fp32 (rotated queries of one token); k_cache, v_cache: [n, max_seq, d] bf16, contiguous
// (one slot of the KV cache), of which positions [0, total) are used; every position is visible
// (a decode token sees its whole past). Returns the context [1, n·d] fp32: softmax(scale · q·Kᵀ)·V.
at::Tensor decode_attention_bf16(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                 int64_t total, double scale);

// True when decode_attention_bf16 applies: CPU, bf16 caches, fp32 q, contiguous slot.
bool decode_attention_bf16_applies(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache);

}  // namespace glmpipe
