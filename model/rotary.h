// Rotary position embedding variants of the family.
//   v1 (spec §1.5):  2D — the head's two halves rotate with two position ids, each half with NeoX
//                    rotate_half (rope_half_split).
//   v2+ (chatglm2-family.md §1.3): dims [0, d/2) of each head rotate in adjacent pairs
//                    (x[2i], x[2i+1]) (GPT-J style, rope_adjacent_pairs); dims [d/2, d) pass.
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

// θ_i = 1 / base^(2i / dim), i = 0 .. dim/2 − 1, fp32 as the references build it.  → [dim/2]
at::Tensor rope_inv_freq(int64_t dim, double base);

// u: [S, n, r] fp32; cos/sin: [S, 1, r] → u·cos + rotate_half(u)·sin
at::Tensor rope_half_split(const at::Tensor& u, const at::Tensor& cos, const at::Tensor& sin);

// x: [S, n, d] any float dtype; cos/sin: [S, 1, p] fp32 for the first 2p dims, p ≤ d/2.
// (x0, x1) → (x0·cos − x1·sin, x1·cos + x0·sin) pairwise, computed in fp32, returned in x's dtype.
at::Tensor rope_adjacent_pairs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace glmpipe
