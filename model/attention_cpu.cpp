// Decode attention on a bf16 KV cache (see attention_cpu.h). KV groups, and runs of the query heads
// that read them, are split over threads (at::parallel_for); per run: scores (P dot products of
// length d per head), softmax, weighted sums of P value rows. The inner loops run over d with bf16 widened by a 16-bit shift, written so the compiler
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

// The r query heads [h0, h0 + r) that read one KV group: q [r, d], k/v [P, d] bf16 rows (the group's
// slot panel), scores [r, P] scratch, out [r, d]. Each key/value row is widened once and used by
// all r heads (GLM-4: r = 16), so the group's cache is read once per token.
__attribute__((target_clones("avx512f", "avx2", "default")))
void group_attention(const float* q, int64_t r, const uint16_t* k, const uint16_t* v, int64_t total, int64_t d,
                     float scale, float* scores, float* row, float* out) {
  for (int64_t p = 0; p < total; ++p) {
    const uint16_t* kr = k + p * d;
    for (int64_t c = 0; c < d; ++c) row[c] = bf16(kr[c]);
    for (int64_t h = 0; h < r; ++h) {
      const float* qh = q + h * d;
      // 16 partial sums (one vector) so the compiler vectorizes without reassociating a scalar sum
      float lane[16] = {0};
      int64_t c = 0;
      for (; c + 16 <= d; c += 16)
        for (int j = 0; j < 16; ++j) lane[j] += qh[c + j] * row[c + j];
      float s = 0.0f;
      for (; c < d; ++c) s += qh[c] * row[c];
      for (int j = 0; j < 16; ++j) s += lane[j];
      scores[h * total + p] = s * scale;
    }
  }
  for (int64_t h = 0; h < r; ++h) {
    float* sh = scores + h * total;
    float mx = -INFINITY;
    for (int64_t p = 0; p < total; ++p) mx = std::max(mx, sh[p]);
    float sum = 0.0f;
    for (int64_t p = 0; p < total; ++p) {
      sh[p] = std::exp(sh[p] - mx);
      sum += sh[p];
    }
    const float inv = 1.0f / sum;
    for (int64_t p = 0; p < total; ++p) sh[p] *= inv;
  }
  for (int64_t i = 0; i < r * d; ++i) out[i] = 0.0f;
  for (int64_t p = 0; p < total; ++p) {
    const uint16_t* vr = v + p * d;
    for (int64_t c = 0; c < d; ++c) row[c] = bf16(vr[c]);
    for (int64_t h = 0; h < r; ++h) {
      const float w = scores[h * total + p];
      float* oh = out + h * d;
      for (int64_t c = 0; c < d; ++c) oh[c] += w * row[c];
    }
  }
}

}  // namespace

bool decode_attention_bf16_applies(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache) {
  return q.device().is_cpu() && k_cache.device().is_cpu() && q.scalar_type() == at::kFloat &&
         k_cache.scalar_type() == at::kBFloat16 && v_cache.scalar_type() == at::kBFloat16 && k_cache.dim() == 3 &&
         k_cache.is_contiguous() && v_cache.is_contiguous() && v_cache.sizes() == k_cache.sizes() &&
         q.numel() % (k_cache.size(0) * k_cache.size(2)) == 0;
}

at::Tensor decode_attention_bf16(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                 int64_t total, double scale) {
  GLMPIPE_CHECK(decode_attention_bf16_applies(q, k_cache, v_cache))
      << "decode_attention_bf16: need fp32 q [n, d] and contiguous bf16 caches [G, max_seq, d] on CPU, n % G == 0";
  const int64_t G = k_cache.size(0), max_seq = k_cache.size(1), d = k_cache.size(2);
  const int64_t n = q.numel() / d, r = n / G;  // query heads per group
  GLMPIPE_CHECK(total >= 1 && total <= max_seq)
      << "decode_attention_bf16: q " << q.sizes() << ", cache " << k_cache.sizes() << ", total " << total;
  auto qc = q.contiguous();
  auto out = at::empty({1, n * d}, q.options());
  const float* qp = qc.data_ptr<float>();
  const auto* kp = reinterpret_cast<const uint16_t*>(k_cache.data_ptr<at::BFloat16>());
  const auto* vp = reinterpret_cast<const uint16_t*>(v_cache.data_ptr<at::BFloat16>());
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  // Work items: a group's heads split into `chunks` runs so that few groups (GLM-4: 2) still keep
  // every thread busy; each item reads its group's panel once.
  const int64_t chunks = std::min<int64_t>(r, std::max<int64_t>(1, (at::get_num_threads() + G - 1) / G));
  const int64_t per = (r + chunks - 1) / chunks;
  at::parallel_for(0, G * chunks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(per * total), row(d);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / chunks, h0 = g * r + (i % chunks) * per, hn = std::min(per, g * r + r - h0);
      if (hn <= 0) continue;
      group_attention(qp + h0 * d, hn, kp + g * max_seq * d, vp + g * max_seq * d, total, d, sc, scores.data(),
                      row.data(), op + h0 * d);
    }
  });
  return out;
}

}  // namespace glmpipe
