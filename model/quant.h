// Weight-only int8/int4 quantization in ChatGLM's published layout (spec §3):
// per-row symmetric scale_r = max|W[r,:]| / (2^(bits-1) - 1), q = round(W / scale_r);
// int4 packs columns (2j, 2j+1) into byte j as (q[2j] << 4) | (q[2j+1] & 0xF).
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "model/linear.h"

namespace glmpipe {

// int8 [out, in] with values in -8..7  →  int8 [out, in/2] (in must be even)
at::Tensor pack_int4(const at::Tensor& q);
// int8 [out, in/2]  →  int8 [out, in], sign-extended nibbles
at::Tensor unpack_int4(const at::Tensor& packed);
// float [out, in] → {stored weight (int8 [out,in] or packed [out,in/2]), scale fp16 [out]}
std::pair<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& w, int bits);
// Stored weight + scale → float [out, in] in `dtype`.
at::Tensor dequantize(const at::Tensor& qweight, const at::Tensor& scale, int bits, at::ScalarType dtype);

// y = x·dequant(W)ᵀ + b for quantized LinearWeight; x: [tokens, in] → [tokens, out].
at::Tensor quantized_linear_forward(const at::Tensor& x, const LinearWeight& w);

}  // namespace glmpipe
