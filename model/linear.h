// Linear layers with the kernel chosen by shape and storage, y = x·Wᵀ + b.
//
// Storage of W ([out, in] in PyTorch layout):
//   - float: fp32 or bf16 (CPU), fp16/bf16 (CUDA)
//   - int8:  int8 [out, in]   + per-row scale [out] (ChatGLM published layout, spec §3)
//   - int4:  int8 [out, in/2] + per-row scale [out]; high nibble = even column, low = odd column
// Activations stay floating point (weight-only quantization).
//
// Why a dispatcher: batch-1 decode is memory-bandwidth bound, and libtorch's `linear` with a
// single row goes through sgemm at ~5 GB/s per thread while `addmv` (sgemv) reaches ~25 GB/s.
#pragma once

#include <ATen/ATen.h>

namespace glmpipe {

struct LinearWeight {
  at::Tensor weight;  // [out, in] float, or int8 [out, in] / [out, in/2] when bits = 8 / 4
  at::Tensor scale;   // [out] per-row scale (quantized only), same dtype as activations
  at::Tensor bias;    // [out] or undefined
  int bits = 0;       // 0 = float weight, 8 or 4 = quantized
  int64_t in_features = 0;
  int64_t out_features = 0;

  bool quantized() const { return bits != 0; }
  int64_t weight_bytes() const;  // resident bytes of weight + scale + bias
};

// x: [tokens, in] (contiguous, activation dtype) → [tokens, out]
at::Tensor linear_forward(const at::Tensor& x, const LinearWeight& w);

// True when wide (prefill) calls compute in bf16 through oneDNN (at::linear on bf16 tensors): CPUs
// with AMX-BF16 or AVX512-BF16, where libtorch 1.13's oneDNN 2.6 runs brgemm on AMX tiles /
// vdpbf16ps. 16-bit weights are used as stored, int8/int4 are dequantized into a bf16 buffer, x is
// rounded to bf16 (2^-9 relative, below the weight-quantization error), output is fp32-accumulated.
// Elsewhere (AVX2: oneDNN bf16 runs at ~1.5 GB/s) weights are widened to fp32 for sgemm.
// GLMPIPE_BF16_GEMM=0 turns it off.
bool bf16_gemm_fast();

// A flat buffer of at least `numel` elements of `dtype` (fp32 or bf16), reused across calls of this
// thread (grows, never shrinks): where wide (prefill) calls widen/dequantize a weight for the GEMM.
at::Tensor& weight_scratch(at::ScalarType dtype, int64_t numel);

}  // namespace glmpipe
