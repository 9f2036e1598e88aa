// Decode attention on a bf16 KV cache (see attention_cpu.h). Heads are split over threads
// (at::parallel_for); per head: scores (P dot products of length d), softmax, weighted sum of P
// value rows. The inner loops run over d with bf16 widened by a 16-bit shift, written so the compiler
// vectorizes them; an AVX-512 clone is picked at run time where the CPU has it.
#include "model/attention_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace glmpipe {
namespace {

inline float bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One head: q [d], k/v [P, d] bf16 rows, out [d].
__attribute__((target_clones("avx512f", "avx2", "default")))
void head_attention(const float* q, const uint16_t* k, const uint16_t* v, int64_t total, int64_t d, float scale,
                    float* scores, float* out) {
  float mx = -INFINITY;
  for (int64_t p = 0; p < total; ++p) {
    const uint16_t* kr = k + p * d;
    // 16 partial sums (one vector) so the compiler vectorizes without reassociating a scalar sum
    float lane[16] = {0};
    int64_t c = 0;
    for (; c + 16 <= d; c += 16)
      for (int j = 0; j < 16; ++j) lane[j] += q[c + j] * bf16(kr[c + j]);
    float s = 0.0f;
    for (; c < d; ++c) s += q[c] * bf16(kr[c]);
    for (int j = 0; j < 16; ++j) s += lane[j];
    s *= scale;
    scores[p] = s;
    mx = std::max(mx, s);
  }
  float sum = 0.0f;
  for (int64_t p = 0; p < total; ++p) {
    scores[p] = std::exp(scores[p] - mx);
    sum += scores[p];
  }
  for (int64_t c = 0; c < d; ++c) out[c] = 0.0f;
  for (int64_t p = 0; p < total; ++p) {
    const uint16_t* vr = v + p * d;
    const float w = scores[p];
    for (int64_t c = 0; c < d; ++c) out[c] += w * bf16(vr[c]);
  }
  const float inv = 1.0f / sum;
  for (int64_t c = 0; c < d; ++c) out[c] *= inv;
}

}  // namespace

bool decode_attention_bf16_applies(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache) {
  return q.device().is_cpu() && k_cache.device().is_cpu() && q.scalar_type() == at::kFloat &&
         k_cache.scalar_type() == at::kBFloat16 && v_cache.scalar_type() == at::kBFloat16 && k_cache.dim() == 3 &&
         k_cache.is_contiguous() && v_cache.is_contiguous() && v_cache.sizes() == k_cache.sizes();
}

at::Tensor decode_attention_bf16(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                 int64_t total, double scale) {
  GLMPIPE_CHECK(decode_attention_bf16_applies(q, k_cache, v_cache))
      << "decode_attention_bf16: need fp32 q and contiguous bf16 caches [n, max_seq, d] on CPU";
  const int64_t n = k_cache.size(0), max_seq = k_cache.size(1), d = k_cache.size(2);
  GLMPIPE_CHECK(q.numel() == n * d && total >= 1 && total <= max_seq)
      << "decode_attention_bf16: q " << q.sizes() << ", cache " << k_cache.sizes() << ", total " << total;
  auto qc = q.contiguous();
  auto out = at::empty({1, n * d}, q.options());
  const float* qp = qc.data_ptr<float>();
  const auto* kp = reinterpret_cast<const uint16_t*>(k_cache.data_ptr<at::BFloat16>());
  const auto* vp = reinterpret_cast<const uint16_t*>(v_cache.data_ptr<at::BFloat16>());
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, n, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> scores(total);
    for (int64_t h = h0; h < h1; ++h)
      head_attention(qp + h * d, kp + h * max_seq * d, vp + h * max_seq * d, total, d, sc, scores.data(), op + h * d);
  });
  return out;
}

}  // namespace glmpipe
