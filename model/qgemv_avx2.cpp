// AVX2 + FMA row kernels (see qgemv.h): the path taken on CPUs (or VMs) that expose AVX2 but not
// AVX-512. Same structure as qgemv_avx512.cpp with 8-lane vectors; the row tail (< 8 columns, or
// < 8 packed bytes for int4) is done in scalar code from the unpadded x.
#include <immintrin.h>

#include "model/qgemv.h"

#define GLMPIPE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define GLMPIPE_AVX2_INLINE GLMPIPE_AVX2 inline __attribute__((always_inline))

namespace glmpipe::detail {
namespace {

constexpr int64_t kRowBlock = 8;

struct LoadF32 {
  static constexpr int64_t kBytes = 4;
  GLMPIPE_AVX2_INLINE static __m256 load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
  static float scalar(const uint8_t* p) { return *reinterpret_cast<const float*>(p); }
};
struct LoadBF16 {
  static constexpr int64_t kBytes = 2;
  GLMPIPE_AVX2_INLINE static __m256 load(const uint8_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar(const uint8_t* p) {
    const uint32_t u = static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(p)) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};
struct LoadInt8 {
  static constexpr int64_t kBytes = 1;
  GLMPIPE_AVX2_INLINE static __m256 load(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static float scalar(const uint8_t* p) { return static_cast<float>(*reinterpret_cast<const int8_t*>(p)); }
};

GLMPIPE_AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void finish_row(const GemvArgs& a, int64_t r, int64_t t, float s) {
  if (a.scale) s *= a.scale[r];
  if (a.bias) s += a.bias[r];
  a.y[t * a.out + r] = s;
}

template <class L, int NT>
GLMPIPE_AVX2_INLINE void dot_row(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int U = NT == 1 ? 4 : (NT == 2 ? 2 : 1);
  const int64_t n = a.in;
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + r * n * L::kBytes;
  const float* x = a.x + t0 * a.ldx;
  __m256 acc[NT][U];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[t][u] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 * U <= n; c += 8 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m256 w = L::load(row + (c + 8 * u) * L::kBytes);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t)
        acc[t][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * a.ldx + c + 8 * u), acc[t][u]);
    }
  }
  for (; c + 8 <= n; c += 8) {
    const __m256 w = L::load(row + c * L::kBytes);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[t][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * a.ldx + c), acc[t][0]);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    __m256 s = acc[t][0];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[t][u]);
    float v = hsum(s);
    const float* xr = a.x_raw + (t0 + t) * a.in;
    for (int64_t k = c; k < n; ++k) v += L::scalar(row + k * L::kBytes) * xr[k];
    finish_row(a, r, t0 + t, v);
  }
}

// 8 packed bytes → hi·16 and lo·2^28 as fp32 (see qgemv_avx512.cpp for the identity).
GLMPIPE_AVX2_INLINE void int4_decode(const uint8_t* p, __m256& hi16, __m256& lo28) {
  const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  hi16 = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(~0xF)));
  lo28 = _mm256_cvtepi32_ps(_mm256_slli_epi32(v, 28));
}

template <int NT>
GLMPIPE_AVX2_INLINE void dot_row_int4(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int U = NT == 1 ? 4 : (NT == 2 ? 2 : 1);
  const int64_t nb = a.in / 2;
  const int64_t half = a.ldx / 2;
  const uint8_t* row = static_cast<const uint8_t*>(a.w) + r * nb;
  const float* xe = a.x + t0 * a.ldx;
  const float* xo = xe + half;
  __m256 acc_e[NT][U], acc_o[NT][U];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc_e[t][u] = acc_o[t][u] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 * U <= nb; j += 8 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      __m256 hi, lo;
      int4_decode(row + j + 8 * u, hi, lo);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        acc_e[t][u] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xe + t * a.ldx + j + 8 * u), acc_e[t][u]);
        acc_o[t][u] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xo + t * a.ldx + j + 8 * u), acc_o[t][u]);
      }
    }
  }
  for (; j + 8 <= nb; j += 8) {
    __m256 hi, lo;
    int4_decode(row + j, hi, lo);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      acc_e[t][0] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xe + t * a.ldx + j), acc_e[t][0]);
      acc_o[t][0] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xo + t * a.ldx + j), acc_o[t][0]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    __m256 s = _mm256_add_ps(acc_e[t][0], acc_o[t][0]);
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, _mm256_add_ps(acc_e[t][u], acc_o[t][u]));
    float v = hsum(s);
    const float* xr = a.x_raw + (t0 + t) * a.in;
    for (int64_t k = j; k < nb; ++k) {
      const int8_t b = static_cast<int8_t>(row[k]);
      v += static_cast<float>(b >> 4) * xr[2 * k] +
           static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(b) << 4) >> 4) * xr[2 * k + 1];
    }
    finish_row(a, r, t0 + t, v);
  }
}

template <int NT>
GLMPIPE_AVX2 void dot_row_any(const GemvArgs& a, int64_t r, int64_t t0) {
  switch (a.fmt) {
    case WeightFormat::kF32: dot_row<LoadF32, NT>(a, r, t0); break;
    case WeightFormat::kBF16: dot_row<LoadBF16, NT>(a, r, t0); break;
    case WeightFormat::kInt8: dot_row<LoadInt8, NT>(a, r, t0); break;
    case WeightFormat::kInt4: dot_row_int4<NT>(a, r, t0); break;
  }
}

}  // namespace

bool cpu_supports_avx2_kernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

GLMPIPE_AVX2 void gemv_rows_avx2(const GemvArgs& a, int64_t r0, int64_t r1) {
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

}  // namespace glmpipe::detail
