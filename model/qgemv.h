// Row kernels for decode-shaped Linear layers (a few token rows, weight streamed once):
//   y[t, r] = scale[r] · Σ_c W[r, c] · x[t, c] + bias[r]
// with W stored as fp32, bf16, int8 [out, in] or int4 [out, in/2] (ChatGLM layout, spec §3: high
// nibble = even column, low nibble = odd column, signed). Accumulation is fp32 in every kernel.
//
// Three implementations chosen at run time by CPUID: AVX-512 (F/BW/VL/DQ/BF16/VNNI; Zen 4, Sapphire
// Rapids), AVX2+FMA (also what a VM that masks AVX-512 gets), and a portable scalar one. Work is split over output rows with at::parallel_for
// (at::get_num_threads() threads); inside a thread, blocks of rows are kept in cache while all token
// tiles (≤ 4 rows of x each) are applied, so the weight bytes are read from memory once per call.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>

namespace glmpipe {

enum class WeightFormat { kF32, kBF16, kInt8, kInt4 };

// Up to this many token rows, linear_forward uses the row kernels; above it, quantized weights are
// dequantized into a reused buffer and at::linear (OpenBLAS sgemm / oneDNN bf16) does the GEMM.
// Measured crossover on 2-core Zen 4 (bench_linear): see bench/RESULTS_kernels.md.
constexpr int64_t kGemvMaxTokens = 8;
// The limit quantized_linear_forward applies: kGemvMaxTokens with AVX-512; 64 otherwise, because the
// dequantize step of the GEMM path is only vectorized for AVX-512 (measured: 200+ ms for a
// 16384×4096 int4 matrix on an AVX2-only VM, versus ~5-7 ms per kernel call at 1-2 tokens).
int64_t quantized_gemv_max_tokens();

// Kernel families: every call runs the widest family the CPU has, the same in every process, so
// that pipeline ranks and a single process agree bit for bit. GLMPIPE_KERNEL_ISA=avx512|avx2|portable
// forces one family for everything.
enum class KernelIsa { kPortable, kAvx2, kAvx512 };
const char* kernel_isa_name(KernelIsa isa);
bool kernel_isa_supported(KernelIsa isa);  // this CPU can run it
// The family calls of `fmt` use (today the same for every format).
KernelIsa gemv_isa_for(WeightFormat fmt);
// "bf16 avx512, int8 avx512, int4 avx512, fp32 avx512 (cpu)": what runs, for benchmark logs.
std::string gemv_kernel_isa();
// Forces one family for every format (tests compare paths; bench measures each); nullopt = back to
// the widest. Forcing a family the CPU lacks is an error. Not thread-safe.
void force_kernel_isa(std::optional<KernelIsa> isa);
// True when the AVX-512 kernels are usable on this CPU and not disabled by force_kernel_isa.
bool gemv_uses_avx512();
// Shorthand: force_kernel_isa(portable_only ? kPortable : nullopt).
void set_portable_kernels(bool portable_only);

// x: [T, in] fp32 or bf16 (contiguous or not); weight per `fmt`; scale: [out] any float dtype or
// undefined (= 1); bias: [out] any float dtype or undefined. Returns [T, out] in x's dtype.
at::Tensor gemv_forward(const at::Tensor& x, const at::Tensor& weight, WeightFormat fmt,
                        const at::Tensor& scale, const at::Tensor& bias);

// Dequantizes int8 [out, in] / int4 [out, in/2] with per-row scale into `out` ([out, in], fp32 or
// bf16, contiguous, preallocated) with the vectorized kernels, parallel over rows.
void dequantize_into(const at::Tensor& qweight, const at::Tensor& scale, int bits, at::Tensor& out);

namespace detail {

// Everything a row kernel needs; pointers are to contiguous fp32 data prepared by gemv_forward.
struct GemvArgs {
  WeightFormat fmt = WeightFormat::kF32;
  const void* w = nullptr;      // [out, in] (int4: [out, in/2] bytes)
  const float* scale = nullptr; // [out] or null
  const float* bias = nullptr;  // [out] or null
  // [T, ldx], zero padded; int4: [T, ldx] = even cols / 16 then odd cols · 2^-28; bf16 on AVX-512
  // (x_split): even cols then odd cols, ldx/2 floats each (see qgemv_avx512.cpp).
  const float* x = nullptr;
  int64_t ldx = 0;              // row stride of x (floats)
  bool x_split = false;         // bf16 weights on AVX-512 with even `in`: x as even | odd halves
  const float* x_raw = nullptr; // [T, in] unpadded, unscaled (portable kernel)
  // One-token int8/int4 calls on AVX2/AVX-512 (see quantize_x_i16 in qgemv.cpp), else null: x rounded to
  // int16 per block of kXqBlock columns, xq = x / xq_scale[block]; int4: even columns then odd.
  const int16_t* xq = nullptr;    // [in]
  const float* xq_scale = nullptr;  // [ceil(in / kXqBlock)]
  // One-token int8/int4 calls on AVX-512 (VNNI) and int4 calls on AVX2, with in % 64 == 0 (int8) /
  // 128 (int4), else null
  // (quantize_x_i8_avx512): x rounded to int8 per block of kX8Block columns, x8 = x / scale[block];
  // int4: even columns then odd. x8_lane_scale[k] is the scale of the block of x8 bytes 4k..4k+3
  // (int4: of the even half; the odd half's is the same), one per int32 lane of the kernel;
  // x8_corr removes the unsigned offset the kernel gives the weights.
  const int8_t* x8 = nullptr;            // [in]
  const float* x8_lane_scale = nullptr;  // [in / 4] (int8) or [in / 8] (int4)
  float x8_corr = 0.0f;
  int64_t tokens = 0, in = 0, out = 0;
  float* y = nullptr;           // [T, out]
};

// Columns per int16 activation block (one scale each, see GemvArgs::xq).
constexpr int64_t kXqBlock = 256;
// Columns per int8 activation block (one scale each, see GemvArgs::x8), as q8_0 in llama.cpp: an
// outlier column (ChatGLM's hidden states have some ~50× the rest) coarsens only its 31 neighbours.
constexpr int64_t kX8Block = 32;

// Rounds one token x [in] to int8 blocks for the AVX-512 VNNI kernels: x8 [in], lane_scale [in / 4]
// (int8) or [in / 8] (int4), *corr (see GemvArgs::x8). False (use another path) when `in` is not a
// multiple of 64 (int8) / 128 (int4) or x is not finite.
bool quantize_x_i8_avx512(const float* x, int64_t in, bool int4, int8_t* x8, float* lane_scale, float* corr);
// The same on AVX2 (value for value); the AVX2 family uses int8 activations for int4 only.
bool quantize_x_i8_avx2(const float* x, int64_t in, bool int4, int8_t* x8, float* lane_scale, float* corr);
// Fills a.x8 / a.x8_lane_scale / a.x8_corr for a one-token call of family `isa` when that family has
// an int8-activation kernel for a.fmt (AVX-512: int8 and int4, AVX2: int4) and the shape and x allow
// it; false leaves `a` unchanged. x8 [in] and lane_scale [in / 4 + 1] are the caller's buffers.
inline bool prepare_x8(KernelIsa isa, GemvArgs& a, int8_t* x8, float* lane_scale) {
  const bool int4 = a.fmt == WeightFormat::kInt4;
  if (a.tokens != 1 || !(int4 || a.fmt == WeightFormat::kInt8)) return false;
  const bool ok = isa == KernelIsa::kAvx512 ? quantize_x_i8_avx512(a.x_raw, a.in, int4, x8, lane_scale, &a.x8_corr)
                  : isa == KernelIsa::kAvx2 && int4 ? quantize_x_i8_avx2(a.x_raw, a.in, int4, x8, lane_scale, &a.x8_corr)
                                                    : false;
  if (ok) {
    a.x8 = x8;
    a.x8_lane_scale = lane_scale;
  }
  return ok;
}

// Computes y rows [r0, r1) for all tokens.
void gemv_rows_avx512(const GemvArgs& a, int64_t r0, int64_t r1);
// Dequantizes rows [r0, r1) to fp32 (out_bf16 = false) or bf16 (true) at `dst` ([out, in]).
void dequant_rows_avx512(WeightFormat fmt, const void* w, const float* scale, int64_t in, void* dst,
                         bool out_bf16, int64_t r0, int64_t r1);
bool cpu_supports_avx512_kernels();
// AVX-512 bf16 kernels take x split into even | odd columns (GemvArgs::x_split) when `in` is even.
bool avx512_wants_split_x(WeightFormat fmt, int64_t in);
void gemv_rows_avx2(const GemvArgs& a, int64_t r0, int64_t r1);
bool cpu_supports_avx2_kernels();

}  // namespace detail
}  // namespace glmpipe
