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
// (one pass per row, parallel over rows; fp32/fp16/bf16 input read without a float copy).
std::pair<at::Tensor, at::Tensor> quantize_rows(const at::Tensor& w, int bits);
// The same into given buffers: q int8 [out, in] or [out, in/2], scale fp16 [out], both contiguous
// (quantize-at-load writes row slices of the final weight straight from the mapped file).
void quantize_rows_into(const at::Tensor& w, int bits, const at::Tensor& q, const at::Tensor& scale);
// The same with ATen ops (the original definition; tests check quantize_rows is bit-identical).
std::pair<at::Tensor, at::Tensor> quantize_rows_reference(const at::Tensor& w, int bits);
// Stored weight + scale → float [out, in] in `dtype`.
at::Tensor dequantize(const at::Tensor& qweight, const at::Tensor& scale, int bits, at::ScalarType dtype);

// y = x·dequant(W)ᵀ + b for quantized LinearWeight; x: [tokens, in] → [tokens, out] in x's dtype.
// CPU with fp32/bf16 x: ≤ kGemvMaxTokens rows use the row kernels of model/qgemv.h (weights read
// once, fp32 accumulate); more rows dequantize into a reused per-thread buffer (fp32 or bf16, as x)
// and call at::linear. Other devices/dtypes: reference dequantize-then-matmul.
// w.scale may be fp32 (preferred on CPU) or fp16/bf16; w.bias any float dtype.
at::Tensor quantized_linear_forward(const at::Tensor& x, const LinearWeight& w);

// The dequantize-then-at::linear reference (tests compare the kernels against it).
at::Tensor quantized_linear_reference(const at::Tensor& x, const LinearWeight& w);

// Builds a quantized LinearWeight from a float weight [out, in] (+ optional bias [out]) with
// quantize_rows; the scale is the fp16-rounded scale stored as fp32, the bias is stored as fp32.
LinearWeight make_quantized_linear(const at::Tensor& weight, const at::Tensor& bias, int bits);

}  // namespace glmpipe
