// The machine's memory read ceiling, measured in the benchmark's own run: the floor every decode
// figure is compared with (batch-1 decode must read every weight byte once per token).
//
// Each thread sums its half of a 1 GiB fp32 buffer as 8 interleaved streams (8 regions read side by
// side). On the 2-vCPU Zen 3 VM one sequential stream per thread reads ~22-25 GB/s, 8 streams
// ~31-35 GB/s, and OpenBLAS sgemv / our 8-row kernels reach the same ~30+: a one-stream probe would
// understate the ceiling and flatter every ratio. The best round is the ceiling (a floor from the
// fastest read we saw is the strictest comparison); the median is printed beside it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace glmpipe::bench {

struct Bandwidth {
  double best_gbs = 0, median_gbs = 0;
};

namespace detail {

__attribute__((target("avx2"))) inline float sum_streams8(const float* p, int64_t n) {
  constexpr int kStreams = 8;
  const int64_t m = n / kStreams / 16 * 16;  // floats per stream, whole 64-byte lines
  __m256 acc[kStreams];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t i = 0; i < m; i += 16)
#pragma GCC unroll 8
    for (int s = 0; s < kStreams; ++s)
      acc[s] = _mm256_add_ps(acc[s], _mm256_add_ps(_mm256_loadu_ps(p + s * m + i), _mm256_loadu_ps(p + s * m + i + 8)));
  __m256 t = acc[0];
  for (int s = 1; s < kStreams; ++s) t = _mm256_add_ps(t, acc[s]);
  alignas(32) float v[8];
  _mm256_store_ps(v, t);
  float r = 0;
  for (float f : v) r += f;
  return r;
}

}  // namespace detail

// Reads 1 GiB `rounds` times (after one warm-up round) on `threads` threads (at::parallel_for).
inline Bandwidth measure_read_bandwidth(int threads, int rounds = 5) {
  const int old_threads = at::get_num_threads();
  at::set_num_threads(threads);
  const int64_t n = (int64_t(1) << 30) / 4;
  auto buf = at::ones({n});
  const float* p = buf.data_ptr<float>();
  std::vector<double> gbs;
  volatile float sink = 0;
  for (int r = 0; r <= rounds; ++r) {
    std::vector<float> part(threads, 0.f);
    const auto t0 = std::chrono::steady_clock::now();
    at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) part[k] = detail::sum_streams8(p + k * (n / threads), n / threads);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float f : part) sink = sink + f;
    if (r > 0) gbs.push_back(n * 4.0 / dt / 1e9);  // round 0 warms up
  }
  at::set_num_threads(old_threads);
  std::sort(gbs.begin(), gbs.end());
  return {gbs.back(), gbs[gbs.size() / 2]};
}

}  // namespace glmpipe::bench
