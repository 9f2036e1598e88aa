// CUDA int8/int4 weight-only kernels (see quant_kernels.h). Simple and layout-exact rather than tuned:
// dequantize is one thread per packed byte; the fused mat-vec uses one warp per output row, each lane
// reading 8 bytes (16-byte-free path: int2 loads) per step so a warp reads 256 contiguous bytes.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "model/quant_kernels.h"

namespace glmpipe::cuda {
namespace {

__device__ __forceinline__ int nib_hi(int8_t b) { return b >> 4; }
__device__ __forceinline__ int nib_lo(int8_t b) { return static_cast<int8_t>(static_cast<uint8_t>(b) << 4) >> 4; }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void dequant_int8_kernel(const int8_t* __restrict__ q, const __half* __restrict__ scale, int64_t out,
                                    int64_t in, T* __restrict__ dst) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= out * in) return;
  const float s = __half2float(scale[i / in]);
  dst[i] = from_float<T>(s * static_cast<float>(q[i]));
}

template <typename T>
__global__ void dequant_int4_kernel(const int8_t* __restrict__ q, const __half* __restrict__ scale, int64_t out,
                                    int64_t in, T* __restrict__ dst) {
  const int64_t half_in = in / 2;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // packed byte index
  if (i >= out * half_in) return;
  const int64_t r = i / half_in, j = i % half_in;
  const float s = __half2float(scale[r]);
  const int8_t b = q[i];
  dst[r * in + 2 * j] = from_float<T>(s * static_cast<float>(nib_hi(b)));
  dst[r * in + 2 * j + 1] = from_float<T>(s * static_cast<float>(nib_lo(b)));
}

constexpr int kMaxTokens = 8;
constexpr int kWarpsPerBlock = 4;

// One warp per output row; each lane handles 8 packed bytes per step (int4: 16 columns, int8: 8).
template <int BITS>
__global__ void qgemv_kernel(const int8_t* __restrict__ q, const __half* __restrict__ scale,
                             const __half* __restrict__ bias, int64_t out, int64_t in, const __half* __restrict__ x,
                             int tokens, __half* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  if (r >= out) return;
  const int64_t row_bytes = BITS == 4 ? in / 2 : in;
  const int8_t* row = q + r * row_bytes;
  float acc[kMaxTokens];
#pragma unroll
  for (int t = 0; t < kMaxTokens; ++t) acc[t] = 0.f;
  for (int64_t b = int64_t(lane) * 8; b < row_bytes; b += 32 * 8) {
    const int2 packed = *reinterpret_cast<const int2*>(row + b);
    const int8_t* pb = reinterpret_cast<const int8_t*>(&packed);
    float w[BITS == 4 ? 16 : 8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if (BITS == 4) {
        w[2 * k] = static_cast<float>(nib_hi(pb[k]));
        w[2 * k + 1] = static_cast<float>(nib_lo(pb[k]));
      } else {
        w[k] = static_cast<float>(pb[k]);
      }
    }
    const int64_t c0 = BITS == 4 ? 2 * b : b;
#pragma unroll
    for (int t = 0; t < kMaxTokens; ++t) {
      if (t >= tokens) break;
      const __half* xr = x + t * in + c0;
#pragma unroll
      for (int k = 0; k < (BITS == 4 ? 16 : 8); ++k) acc[t] += w[k] * __half2float(xr[k]);
    }
  }
  const float s = __half2float(scale[r]);
  for (int t = 0; t < tokens; ++t) {
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) y[t * out + r] = __float2half_rn(v * s + (bias ? __half2float(bias[r]) : 0.f));
  }
}

}  // namespace

int launch_dequantize(const int8_t* qweight, const void* scale_half, int bits, int64_t out, int64_t in, void* dst,
                      bool out_half, void* stream) {
  if ((bits != 4 && bits != 8) || (bits == 4 && in % 2 != 0)) return static_cast<int>(cudaErrorInvalidValue);
  const auto* s = static_cast<const __half*>(scale_half);
  auto st = static_cast<cudaStream_t>(stream);
  const int64_t n = bits == 4 ? out * in / 2 : out * in;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((n + threads - 1) / threads);
  if (n == 0) return 0;
  if (bits == 8) {
    if (out_half) dequant_int8_kernel<__half><<<blocks, threads, 0, st>>>(qweight, s, out, in, static_cast<__half*>(dst));
    else dequant_int8_kernel<float><<<blocks, threads, 0, st>>>(qweight, s, out, in, static_cast<float*>(dst));
  } else {
    if (out_half) dequant_int4_kernel<__half><<<blocks, threads, 0, st>>>(qweight, s, out, in, static_cast<__half*>(dst));
    else dequant_int4_kernel<float><<<blocks, threads, 0, st>>>(qweight, s, out, in, static_cast<float*>(dst));
  }
  return static_cast<int>(cudaGetLastError());
}

int launch_qgemv(const int8_t* qweight, const void* scale_half, const void* bias_half, int bits, int64_t out,
                 int64_t in, const void* x_half, int64_t tokens, void* y_half, void* stream) {
  if ((bits != 4 && bits != 8) || tokens < 1 || tokens > kMaxTokens || in % (bits == 4 ? 16 : 8) != 0)
    return static_cast<int>(cudaErrorInvalidValue);
  auto st = static_cast<cudaStream_t>(stream);
  const unsigned blocks = static_cast<unsigned>((out + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const auto* s = static_cast<const __half*>(scale_half);
  const auto* b = static_cast<const __half*>(bias_half);
  const auto* x = static_cast<const __half*>(x_half);
  auto* y = static_cast<__half*>(y_half);
  if (out == 0) return 0;
  if (bits == 4) qgemv_kernel<4><<<blocks, 32 * kWarpsPerBlock, 0, st>>>(qweight, s, b, out, in, x, int(tokens), y);
  else qgemv_kernel<8><<<blocks, 32 * kWarpsPerBlock, 0, st>>>(qweight, s, b, out, in, x, int(tokens), y);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace glmpipe::cuda
