#include "stage/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"

namespace glmpipe {

void guard_invalid_logits(at::Tensor& logits) {
  if (!at::isfinite(logits).all().item<bool>()) {
    logits.zero_();
    if (logits.numel() > 5) logits[5] = 5e4;
  }
}

int64_t Sampler::sample(at::Tensor logits, const std::vector<int64_t>& history) {
  GLMPIPE_CHECK(logits.dim() == 1 && logits.scalar_type() == at::kFloat) << "sampler expects fp32 [vocab] logits";
  logits = logits.contiguous();
  guard_invalid_logits(logits);
  float* x = logits.data_ptr<float>();
  const int64_t v = logits.numel();
  if (params_.repetition_penalty != 1.0) {
    const float p = static_cast<float>(params_.repetition_penalty);
    std::vector<int64_t> seen(history);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int64_t id : seen)
      if (id >= 0 && id < v) x[id] = x[id] < 0 ? x[id] * p : x[id] / p;
  }
  if (params_.greedy || params_.temperature <= 0) return std::max_element(x, x + v) - x;

  const float inv_t = static_cast<float>(1.0 / params_.temperature);
  // top-k by partial sort of indices (ties broken by lower id, deterministic).
  const int64_t k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, v) : v;
  std::vector<int64_t> idx(v);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  idx.resize(k);
  // softmax over the kept logits (temperature applied), then the top-p nucleus: keep the smallest
  // prefix whose mass reaches top_p (always at least one token).
  std::vector<double> prob(k);
  const double mx = x[idx[0]] * inv_t;
  double z = 0;
  for (int64_t i = 0; i < k; ++i) z += prob[i] = std::exp(x[idx[i]] * inv_t - mx);
  int64_t keep = k;
  if (params_.top_p < 1.0) {
    double cum = 0;
    for (int64_t i = 0; i < k; ++i) {
      cum += prob[i] / z;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= prob[i];
    if (u <= 0) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace glmpipe
