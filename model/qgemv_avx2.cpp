// AVX2 + FMA row kernels (see qgemv.h): the path taken on CPUs (or VMs) that expose AVX2 but not
// AVX-512. Same structure as qgemv_avx512.cpp with 8-lane vectors; the row tail (< 8 columns, or
// < 8 packed bytes for int4) is done in scalar code from the unpadded x.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "model/qgemv.h"

#define GLMPIPE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define GLMPIPE_AVX2_INLINE GLMPIPE_AVX2 inline __attribute__((always_inline))

namespace glmpipe::detail {
namespace {

constexpr int64_t kRowBlock = 8;
// Software prefetch distance into the int4 weight stream (rows are contiguous, so it runs ahead into
// the next rows too). On the 2-vCPU Zen 3 VM the hardware prefetcher alone left the one-row int4
// kernel at ~11-13 GB/s on 2 threads; 4 KiB ahead gave ~14-16 (bench/RESULTS_kernels.md).
constexpr int64_t kPrefetchBytes = 4096;


// Prefetches the cache lines [p + kPrefetchBytes, p + kPrefetchBytes + bytes).
template <int64_t bytes>
GLMPIPE_AVX2_INLINE void prefetch_ahead(const uint8_t* p) {
#pragma GCC unroll 4
  for (int64_t off = 0; off < bytes; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + off), _MM_HINT_T0);
}

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

GLMPIPE_AVX2_INLINE int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline void finish_row(const GemvArgs& a, int64_t r, int64_t t, float s) {
  if (a.scale) s *= a.scale[r];
  if (a.bias) s += a.bias[r];
  a.y[t * a.out + r] = s;
}

// NR rows × NT tokens at once, one accumulator per (row, token), 16 columns per iteration.
// Streaming NR rows side by side keeps NR independent memory streams in flight: on the 2-vCPU Zen 3
// VM, 8 rows this way read bf16 at ~28 GB/s on 2 threads, against ~17 for one row at a time with
// four accumulators (the hardware prefetcher tracks each row; more streams, more bytes in flight).
template <class L, int NR, int NT>
GLMPIPE_AVX2_INLINE void dot_rows(const GemvArgs& a, int64_t r, int64_t t0) {
  const int64_t n = a.in;
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * n * L::kBytes;
  const float* x = a.x + t0 * a.ldx;
  __m256 acc[NR][NT];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      __m256 xv[NT];
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(x + t * a.ldx + c + 8 * v);
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) {
        const __m256 w = L::load(w0 + (i * n + c + 8 * v) * L::kBytes);
#pragma GCC unroll 4
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_fmadd_ps(w, xv[t], acc[i][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    const uint8_t* row = w0 + i * n * L::kBytes;
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      float v = hsum(acc[i][t]);
      const float* xr = a.x_raw + (t0 + t) * a.in;
      for (int64_t k = c; k < n; ++k) v += L::scalar(row + k * L::kBytes) * xr[k];
      finish_row(a, r + i, t0 + t, v);
    }
  }
}

// 8 packed bytes → hi·16 and lo·2^28 as fp32 (see qgemv_avx512.cpp for the identity).
GLMPIPE_AVX2_INLINE void int4_decode(const uint8_t* p, __m256& hi16, __m256& lo28) {
  const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  hi16 = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(~0xF)));
  lo28 = _mm256_cvtepi32_ps(_mm256_slli_epi32(v, 28));
}

// One token, 8 int4 rows side by side (one accumulator each), prefetching the next 8-row block at
// the pace this one is consumed. int4 rows are short (2 KiB for in = 4096), too short for the
// hardware prefetcher to ramp up on each of 8 streams: 8 rows without the explicit prefetch read
// ~11 GB/s on 2 threads, one prefetched row at a time ~16, this ~18 (the kernel is near its compute
// bound: ~21 G weights/s per thread in cache).
GLMPIPE_AVX2_INLINE void dot_rows8_int4(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int NR = 8;
  const int64_t nb = a.in / 2;
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * nb;
  const uint8_t* next = w0 + NR * nb;
  const float* xe = a.x + t0 * a.ldx;
  const float* xo = xe + a.ldx / 2;
  __m256 acc[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) acc[i] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(next + j * NR), _MM_HINT_T0);  // 64 B of the next block
    const __m256 x0 = _mm256_loadu_ps(xe + j), x1 = _mm256_loadu_ps(xo + j);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      __m256 hi, lo;
      int4_decode(w0 + i * nb + j, hi, lo);
      acc[i] = _mm256_fmadd_ps(hi, x0, acc[i]);
      acc[i] = _mm256_fmadd_ps(lo, x1, acc[i]);
    }
  }
  const float* xr = a.x_raw + t0 * a.in;
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    float v = hsum(acc[i]);
    const uint8_t* row = w0 + i * nb;
    for (int64_t k = j; k < nb; ++k) {
      const int8_t b = static_cast<int8_t>(row[k]);
      v += static_cast<float>(b >> 4) * xr[2 * k] +
           static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(b) << 4) >> 4) * xr[2 * k + 1];
    }
    finish_row(a, r + i, t0, v);
  }
}

// One token, int16 activations (GemvArgs::xq): NR rows of int8 or int4 weights widened to int16 and
// multiplied with vpmaddwd into int32 sums per kXqBlock columns, which are scaled into fp32.
// Overflow: int4 |q·x| ≤ 8·32767, int8 ≤ 128·32767; a block adds kXqBlock such products in all
// (≤ 1.07e9 < 2^31), so its lanes reduce exactly to one int32. The next NR-row block is prefetched at the pace this one is read.
template <bool kInt4, int NR>
GLMPIPE_AVX2_INLINE void dot_rows_i16(const GemvArgs& a, int64_t r) {
  const int64_t row_bytes = kInt4 ? a.in / 2 : a.in;
  const int64_t step = kInt4 ? kXqBlock / 2 : kXqBlock;  // weight bytes per activation block
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * row_bytes;
  const uint8_t* next = w0 + NR * row_bytes;
  const int16_t* x_even = a.xq;                            // int8: all columns
  const int16_t* x_odd = a.xq + a.in / 2;                  // int4 only
  float accs[NR] = {};  // fp32 sum of the exact int32 block sums, in block order
  for (int64_t j0 = 0, b = 0; j0 < row_bytes; j0 += step, ++b) {
    const int64_t j1 = j0 + step < row_bytes ? j0 + step : row_bytes;
    __m256i acc[NR];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc[i] = _mm256_setzero_si256();
    for (int64_t j = j0; j < j1; j += 16) {  // 16 weight bytes per row
#pragma GCC unroll 2
      for (int64_t p = 0; p < NR * 16; p += 64) _mm_prefetch(reinterpret_cast<const char*>(next + j * NR + p), _MM_HINT_T0);
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x_even + j));
      __m256i x1 = x0;
      if (kInt4) x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x_odd + j));
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) {
        const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + i * row_bytes + j)));
        if (kInt4) {  // high nibble = even column, low nibble = odd column (signed)
          const __m256i hi = _mm256_srai_epi16(v, 4), lo = _mm256_srai_epi16(_mm256_slli_epi16(v, 12), 12);
          acc[i] = _mm256_add_epi32(acc[i], _mm256_add_epi32(_mm256_madd_epi16(hi, x0), _mm256_madd_epi16(lo, x1)));
        } else {
          acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(v, x0));
        }
      }
    }
    // Exact int32 block sum, then one fused multiply-add per block in block order: the same
    // arithmetic as the AVX-512 kernel, so the two families give bit-identical results.
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) accs[i] = __builtin_fmaf(static_cast<float>(hsum_i32(acc[i])), a.xq_scale[b], accs[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) finish_row(a, r + i, 0, accs[i]);
}

// One token, int4 weights, int8 activations (GemvArgs::x8, the layout of the AVX-512 VNNI kernel):
// without VNNI, vpmaddubsw multiplies the unsigned nibbles (w ^ 8 = w + 8, 0..15) with signed x8
// into int16 pairs (|pair| ≤ 2·15·127, no saturation; high + low ≤ 7620) and vpmaddwd with ones
// widens them to int32 lanes of 4 even + 4 odd columns; each lane's exact sum times its block
// scale accumulates in fp32, and the offset leaves once per row (x8_corr). 32 packed bytes (64
// columns) per row and step: ~11 uops against ~16 and a horizontal reduction per 256 columns for
// the int16 kernel, whose compute ceiling (~12 GB/s of int4 per core, bench/bare_kernels --compute)
// is below a core's share of the read floor.
template <int NR>
GLMPIPE_AVX2_INLINE void dot_rows_x8_int4(const GemvArgs& a, int64_t r) {
  const int64_t row_bytes = a.in / 2;  // a multiple of 64
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * row_bytes;
  const uint8_t* next = w0 + NR * row_bytes;
  const int8_t* x_even = a.x8;
  const int8_t* x_odd = a.x8 + a.in / 2;
  const __m256i k0f = _mm256_set1_epi8(0x0F), k88 = _mm256_set1_epi8(static_cast<char>(0x88));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 accf[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) accf[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < row_bytes; j += 32) {
#pragma GCC unroll 4
    for (int64_t p = 0; p < NR * 32; p += 64) _mm_prefetch(reinterpret_cast<const char*>(next + j * NR + p), _MM_HINT_T0);
    const __m256i xe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x_even + j));
    const __m256i xo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x_odd + j));
    const __m256 sl = _mm256_loadu_ps(a.x8_lane_scale + j / 4);  // lane l: x8 bytes j+4l..j+4l+3
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m256i p = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + i * row_bytes + j)), k88);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), k0f), lo = _mm256_and_si256(p, k0f);
      const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(hi, xe), _mm256_maddubs_epi16(lo, xo));
      accf[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones)), sl, accf[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) finish_row(a, r + i, 0, hsum(accf[i]) - a.x8_corr);
}

GLMPIPE_AVX2 void rows_x8_int4(const GemvArgs& a, int64_t rb, int64_t re) {
  int64_t r = rb;
  for (; r + 8 <= re; r += 8) dot_rows_x8_int4<8>(a, r);
  for (; r < re; ++r) dot_rows_x8_int4<1>(a, r);
}

template <bool kInt4>
GLMPIPE_AVX2 void rows_i16(const GemvArgs& a, int64_t rb, int64_t re) {
  int64_t r = rb;
  for (; r + 8 <= re; r += 8) dot_rows_i16<kInt4, 8>(a, r);
  for (; r < re; ++r) dot_rows_i16<kInt4, 1>(a, r);
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
    prefetch_ahead<8 * U>(row + j);
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

// Rows [rb, re) (at most kRowBlock) for tokens [t, t + NT): float/int8 weights NR rows at a time
// (NR·NT ≤ 8 accumulators); int4 8 rows at a time for one token, else one row at a time with
// several accumulators (the unpacking registers leave no room for 8 rows × several tokens).
template <class L, int NR, int NT>
GLMPIPE_AVX2 void rows_tile(const GemvArgs& a, int64_t rb, int64_t re, int64_t t) {
  int64_t r = rb;
  for (; r + NR <= re; r += NR) dot_rows<L, NR, NT>(a, r, t);
  for (; r < re; ++r) dot_rows<L, 1, NT>(a, r, t);
}

template <int NT>
GLMPIPE_AVX2 void tile_any(const GemvArgs& a, int64_t rb, int64_t re, int64_t t) {
  constexpr int NR = NT == 1 ? 8 : NT == 2 ? 4 : 2;
  switch (a.fmt) {
    case WeightFormat::kF32: rows_tile<LoadF32, NR, NT>(a, rb, re, t); break;
    case WeightFormat::kBF16: rows_tile<LoadBF16, NR, NT>(a, rb, re, t); break;
    case WeightFormat::kInt8: rows_tile<LoadInt8, NR, NT>(a, rb, re, t); break;
    case WeightFormat::kInt4: {
      int64_t r = rb;
      if (NT == 1)
        for (; r + 8 <= re; r += 8) dot_rows8_int4(a, r, t);
      for (; r < re; ++r) dot_row_int4<NT>(a, r, t);
      break;
    }
  }
}

}  // namespace

// As quantize_x_i8_avx512, value for value (fp32 x·(127/max), rounded to nearest even, saturated).
GLMPIPE_AVX2 bool quantize_x_i8_avx2(const float* x, int64_t in, bool int4, int8_t* x8, float* lane_scale, float* corr) {
  if (in % (int4 ? 128 : 64) != 0) return false;
  const int64_t half = in / 2;
  double c = 0.0;
  for (int64_t b = 0; b < in / kX8Block; ++b) {
    const float* xb = x + b * kX8Block;
    float mx = 0.0f;
    for (int64_t k = 0; k < kX8Block; ++k) {
      if (!std::isfinite(xb[k])) return false;
      mx = std::max(mx, std::fabs(xb[k]));
    }
    const float inv = mx > 0.0f ? 127.0f / mx : 1.0f, s = mx > 0.0f ? mx / 127.0f : 1.0f;
    int32_t sum = 0;
    for (int64_t k = 0; k < kX8Block; ++k) {
      const int32_t q = static_cast<int32_t>(std::max(-128.0f, std::min(127.0f, std::nearbyint(xb[k] * inv))));
      sum += q;
      if (int4) x8[(k % 2 ? half : 0) + b * (kX8Block / 2) + k / 2] = static_cast<int8_t>(q);
      else x8[b * kX8Block + k] = static_cast<int8_t>(q);
    }
    const int lanes = int4 ? 4 : 8;
    for (int l = 0; l < lanes; ++l) lane_scale[lanes * b + l] = s;
    c += static_cast<double>(s) * sum;
  }
  *corr = static_cast<float>((int4 ? 8.0 : 128.0) * c);
  return true;
}

bool cpu_supports_avx2_kernels() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

GLMPIPE_AVX2 void gemv_rows_avx2(const GemvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= a.tokens; t += 4) tile_any<4>(a, rb, re, t);
    const int64_t left = a.tokens - t;
    if (a.x8 && a.fmt == WeightFormat::kInt4) rows_x8_int4(a, rb, re);  // one token (gemv_forward)
    else if (a.xq && a.fmt == WeightFormat::kInt4) rows_i16<true>(a, rb, re);
    else if (a.xq && a.fmt == WeightFormat::kInt8) rows_i16<false>(a, rb, re);
    else if (left == 1) tile_any<1>(a, rb, re, t);
    else if (left == 2) tile_any<2>(a, rb, re, t);
    else if (left == 3) tile_any<3>(a, rb, re, t);
  }
}

}  // namespace glmpipe::detail
