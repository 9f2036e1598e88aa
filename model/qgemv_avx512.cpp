// AVX-512 row kernels (see qgemv.h). Every function here carries a target attribute, so the file
// needs no special compile flags; callers check detail::cpu_supports_avx512_kernels() first.
//
// Structure (the one that reached the floor on AVX2, qgemv_avx2.cpp): NR = 8 rows side by side for
// one token (8 memory streams in flight, one accumulator set per row), fewer rows for more tokens
// (NR·NT ≤ 8 accumulator sets), and a software prefetch of the next NR-row block at the pace the
// current one is read (short int4/int8 rows leave the hardware prefetcher behind).
//
// bf16: one 64-byte load holds 16 (even, odd) column pairs as 32-bit words; (word << 16) is the even
// weight as fp32 and (word & 0xFFFF0000) the odd one, exactly, so with x split into even | odd
// columns (prepared once per call) a pair costs 2 integer ops and 2 FMAs, no shuffles. vdpbf16ps
// would need x rounded to bf16 (2^-9 relative), outside the fp32-activation test bound.
// int8/int4, one token: x rounded to int16 per 256-column block (GemvArgs::xq), weights widened to
// int16 and multiplied-accumulated with vpdpwssd (AVX512-VNNI, 2 products per int32 lane, one uop).
// vpdpbusd would need x rounded to 8 bits (|error| up to max|x|/254 per element, ~100× the bound).
//
// int4 decode for fp32 activations (multi-token tiles) without a de-interleave: 16 packed bytes
// sign-extended to int32 lanes v = 16·hi + lo_u. (v & ~0xF) = 16·hi exactly and (v << 28) = lo · 2^28
// exactly (signed), so converting both to fp32 and multiplying by x_even/16 and x_odd·2^-28
// (prepared once per call) gives hi·x_even + lo·x_odd with the powers of two exact.
#include <immintrin.h>

#include <cmath>
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

inline void finish_scalar(const GemvArgs& a, int64_t r, int64_t t, float s) {
  if (a.scale) s *= a.scale[r];
  if (a.bias) s += a.bias[r];
  a.y[t * a.out + r] = s;
}

GLMPIPE_AVX512_INLINE void finish_row(const GemvArgs& a, int64_t r, int64_t t, __m512 acc) {
  float s = _mm512_reduce_add_ps(acc);
  if (a.scale) s *= a.scale[r];
  if (a.bias) s += a.bias[r];
  a.y[t * a.out + r] = s;
}

// Prefetches `bytes` (a multiple of 64) at p: the part of the next NR-row block that matches the part
// of the current block just read. Into L2 (T1), not L1: the next block is a whole block (8 rows,
// up to 64 KiB for bf16) ahead, more than L1 holds, and on the Sapphire Rapids build machine T0 cost
// ~20 % at one thread against T1 or no prefetch (bf16 1.50 → 1.22 s, int8 0.90 → 0.66–0.78 s per
// 28-layer token, bench/bare_kernels timed in thread CPU time, 2026-12-01). AMD cores fill L1 for
// every hint but NTA, so there T1 is T0.
template <int64_t bytes>
GLMPIPE_AVX512_INLINE void prefetch_lines(const uint8_t* p) {
#pragma GCC unroll 8
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T1);
}

// NR rows × NT tokens, 16 columns per step, one accumulator per (row, token); masked row tail (x is
// zero padded to a multiple of 16).
template <class L, int NR, int NT>
GLMPIPE_AVX512_INLINE void dot_rows(const GemvArgs& a, int64_t r, int64_t t0) {
  constexpr int64_t kStep = 16 * L::kBytes * NR;  // bytes of the block read per step
  const int64_t n = a.in;
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * n * L::kBytes;
  const uint8_t* next = w0 + NR * n * L::kBytes;
  const float* x = a.x + t0 * a.ldx;
  __m512 acc[NR][NT];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    prefetch_lines<(kStep + 63) / 64 * 64>(next + c * L::kBytes * NR);
    __m512 xv[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) xv[t] = _mm512_loadu_ps(x + t * a.ldx + c);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m512 w = L::full(w0 + (i * n + c) * L::kBytes);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_fmadd_ps(w, xv[t], acc[i][t]);
    }
  }
  if (c < n) {
    const __mmask16 m = tail_mask(n - c);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m512 w = L::masked(w0 + (i * n + c) * L::kBytes, m);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + t * a.ldx + c), acc[i][t]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) finish_row(a, r + i, t0 + t, acc[i][t]);
}

// One step of dot_rows_bf16: 16 column pairs of NR rows (masked: the row tail).
template <int NR, int NT, bool kMasked>
GLMPIPE_AVX512_INLINE void bf16_step(const GemvArgs& a, const uint32_t* w0, int64_t nw, const float* xe,
                                     const float* xo, int64_t j, __mmask16 m, __m512 (&acc_e)[NR][NT],
                                     __m512 (&acc_o)[NR][NT]) {
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m512 ve[NT], vo[NT];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    ve[t] = _mm512_loadu_ps(xe + t * a.ldx);
    vo[t] = _mm512_loadu_ps(xo + t * a.ldx);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    const uint32_t* p = w0 + i * nw + j;
    const __m512i v = kMasked ? _mm512_maskz_loadu_epi32(m, p) : _mm512_loadu_si512(p);
    const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    const __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      acc_e[i][t] = _mm512_fmadd_ps(we, ve[t], acc_e[i][t]);
      acc_o[i][t] = _mm512_fmadd_ps(wo, vo[t], acc_o[i][t]);
    }
  }
}

// bf16 weights, x split into even | odd columns (GemvArgs::x_split; ldx/2 floats each, zero padded).
// 16 column pairs (one 64-byte load) per row and step; even and odd sums kept apart (2 FMA chains).
template <int NR, int NT>
GLMPIPE_AVX512_INLINE void dot_rows_bf16(const GemvArgs& a, int64_t r, int64_t t0) {
  const int64_t nw = a.in / 2;  // 32-bit (even, odd) pairs per row
  const auto* w0 = static_cast<const uint32_t*>(a.w) + r * nw;
  const auto* next = reinterpret_cast<const uint8_t*>(w0 + NR * nw);
  const float* xe = a.x + t0 * a.ldx;
  const float* xo = xe + a.ldx / 2;
  __m512 acc_e[NR][NT], acc_o[NR][NT];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc_e[i][t] = acc_o[i][t] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= nw; j += 16) {
    prefetch_lines<64 * NR>(next + j * 4 * NR);
    bf16_step<NR, NT, false>(a, w0, nw, xe + j, xo + j, j, 0xFFFF, acc_e, acc_o);
  }
  if (j < nw) bf16_step<NR, NT, true>(a, w0, nw, xe + j, xo + j, j, tail_mask(nw - j), acc_e, acc_o);
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) finish_row(a, r + i, t0 + t, _mm512_add_ps(acc_e[i][t], acc_o[i][t]));
}

// One step of dot_rows_i16: 32 weight bytes of NR rows at w (masked: the row tail).
template <bool kInt4, int NR, bool kMasked>
GLMPIPE_AVX512_INLINE void i16_step(const uint8_t* w, int64_t row_bytes, __m512i x0, __m512i x1, __mmask32 m,
                                    __m512i (&acc)[NR]) {
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    const uint8_t* p = w + i * row_bytes;
    const __m256i b = kMasked ? _mm256_maskz_loadu_epi8(m, p) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m512i v = _mm512_cvtepi8_epi16(b);
    if (kInt4) {  // high nibble = even column, low nibble = odd column (signed)
      acc[i] = _mm512_dpwssd_epi32(acc[i], _mm512_srai_epi16(v, 4), x0);
      acc[i] = _mm512_dpwssd_epi32(acc[i], _mm512_srai_epi16(_mm512_slli_epi16(v, 12), 12), x1);
    } else {
      acc[i] = _mm512_dpwssd_epi32(acc[i], v, x0);
    }
  }
}

// One token, int16 activations (GemvArgs::xq): NR rows of int8 or int4 weights widened to int16 and
// accumulated with vpdpwssd into int32 sums per kXqBlock columns, scaled into fp32 per block.
// Overflow: a block adds kXqBlock products |q·x| ≤ 128·32767 in all, ≤ 1.07e9 < 2^31, in any lane
// layout, and its lanes reduce exactly to one int32.
template <bool kInt4, int NR>
GLMPIPE_AVX512_INLINE void dot_rows_i16(const GemvArgs& a, int64_t r) {
  const int64_t row_bytes = kInt4 ? a.in / 2 : a.in;
  const int64_t step = kInt4 ? kXqBlock / 2 : kXqBlock;  // weight bytes per activation block
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * row_bytes;
  const uint8_t* next = w0 + NR * row_bytes;
  const int16_t* x_even = a.xq;            // int8: all columns
  const int16_t* x_odd = a.xq + a.in / 2;  // int4 only
  float accs[NR] = {};  // fp32 sum of the exact int32 block sums, in block order (see below)
  for (int64_t j0 = 0, b = 0; j0 < row_bytes; j0 += step, ++b) {
    const int64_t j1 = j0 + step < row_bytes ? j0 + step : row_bytes;
    __m512i acc[NR];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc[i] = _mm512_setzero_si512();
    int64_t j = j0;
    for (; j + 32 <= j1; j += 32) {  // 32 weight bytes per row
      prefetch_lines<32 * NR>(next + j * NR);
      const __m512i x0 = _mm512_loadu_si512(x_even + j);
      const __m512i x1 = kInt4 ? _mm512_loadu_si512(x_odd + j) : x0;
      i16_step<kInt4, NR, false>(w0 + j, row_bytes, x0, x1, 0, acc);
    }
    if (j < j1) {  // int4 rows of 16·odd bytes: a 16-byte tail in the last block
      const __mmask32 m = static_cast<__mmask32>((1u << (j1 - j)) - 1u);
      const __m512i x0 = _mm512_maskz_loadu_epi16(m, x_even + j);
      const __m512i x1 = kInt4 ? _mm512_maskz_loadu_epi16(m, x_odd + j) : x0;
      i16_step<kInt4, NR, true>(w0 + j, row_bytes, x0, x1, m, acc);
    }
    // The block's int32 sum is exact whatever the lane layout, and the fp32 part is one fused
    // multiply-add per block in block order: the AVX2 kernel computes the same, so both families give
    // bit-identical results (processes that measured different families agree).
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i)
      accs[i] = __builtin_fmaf(static_cast<float>(_mm512_reduce_add_epi32(acc[i])), a.xq_scale[b], accs[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) finish_scalar(a, r + i, 0, accs[i]);
}

// One token, int8 activations (GemvArgs::x8), AVX512-VNNI vpdpbusd (unsigned × signed bytes, 4
// products per int32 lane, one uop): NR rows, 64 weight bytes per row and step.
// The weights are made unsigned on the fly: int8 w ^ 0x80 = w + 128, an int4 nibble ^ 8 = w + 8, so
// a lane's exact int32 sum is Σ (w + off)·x8 over 4 columns (int4: 4 even + 4 odd) of one 32-column
// activation block; converted to fp32 (exact: |sum| < 2^24) it is multiplied by that lane's block
// scale (GemvArgs::x8_lane_scale) into a per-lane fp32 sum, and the offset, off·Σ_b scale_b·Σ x8
// (the same for every row), leaves once per row through GemvArgs::x8_corr. int4 step: 64 packed
// bytes = 64 even columns (high nibbles, against the even half of x8) + 64 odd ones (low nibbles).
// Per 64 weight bytes: 5 uops (int8) or 8 (int4), against 6 / 14 and a horizontal reduction per 256
// columns in the int16 kernel above, which kept int4 at ~0.5 and int8 at ~0.7 of the read floor on 2
// Sapphire Rapids cores (compute ceilings per core, weights in L2: int4 14 → 30 GB/s, int8 28 → 40).
template <bool kInt4, int NR>
GLMPIPE_AVX512_INLINE void dot_rows_x8(const GemvArgs& a, int64_t r) {
  const int64_t row_bytes = kInt4 ? a.in / 2 : a.in;  // a multiple of 64
  const uint8_t* w0 = static_cast<const uint8_t*>(a.w) + r * row_bytes;
  const uint8_t* next = w0 + NR * row_bytes;
  const int8_t* x_even = a.x8;            // int8: all columns
  const int8_t* x_odd = a.x8 + a.in / 2;  // int4 only
  const __m512i k0f = _mm512_set1_epi8(0x0F), k08 = _mm512_set1_epi8(0x08);
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 accf[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) accf[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < row_bytes; j += 64) {
    prefetch_lines<64 * NR>(next + j * NR);
    const __m512i xe = _mm512_loadu_si512(x_even + j);
    const __m512i xo = kInt4 ? _mm512_loadu_si512(x_odd + j) : xe;
    const __m512 sl = _mm512_loadu_ps(a.x8_lane_scale + j / 4);  // lane l: the block of bytes j+4l..j+4l+3
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m512i p = _mm512_loadu_si512(w0 + i * row_bytes + j);
      __m512i acc;
      if (kInt4) {  // 0x6A: (A & B) ^ C, the nibble masked and offset by 8 in one uop
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(p, 4), k0f, k08, 0x6A);
        const __m512i lo = _mm512_ternarylogic_epi32(p, k0f, k08, 0x6A);
        acc = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xe), lo, xo);
      } else {
        acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(p, k80), xe);
      }
      accf[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), sl, accf[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) finish_scalar(a, r + i, 0, _mm512_reduce_add_ps(accf[i]) - a.x8_corr);
}

template <bool kInt4>
GLMPIPE_AVX512 void rows_x8(const GemvArgs& a, int64_t rb, int64_t re) {
  int64_t r = rb;
  for (; r + 8 <= re; r += 8) dot_rows_x8<kInt4, 8>(a, r);
  for (; r < re; ++r) dot_rows_x8<kInt4, 1>(a, r);
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

template <class L, int NR, int NT>
GLMPIPE_AVX512 void rows_tile(const GemvArgs& a, int64_t rb, int64_t re, int64_t t) {
  int64_t r = rb;
  for (; r + NR <= re; r += NR) dot_rows<L, NR, NT>(a, r, t);
  for (; r < re; ++r) dot_rows<L, 1, NT>(a, r, t);
}

template <int NR, int NT>
GLMPIPE_AVX512 void rows_tile_bf16(const GemvArgs& a, int64_t rb, int64_t re, int64_t t) {
  int64_t r = rb;
  for (; r + NR <= re; r += NR) dot_rows_bf16<NR, NT>(a, r, t);
  for (; r < re; ++r) dot_rows_bf16<1, NT>(a, r, t);
}

template <bool kInt4>
GLMPIPE_AVX512 void rows_i16(const GemvArgs& a, int64_t rb, int64_t re) {
  int64_t r = rb;
  for (; r + 8 <= re; r += 8) dot_rows_i16<kInt4, 8>(a, r);
  for (; r < re; ++r) dot_rows_i16<kInt4, 1>(a, r);
}

// Rows [rb, re) (at most kRowBlock) for tokens [t, t + NT).
template <int NT>
GLMPIPE_AVX512 void tile_any(const GemvArgs& a, int64_t rb, int64_t re, int64_t t) {
  constexpr int NR = NT == 1 ? 8 : NT == 2 ? 4 : 2;
  switch (a.fmt) {
    case WeightFormat::kF32: rows_tile<LoadF32, NR, NT>(a, rb, re, t); break;
    case WeightFormat::kBF16:
      if (a.x_split) rows_tile_bf16<NR, NT>(a, rb, re, t);
      else rows_tile<LoadBF16, NR, NT>(a, rb, re, t);
      break;
    case WeightFormat::kInt8: rows_tile<LoadInt8, NR, NT>(a, rb, re, t); break;
    case WeightFormat::kInt4:
      for (int64_t r = rb; r < re; ++r) dot_row_int4<NT>(a, r, t);
      break;
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

bool avx512_wants_split_x(WeightFormat fmt, int64_t in) { return fmt == WeightFormat::kBF16 && in % 2 == 0; }

GLMPIPE_AVX512 void gemv_rows_avx512(const GemvArgs& a, int64_t r0, int64_t r1) {
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    if (a.x8) {  // one token, int8 activations (gemv_forward)
      if (a.fmt == WeightFormat::kInt4) rows_x8<true>(a, rb, re);
      else rows_x8<false>(a, rb, re);
      continue;
    }
    if (a.xq) {  // one token, int16 activations (gemv_forward)
      if (a.fmt == WeightFormat::kInt4) rows_i16<true>(a, rb, re);
      else rows_i16<false>(a, rb, re);
      continue;
    }
    int64_t t = 0;
    for (; t + 4 <= a.tokens; t += 4) tile_any<4>(a, rb, re, t);
    const int64_t left = a.tokens - t;
    if (left == 1) tile_any<1>(a, rb, re, t);
    else if (left == 2) tile_any<2>(a, rb, re, t);
    else if (left == 3) tile_any<3>(a, rb, re, t);
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

// One activation block of 32 columns (2 vectors) to int8 at q (16 bytes each vector); returns the
// scale (max|x| / 127; 1 for zeros) and adds Σ x8 to *sum; NaN when a value is not finite.
static GLMPIPE_AVX512_INLINE float quantize_block_i8(__m512 v0, __m512 v1, int8_t* q0, int8_t* q1, int32_t* sum) {
  if (_mm512_fpclass_ps_mask(v0, 0x99) | _mm512_fpclass_ps_mask(v1, 0x99)) return std::nanf("");  // NaN | ±Inf
  const float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const __m512 inv = _mm512_set1_ps(mx > 0.0f ? 127.0f / mx : 1.0f);
  // round to nearest even; |v·inv| ≤ 127 up to rounding, and the pack saturates at ±127 anyway
  const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)), b = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q0), _mm512_cvtsepi32_epi8(a));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q1), _mm512_cvtsepi32_epi8(b));
  *sum += _mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
  return mx > 0.0f ? mx / 127.0f : 1.0f;
}

GLMPIPE_AVX512 bool quantize_x_i8_avx512(const float* x, int64_t in, bool int4, int8_t* x8, float* lane_scale,
                                         float* corr) {
  if (in % (int4 ? 128 : 64) != 0) return false;
  const int64_t half = in / 2;
  // int4: columns 2j (even) and 2j+1 (odd) of 32 consecutive floats, de-interleaved.
  const __m512i idx_even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i idx_odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  double c = 0.0;
  for (int64_t b = 0; b < in / kX8Block; ++b) {
    const __m512 lo = _mm512_loadu_ps(x + b * kX8Block), hi = _mm512_loadu_ps(x + b * kX8Block + 16);
    int32_t sum = 0;
    float s;
    if (int4) {  // 16 even columns → x8[16b..], 16 odd ones → x8[half + 16b..]: lanes 4b..4b+3
      s = quantize_block_i8(_mm512_permutex2var_ps(lo, idx_even, hi), _mm512_permutex2var_ps(lo, idx_odd, hi),
                            x8 + 16 * b, x8 + half + 16 * b, &sum);
      for (int l = 0; l < 4; ++l) lane_scale[4 * b + l] = s;
    } else {     // 32 columns → x8[32b..]: lanes 8b..8b+7
      s = quantize_block_i8(lo, hi, x8 + 32 * b, x8 + 32 * b + 16, &sum);
      for (int l = 0; l < 8; ++l) lane_scale[8 * b + l] = s;
    }
    if (!std::isfinite(s)) return false;
    c += static_cast<double>(s) * sum;
  }
  *corr = static_cast<float>((int4 ? 8.0 : 128.0) * c);
  return true;
}

}  // namespace glmpipe::detail
