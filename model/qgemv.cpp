// Dispatch, activation preparation, threading and the portable (scalar) kernels; the AVX-512 kernels
// are in qgemv_avx512.cpp.
#include "model/qgemv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace glmpipe {
namespace {

std::optional<KernelIsa> g_forced;  // force_kernel_isa

bool avx512_available() {
  static const bool ok = detail::cpu_supports_avx512_kernels();
  return ok;
}

bool avx2_available() {
  static const bool ok = detail::cpu_supports_avx2_kernels();
  return ok;
}

std::optional<KernelIsa> env_isa() {
  const char* e = std::getenv("GLMPIPE_KERNEL_ISA");
  if (!e || !*e) return std::nullopt;
  for (KernelIsa k : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512})
    if (std::strcmp(e, kernel_isa_name(k)) == 0) {
      GLMPIPE_CHECK(kernel_isa_supported(k)) << "GLMPIPE_KERNEL_ISA=" << e << ": this CPU cannot run it";
      return k;
    }
  GLMPIPE_FAIL() << "GLMPIPE_KERNEL_ISA=" << e << ": expected avx512, avx2 or portable";
  return std::nullopt;
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even (NaN kept NaN)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline int int4_hi(int8_t b) { return b >> 4; }                                        // even column
inline int int4_lo(int8_t b) { return static_cast<int8_t>(static_cast<uint8_t>(b) << 4) >> 4; }  // odd column

// Weight element (r, c) as float (unscaled).
inline float weight_at(WeightFormat fmt, const void* w, int64_t in, int64_t r, int64_t c) {
  switch (fmt) {
    case WeightFormat::kF32: return static_cast<const float*>(w)[r * in + c];
    case WeightFormat::kBF16: return bf16_to_float(static_cast<const uint16_t*>(w)[r * in + c]);
    case WeightFormat::kInt8: return static_cast<const int8_t*>(w)[r * in + c];
    case WeightFormat::kInt4: {
      const int8_t b = static_cast<const int8_t*>(w)[r * (in / 2) + c / 2];
      return static_cast<float>(c % 2 == 0 ? int4_hi(b) : int4_lo(b));
    }
  }
  return 0.0f;
}

void gemv_rows_portable(const detail::GemvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < a.tokens; ++t) {
      const float* x = a.x_raw + t * a.in;
      float s = 0.0f;
      if (a.fmt == WeightFormat::kInt4) {
        const int8_t* row = static_cast<const int8_t*>(a.w) + r * (a.in / 2);
        for (int64_t j = 0; j < a.in / 2; ++j)
          s += static_cast<float>(int4_hi(row[j])) * x[2 * j] + static_cast<float>(int4_lo(row[j])) * x[2 * j + 1];
      } else {
        for (int64_t c = 0; c < a.in; ++c) s += weight_at(a.fmt, a.w, a.in, r, c) * x[c];
      }
      if (a.scale) s *= a.scale[r];
      if (a.bias) s += a.bias[r];
      a.y[t * a.out + r] = s;
    }
  }
}

void dequant_rows_portable(WeightFormat fmt, const void* w, const float* scale, int64_t in, void* dst,
                           bool out_bf16, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float s = scale ? scale[r] : 1.0f;
    for (int64_t c = 0; c < in; ++c) {
      const float v = weight_at(fmt, w, in, r, c) * s;
      if (out_bf16) static_cast<uint16_t*>(dst)[r * in + c] = float_to_bf16(v);
      else static_cast<float*>(dst)[r * in + c] = v;
    }
  }
}

at::Tensor float_vector(const at::Tensor& v, int64_t n, const char* what) {
  if (!v.defined()) return v;
  GLMPIPE_CHECK(v.numel() == n) << "gemv: " << what << " has " << v.numel() << " elements, expected " << n;
  return v.to(at::kFloat).contiguous();
}

// One-token int8/int4 calls on AVX2 multiply int16 activations with the widened weights (vpmaddwd,
// int32 sums per block of kXqBlock columns, scaled into fp32): twice the weights per cycle of
// widening each weight to fp32 for an FMA, which left int4 compute-bound at ~21 G weights/s per
// core (about 0.5 of the bandwidth floor on 2 cores). x is rounded to 16 bits per 256-column block:
// |error| ≤ max|x in block| / 65534 per element, finer than bf16 activations (2^-9 relative) for
// all but a block's smallest entries; the weights are still the only thing quantized by design.
// Returns false (float path) when the shape does not fit or x is not finite.
bool quantize_x_i16(const float* x, int64_t in, bool int4, std::vector<int16_t>& xq, std::vector<float>& scale) {
  if (in % 32 != 0) return false;
  const int64_t blocks = (in + detail::kXqBlock - 1) / detail::kXqBlock;
  xq.resize(in);
  scale.resize(blocks);
  const int64_t half = in / 2;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * detail::kXqBlock, c1 = std::min(in, c0 + detail::kXqBlock);
    float m = 0.0f;
    for (int64_t c = c0; c < c1; ++c) m = std::max(m, std::fabs(x[c]));
    if (!std::isfinite(m)) return false;
    const float s = m > 0.0f ? m / 32767.0f : 1.0f;
    scale[b] = s;
    const float inv = 1.0f / s;
    // |x·inv| ≤ 32767 by construction; round half away from zero (vectorizes, unlike lrint).
    auto q = [inv](float v) { return static_cast<int16_t>(v * inv + (v >= 0.0f ? 0.5f : -0.5f)); };
    if (int4)
      for (int64_t c = c0; c < c1; c += 2) {
        xq[c / 2] = q(x[c]);
        xq[half + c / 2] = q(x[c + 1]);
      }
    else
      for (int64_t c = c0; c < c1; ++c) xq[c] = q(x[c]);
  }
  return true;
}

// Rows per parallel task: enough work (~64 KiB of weights) to amortize scheduling.
int64_t row_grain(int64_t row_bytes) { return std::max<int64_t>(1, (64 << 10) / std::max<int64_t>(1, row_bytes)); }

void run_rows(KernelIsa isa, const detail::GemvArgs& a, int64_t grain) {
  at::parallel_for(0, a.out, grain, [&](int64_t r0, int64_t r1) {
    if (isa == KernelIsa::kAvx512) detail::gemv_rows_avx512(a, r0, r1);
    else if (isa == KernelIsa::kAvx2) detail::gemv_rows_avx2(a, r0, r1);
    else gemv_rows_portable(a, r0, r1);
  });
}

int fmt_index(WeightFormat f) { return static_cast<int>(f); }

}  // namespace

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kAvx512: return "avx512";
    case KernelIsa::kAvx2: return "avx2";
    default: return "portable";
  }
}

bool kernel_isa_supported(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kAvx512: return avx512_available();
    case KernelIsa::kAvx2: return avx2_available();
    default: return true;
  }
}

// The widest family the CPU runs, the same in every process (and for every format), so that ranks of
// a pipeline and a single process agree bit for bit: the families differ in accumulation order and
// in how one-token int8 calls round x (int8 on AVX-512, int16 on AVX2). No start-up timing: the
// AVX-512 kernels are the faster ones wherever they run (bench/RESULTS_family_decode.md).
KernelIsa gemv_isa_for(WeightFormat) {
  if (g_forced) return *g_forced;
  static const std::optional<KernelIsa> from_env = env_isa();
  if (from_env) return *from_env;
  return avx512_available() ? KernelIsa::kAvx512 : avx2_available() ? KernelIsa::kAvx2 : KernelIsa::kPortable;
}

void force_kernel_isa(std::optional<KernelIsa> isa) {
  GLMPIPE_CHECK(!isa || kernel_isa_supported(*isa)) << "force_kernel_isa: this CPU cannot run " << kernel_isa_name(*isa);
  g_forced = isa;
}

bool gemv_uses_avx512() { return avx512_available() && !(g_forced && *g_forced != KernelIsa::kAvx512); }
void set_portable_kernels(bool portable_only) {
  force_kernel_isa(portable_only ? std::optional<KernelIsa>(KernelIsa::kPortable) : std::nullopt);
}
int64_t quantized_gemv_max_tokens() { return gemv_uses_avx512() ? kGemvMaxTokens : 64; }

std::string gemv_kernel_isa() {
  std::string s;
  const char* names[] = {"fp32", "bf16", "int8", "int4"};
  for (WeightFormat f : {WeightFormat::kBF16, WeightFormat::kInt8, WeightFormat::kInt4, WeightFormat::kF32})
    s += std::string(s.empty() ? "" : ", ") + names[fmt_index(f)] + " " + kernel_isa_name(gemv_isa_for(f));
  return s + (g_forced ? " (forced)" : std::getenv("GLMPIPE_KERNEL_ISA") ? " (GLMPIPE_KERNEL_ISA)" : " (cpu)");
}

at::Tensor gemv_forward(const at::Tensor& x, const at::Tensor& weight, WeightFormat fmt, const at::Tensor& scale,
                        const at::Tensor& bias) {
  GLMPIPE_CHECK(x.dim() == 2 && weight.dim() == 2) << "gemv: need x [T, in] and weight 2-D, got " << x.sizes()
                                                   << " and " << weight.sizes();
  GLMPIPE_CHECK(x.device().is_cpu() && weight.device().is_cpu()) << "gemv: CPU tensors only";
  const int64_t T = x.size(0), in = x.size(1), out = weight.size(0);
  const int64_t stored_in = fmt == WeightFormat::kInt4 ? in / 2 : in;
  GLMPIPE_CHECK(weight.size(1) == stored_in && (fmt != WeightFormat::kInt4 || in % 2 == 0))
      << "gemv: weight " << weight.sizes() << " does not match x " << x.sizes();
  const at::ScalarType want = fmt == WeightFormat::kF32 ? at::kFloat
                              : fmt == WeightFormat::kBF16 ? at::kBFloat16 : at::kChar;
  GLMPIPE_CHECK(weight.scalar_type() == want || (want == at::kChar && weight.scalar_type() == at::kByte))
      << "gemv: weight dtype " << weight.scalar_type() << " does not match its format";
  GLMPIPE_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16)
      << "gemv: activations must be fp32 or bf16, got " << x.scalar_type();
  auto w = weight.contiguous();
  auto s = float_vector(scale, out, "scale");
  auto b = float_vector(bias, out, "bias");
  auto xf = x.to(at::kFloat).contiguous();  // [T, in]
  auto y = at::empty({T, out}, x.options().dtype(at::kFloat));
  if (T == 0 || out == 0) return y.to(x.scalar_type());

  detail::GemvArgs a;
  a.fmt = fmt;
  a.w = w.data_ptr();
  a.scale = s.defined() ? s.data_ptr<float>() : nullptr;
  a.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  a.x_raw = xf.data_ptr<float>();
  a.tokens = T;
  a.in = in;
  a.out = out;
  a.y = y.data_ptr<float>();
  KernelIsa isa = gemv_isa_for(fmt);
  const bool fast = isa != KernelIsa::kPortable;
  thread_local std::vector<int16_t> xq;  // reused: no allocation per decode call
  thread_local std::vector<float> xq_scale;
  thread_local std::vector<int8_t> x8;
  thread_local std::vector<float> x8_lane_scale;
  const bool one_int = fast && T == 1 && (fmt == WeightFormat::kInt8 || fmt == WeightFormat::kInt4);
  if (one_int) {  // int8 activations where the family has them (qgemv.h GemvArgs::x8)
    x8.resize(in);
    x8_lane_scale.resize(in / 4 + 1);
    detail::prepare_x8(isa, a, x8.data(), x8_lane_scale.data());
  }
  if (one_int && !a.x8 && quantize_x_i16(a.x_raw, in, fmt == WeightFormat::kInt4, xq, xq_scale)) {
    a.xq = xq.data();
    a.xq_scale = xq_scale.data();
  }
  at::Tensor xp;  // prepared fp32 activations for the AVX2/AVX-512 kernels (unused by the int paths)
  if (fast && !a.xq && !a.x8) {
    a.x_split = isa == KernelIsa::kAvx512 && detail::avx512_wants_split_x(fmt, in);
    if (fmt == WeightFormat::kInt4 || a.x_split) {  // even columns | odd columns, each zero padded
      const int64_t half = (in / 2 + 15) / 16 * 16;
      const bool int4 = fmt == WeightFormat::kInt4;
      xp = at::zeros({T, 2 * half}, xf.options());
      xp.slice(1, 0, in / 2).copy_(int4 ? xf.slice(1, 0, in, 2) * (1.0 / 16.0) : xf.slice(1, 0, in, 2));
      xp.slice(1, half, half + in / 2).copy_(int4 ? xf.slice(1, 1, in, 2) * (1.0 / 268435456.0) : xf.slice(1, 1, in, 2));
    } else {
      const int64_t pad = (in + 15) / 16 * 16;
      xp = pad == in ? xf : at::zeros({T, pad}, xf.options());
      if (pad != in) xp.slice(1, 0, in).copy_(xf);
    }
    a.x = xp.data_ptr<float>();
    a.ldx = xp.size(1);
  }
  run_rows(isa, a, row_grain(w.nbytes() / std::max<int64_t>(1, out)));
  return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
}

void dequantize_into(const at::Tensor& qweight, const at::Tensor& scale, int bits, at::Tensor& out) {
  GLMPIPE_CHECK(bits == 4 || bits == 8) << "dequantize_into: bits must be 4 or 8, got " << bits;
  GLMPIPE_CHECK(out.dim() == 2 && out.is_contiguous() && qweight.dim() == 2 &&
                out.size(0) == qweight.size(0) && out.size(1) == qweight.size(1) * (bits == 4 ? 2 : 1))
      << "dequantize_into: out " << out.sizes() << " does not match weight " << qweight.sizes();
  GLMPIPE_CHECK(out.scalar_type() == at::kFloat || out.scalar_type() == at::kBFloat16)
      << "dequantize_into: out must be fp32 or bf16";
  auto w = qweight.contiguous();
  auto s = float_vector(scale, w.size(0), "scale");
  const WeightFormat fmt = bits == 4 ? WeightFormat::kInt4 : WeightFormat::kInt8;
  const bool bf16 = out.scalar_type() == at::kBFloat16;
  const int64_t in = out.size(1);
  const void* wp = w.data_ptr();
  const float* sp = s.defined() ? s.data_ptr<float>() : nullptr;
  void* dst = out.data_ptr();
  const bool fast = gemv_uses_avx512();
  at::parallel_for(0, w.size(0), row_grain(in * 4), [&](int64_t r0, int64_t r1) {
    if (fast) detail::dequant_rows_avx512(fmt, wp, sp, in, dst, bf16, r0, r1);
    else dequant_rows_portable(fmt, wp, sp, in, dst, bf16, r0, r1);
  });
}

}  // namespace glmpipe
