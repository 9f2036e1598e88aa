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

namespace {
// log of sum(exp(x)) over x[0, v), in double.
double log_sum_exp(const float* x, int64_t v) {
  const double mx = *std::max_element(x, x + v);
  double z = 0;
  for (int64_t i = 0; i < v; ++i) z += std::exp(double(x[i]) - mx);
  return mx + std::log(z);
}

std::vector<int64_t> top_ids(const float* x, int64_t v, int64_t k) {
  k = std::min(k, v);
  std::vector<int64_t> idx(v);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  idx.resize(k);
  return idx;
}
}  // namespace

double log_softmax_at(const float* x, int64_t v, int64_t id) { return double(x[id]) - log_sum_exp(x, v); }

std::vector<std::pair<int64_t, double>> top_log_softmax(const float* x, int64_t v, int64_t top) {
  const double lse = log_sum_exp(x, v);
  std::vector<std::pair<int64_t, double>> out;
  for (int64_t id : top_ids(x, v, top)) out.emplace_back(id, double(x[id]) - lse);
  return out;
}

void Sampler::process(float* x, int64_t v, const std::vector<int64_t>& history) const {
  if (params_.repetition_penalty != 1.0) {
    const float p = static_cast<float>(params_.repetition_penalty);
    std::vector<int64_t> seen(history);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int64_t id : seen)
      if (id >= 0 && id < v) x[id] = x[id] < 0 ? x[id] * p : x[id] / p;
  }
  if (params_.frequency_penalty != 0 || params_.presence_penalty != 0)
    for (const auto& [id, n] : counts_)
      if (id >= 0 && id < v)
        x[id] -= static_cast<float>(params_.frequency_penalty * double(n) + params_.presence_penalty);
  for (const auto& [id, b] : params_.logit_bias)
    if (id >= 0 && id < v) x[id] += static_cast<float>(b);
}

SampleResult Sampler::sample(at::Tensor logits, const std::vector<int64_t>& history) {
  GLMPIPE_CHECK(logits.dim() == 1 && logits.scalar_type() == at::kFloat) << "sampler expects fp32 [vocab] logits";
  logits = logits.contiguous();
  guard_invalid_logits(logits);
  float* x = logits.data_ptr<float>();
  const int64_t v = logits.numel();
  process(x, v, history);
  const int64_t want = params_.top_logprobs;
  SampleResult res;
  if (params_.is_greedy()) {
    res.token = std::max_element(x, x + v) - x;
    if (want >= 0) {
      res.logprob = log_softmax_at(x, v, res.token);
      res.top = top_log_softmax(x, v, want);
    }
    counts_[res.token] += 1;
    return res;
  }
  const float inv_t = static_cast<float>(1.0 / params_.temperature);
  // top-k by partial sort of indices (ties broken by lower id, deterministic); also enough ids for
  // the requested alternatives.
  const int64_t k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, v) : v;
  std::vector<int64_t> idx = top_ids(x, v, std::max<int64_t>(k, want));
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
  int64_t chosen = keep - 1;
  for (int64_t i = 0; i < keep; ++i) {
    u -= prob[i];
    if (u <= 0) {
      chosen = i;
      break;
    }
  }
  res.token = idx[chosen];
  if (want >= 0) {
    auto lp = [&](int64_t i) { return i < keep ? std::log(prob[i] / mass) : kExcludedLogprob; };
    res.logprob = lp(chosen);
    for (int64_t i = 0; i < want && i < static_cast<int64_t>(idx.size()); ++i) res.top.emplace_back(idx[i], lp(i));
  }
  counts_[res.token] += 1;
  return res;
}

}  // namespace glmpipe
