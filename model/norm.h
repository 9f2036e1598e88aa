// The normalizations of the family: v1's LayerNorm (weight + bias) and v2+'s RMSNorm (weight only).
// Both accept parameters stored in another dtype than x (bf16 weights, fp32 compute on CPU).
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

struct LayerNorm {
  at::Tensor weight, bias;  // [hidden]
  at::Tensor operator()(const at::Tensor& x, double eps) const;  // x: [T, hidden]
};

// As the reference: statistics in fp32, y = (w · x·rsqrt(mean(x²) + eps)) cast to x's dtype.
struct RMSNorm {
  at::Tensor weight;  // [hidden]
  at::Tensor operator()(const at::Tensor& x, double eps) const;  // x: [T, hidden]
};

}  // namespace glmpipe
