// CUDA kernels for weight-only int8/int4 Linear layers (ChatGLM layout, spec §3). Built only when the
// CUDA toolkit is found (model/quant_kernels.cu); nothing on the CPU path includes CUDA headers.
#pragma once

#include <cstdint>

#ifdef GLMPIPE_HAVE_CUDA
namespace glmpipe::cuda {

// Dequantize: out[r, c] = scale[r] · q[r, c] as fp16 (out_half = true) or fp32.
// qweight: int8 [out, in] (bits 8) or int8 [out, in/2] (bits 4, high nibble = even column);
// scale: fp16 [out] (the checkpoint's dtype). `stream` is a cudaStream_t (nullptr = default stream).
// Returns the cudaError_t of the launch as int (0 = success).
int launch_dequantize(const int8_t* qweight, const void* scale_half, int bits, int64_t out, int64_t in, void* dst,
                      bool out_half, void* stream);

// Fused weight-only mat-vec for decode: y[t, r] = scale[r] · Σ_c q[r, c] · x[t, c] + bias[r], fp16
// x [tokens, in], fp16 y [tokens, out], fp32 accumulate; bias may be null; tokens ≤ 8; in must be
// a multiple of 8 (int8) or 16 (int4, i.e. packed bytes a multiple of 8).
int launch_qgemv(const int8_t* qweight, const void* scale_half, const void* bias_half, int bits, int64_t out,
                 int64_t in, const void* x_half, int64_t tokens, void* y_half, void* stream);

}  // namespace glmpipe::cuda
#endif  // GLMPIPE_HAVE_CUDA
