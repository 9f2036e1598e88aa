// AVX-512 row kernels (see qgemv.h). Every function here carries a target attribute, so the file
// needs no special compile flags; callers check detail::cpu_supports_avx512_kernels() first.
//
// Per 16 weights: load (1 uop, masked at the row tail), widen to fp32 (int8: vpmovsxbd + vcvtdq2ps;
// bf16: vpmovzxwd + shift; int4: see below), then one FMA per token row. Multiple accumulators hide
// the FMA latency; partial sums are reduced once per (row, token).
//
// int4 decode without a de-interleave: 16 packed bytes sign-extended to int32 lanes v = 16·hi + lo_u.
// (v & ~0xF) = 16·hi exactly and (v << 28) = lo · 2^28 exactly (signed), so converting both to fp32
// and multiplying by x_even/16 and x_odd·2^-28 (prepared once per call) gives hi·x_even + lo·x_odd
// with the powers of two exact.
#include <immintrin.h>

#include <cstring>

#include "model/qgemv.h"

#define GLMPIPE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni")))
#define GLMPIPE_AVX512_INLINE GLMPIPE_AVX512 inline __attribute__((always_inline))

namespace glmpipe::detail {
namespace {

constexpr int64_t kRowBlock = 8;  // rows kept in L1/L2 while all token tiles run over them

GLMPIPE_AVX512_INLINE __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// Loaders: 16 consecutive weights of a row as fp32, `m` masks the row tail (zeros beyond it).
struct LoadF32 {
  static constexpr int64_t kBytes = 4;
  GLMPIPE_AVX512_INLINE static __m512 full(const uint8_t* p) { return _mm512_loadu_ps(p); }
  GLMPIPE_AVX512_INLINE static __m512 masked(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadBF16 {
  static constexpr int64_t kBytes = 2;
  GLMPIPE_AVX512_INLINE static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  GLMPIPE_AVX512_INLINE static __m512 full(const uint8_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  GLMPIPE_AVX512_INLINE static __m512 masked(const uint8_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};
struct LoadInt8 {
  static constexpr int64_t kBytes = 1;
  GLMPIPE_AVX512_INLINE static __m512 widen(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)); }
  GLMPIPE_AVX512_INLINE static __m512 full(const uint8_t* p) { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  GLMPIPE_AVX512_INLINE static __m512 masked(const uint8_t* p, __mmask16 m) { return widen(_mm_maskz_loadu_epi8(m, p)); }
};

GLMPIPE_AVX512_INLINE void finish_row(const GemvArgs& a, int64_t r, int64_t t, __m512 acc) {
  float s = _mm512_reduce_add_ps(acc);
  if (a.scale) s *= a.scale[r];
  if (a.bias) s += a.bias[r];
  a.y[t * a.out + r] = s;
}

// One weight row against NT token rows (t0 .. t0+NT-1), U column blocks of 16 unrolled.
template <class L, int NT>
GLMPIPE_AVX512_INLINE void dot_row(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int U = NT == 1 ? 4 : (NT == 2 ? 2 : 1);
  const int64_t n = a.in;
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + r * n * L::kBytes;
  const float* x = a.x + t0 * a.ldx;
  __m512 acc[NT][U];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 * U <= n; c += 16 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m512 w = L::full(row + (c + 16 * u) * L::kBytes);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t)
        acc[t][u] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + t * a.ldx + c + 16 * u), acc[t][u]);
    }
  }
  for (; c < n; c += 16) {  // x is zero padded to a multiple of 16; the weight load is masked
    const __m512 w = L::masked(row + c * L::kBytes, tail_mask(n - c));
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[t][0] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + t * a.ldx + c), acc[t][0]);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    __m512 s = acc[t][0];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[t][u]);
    finish_row(a, r, t0 + t, s);
  }
}

GLMPIPE_AVX512_INLINE void int4_decode(__m128i bytes, __m512& hi16, __m512& lo28) {
  const __m512i v = _mm512_cvtepi8_epi32(bytes);
  hi16 = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(~0xF)));
  lo28 = _mm512_cvtepi32_ps(_mm512_slli_epi32(v, 28));
}

// int4 row: 16 packed bytes (32 columns) per step; x holds [even/16 | odd·2^-28], ldx/2 floats each.
template <int NT>
GLMPIPE_AVX512_INLINE void dot_row_int4(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int U = NT == 1 ? 4 : (NT == 2 ? 2 : 1);
  const int64_t nb = a.in / 2;  // packed bytes per row
  const int64_t half = a.ldx / 2;
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + r * nb;
  const float* xe = a.x + t0 * a.ldx;
  const float* xo = xe + half;
  __m512 acc_e[NT][U], acc_o[NT][U];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc_e[t][u] = acc_o[t][u] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 * U <= nb; j += 16 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      __m512 hi, lo;
      int4_decode(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 16 * u)), hi, lo);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        acc_e[t][u] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xe + t * a.ldx + j + 16 * u), acc_e[t][u]);
        acc_o[t][u] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xo + t * a.ldx + j + 16 * u), acc_o[t][u]);
      }
    }
  }
  for (; j < nb; j += 16) {
    __m512 hi, lo;
    int4_decode(_mm_maskz_loadu_epi8(tail_mask(nb - j), row + j), hi, lo);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      acc_e[t][0] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xe + t * a.ldx + j), acc_e[t][0]);
      acc_o[t][0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xo + t * a.ldx + j), acc_o[t][0]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    __m512 s = _mm512_add_ps(acc_e[t][0], acc_o[t][0]);
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, _mm512_add_ps(acc_e[t][u], acc_o[t][u]));
    finish_row(a, r, t0 + t, s);
  }
}

template <int NT>
GLMPIPE_AVX512 void dot_row_any(const GemvArgs& a, int64_t r, int64_t t0) {
  switch (a.fmt) {
    case WeightFormat::kF32: dot_row<LoadF32, NT>(a, r, t0); break;
    case WeightFormat::kBF16: dot_row<LoadBF16, NT>(a, r, t0); break;
    case WeightFormat::kInt8: dot_row<LoadInt8, NT>(a, r, t0); break;
    case WeightFormat::kInt4: dot_row_int4<NT>(a, r, t0); break;
  }
}

template <class L>
GLMPIPE_AVX512_INLINE void dequant_row(const uint8_t* row, float s, int64_t n, float* df, uint16_t* db) {
  const __m512 sv = _mm512_set1_ps(s);
  for (int64_t c = 0; c < n; c += 16) {
    const __mmask16 m = tail_mask(n - c);
    const __m512 v = _mm512_mul_ps(L::masked(row + c * L::kBytes, m), sv);
    if (df) _mm512_mask_storeu_ps(df + c, m, v);
    else _mm256_mask_storeu_epi16(db + c, m, (__m256i)_mm512_cvtneps_pbh(v));
  }
}

GLMPIPE_AVX512_INLINE void dequant_row_int4(const uint8_t* row, float s, int64_t n, float* df, uint16_t* db) {
  const __m512 s_hi = _mm512_set1_ps(s / 16.0f);
  const __m512 s_lo = _mm512_set1_ps(s / 268435456.0f);
  // Interleave: output element 2j = hi[j], 2j+1 = lo[j].
  const __m512i idx_a = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i idx_b = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const int64_t nb = n / 2;
  for (int64_t j = 0; j < nb; j += 16) {
    const int64_t left = nb - j;
    __m512 hi, lo;
    int4_decode(_mm_maskz_loadu_epi8(tail_mask(left), row + j), hi, lo);
    hi = _mm512_mul_ps(hi, s_hi);
    lo = _mm512_mul_ps(lo, s_lo);
    const __m512 va = _mm512_permutex2var_ps(hi, idx_a, lo);  // columns 2j .. 2j+15
    const __m512 vb = _mm512_permutex2var_ps(hi, idx_b, lo);  // columns 2j+16 .. 2j+31
    const int64_t cols = left >= 16 ? 32 : 2 * left;
    const __mmask16 ma = tail_mask(cols), mb = tail_mask(cols > 16 ? cols - 16 : 0);
    if (df) {
      _mm512_mask_storeu_ps(df + 2 * j, ma, va);
      _mm512_mask_storeu_ps(df + 2 * j + 16, mb, vb);
    } else {
      _mm256_mask_storeu_epi16(db + 2 * j, ma, (__m256i)_mm512_cvtneps_pbh(va));
      _mm256_mask_storeu_epi16(db + 2 * j + 16, mb, (__m256i)_mm512_cvtneps_pbh(vb));
    }
  }
}

}  // namespace

bool cpu_supports_avx512_kernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
}

GLMPIPE_AVX512 void gemv_rows_avx512(const GemvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= a.tokens; t += 4)
      for (int64_t r = rb; r < re; ++r) dot_row_any<4>(a, r, t);
    const int64_t left = a.tokens - t;
    for (int64_t r = rb; r < re; ++r) {
      if (left == 1) dot_row_any<1>(a, r, t);
      else if (left == 2) dot_row_any<2>(a, r, t);
      else if (left == 3) dot_row_any<3>(a, r, t);
    }
  }
}

GLMPIPE_AVX512 void dequant_rows_avx512(WeightFormat fmt, const void* w, const float* scale, int64_t in,
                                        void* dst, bool out_bf16, int64_t r0, int64_t r1) {
  const auto* base = static_cast<const uint8_t*>(w);
  for (int64_t r = r0; r < r1; ++r) {
    float* df = out_bf16 ? nullptr : static_cast<float*>(dst) + r * in;
    uint16_t* db = out_bf16 ? static_cast<uint16_t*>(dst) + r * in : nullptr;
    const float s = scale ? scale[r] : 1.0f;
    if (fmt == WeightFormat::kInt4) dequant_row_int4(base + r * (in / 2), s, in, df, db);
    else if (fmt == WeightFormat::kInt8) dequant_row<LoadInt8>(base + r * in, s, in, df, db);
    else if (fmt == WeightFormat::kBF16) dequant_row<LoadBF16>(base + r * in * 2, s, in, df, db);
    else dequant_row<LoadF32>(base + r * in * 4, s, in, df, db);
  }
}

}  // namespace glmpipe::detail
