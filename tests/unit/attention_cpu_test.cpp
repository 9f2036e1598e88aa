// decode_attention_bf16 against the widen-the-cache ATen expression it replaces (the generic path of
// the attention block), at odd sizes: head_dim not a multiple of 16, totals 1, 2, 37, the full cache.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <string>

#include "model/attention.h"
#include "model/attention_cpu.h"

namespace glmpipe {
namespace {

// q [n, d], caches [G, max_seq, d]: query head h reads group h / (n / G), in double.
at::Tensor reference(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, int64_t total, double scale) {
  const int64_t G = kc.size(0), d = kc.size(2), n = q.size(0);
  auto keys = kc.narrow(1, 0, total).to(at::kDouble).repeat_interleave(n / G, 0);    // [n, P, d]
  auto values = vc.narrow(1, 0, total).to(at::kDouble).repeat_interleave(n / G, 0);  // [n, P, d]
  auto scores = at::matmul(q.to(at::kDouble).view({n, 1, d}), keys.transpose(1, 2)) * scale;  // [n, 1, P]
  return at::matmul(at::softmax(scores, -1), values).reshape({1, n * d});
}

TEST(DecodeAttentionBf16, MatchesWidenedCacheAttention) {
  at::manual_seed(21);
  struct Case {
    int64_t n, max_seq, d;
  };
  for (const Case& c : {Case{4, 40, 16}, Case{3, 64, 20}, Case{32, 50, 128}, Case{1, 5, 7}}) {
    auto kc = (at::randn({c.n, c.max_seq, c.d}) * 2).to(at::kBFloat16);
    auto vc = at::randn({c.n, c.max_seq, c.d}).to(at::kBFloat16);
    for (int64_t total : {int64_t(1), int64_t(2), std::min<int64_t>(37, c.max_seq), c.max_seq}) {
      auto q = at::randn({c.n, c.d});
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      auto y = decode_attention_bf16(q, kc, vc, total, scale);
      auto ref = reference(q, kc, vc, total, scale);
      const std::string what = "n " + std::to_string(c.n) + " d " + std::to_string(c.d) + " total " + std::to_string(total);
      ASSERT_EQ(y.sizes(), ref.sizes()) << what;
      // fp32 accumulation of values of magnitude ~1: 1e-5 relative to the largest |V| is ample
      EXPECT_LT((y.to(at::kDouble) - ref).abs().max().item<double>(), 1e-5 * vc.abs().max().item<float>() * 4) << what;
    }
  }
}

// Grouped KV (ChatGLM2/3, GLM-4: n query heads over G groups) at 1 and 2 threads, where the
// groups' heads are split into runs over threads.
TEST(DecodeAttentionBf16, GroupedHeadsMatchReference) {
  at::manual_seed(23);
  struct Case {
    int64_t n, G, max_seq, d;
  };
  const int saved = at::get_num_threads();
  for (int threads : {1, 2})
    for (const Case& c : {Case{32, 2, 40, 128}, Case{6, 3, 33, 20}, Case{5, 1, 9, 8}, Case{8, 8, 12, 16}}) {
      at::set_num_threads(threads);
      auto kc = (at::randn({c.G, c.max_seq, c.d}) * 2).to(at::kBFloat16);
      auto vc = at::randn({c.G, c.max_seq, c.d}).to(at::kBFloat16);
      for (int64_t total : {int64_t(1), int64_t(7), c.max_seq}) {
        auto q = at::randn({c.n, c.d});
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
        auto y = decode_attention_bf16(q, kc, vc, total, scale);
        auto ref = reference(q, kc, vc, total, scale);
        const std::string what = "n " + std::to_string(c.n) + " G " + std::to_string(c.G) + " total " +
                                 std::to_string(total) + " threads " + std::to_string(threads);
        EXPECT_LT((y.to(at::kDouble) - ref).abs().max().item<double>(), 1e-5 * vc.abs().max().item<float>() * 4)
            << what;
      }
    }
  at::set_num_threads(saved);
}

// The attention block's entry point takes the in-place path for a bf16 decode step and the widened
// path otherwise; both agree (a decode step equals the last row of the same step done by the
// generic path with S = 1 on a widened copy of the cache).
TEST(CachedAttention, DecodeOnBf16CacheEqualsWidenedPath) {
  at::manual_seed(24);
  const int64_t n = 8, G = 2, d = 16, max_seq = 20, past = 11;
  auto kc = at::randn({G, max_seq, d}).to(at::kBFloat16), vc = at::randn({G, max_seq, d}).to(at::kBFloat16);
  auto q = at::randn({1, n, d});
  const double scale = 0.25;
  auto fast = cached_attention(q, kc, vc, past, 0, scale, -1e30);
  auto widened = cached_attention(q, kc.to(at::kFloat), vc.to(at::kFloat), past, 0, scale, -1e30);
  ASSERT_EQ(fast.sizes(), widened.sizes());
  EXPECT_LT((fast - widened).abs().max().item<float>(), 1e-5);
  EXPECT_FALSE(at::equal(fast, cached_attention(q, kc, vc, past - 1, 0, scale, -1e30)));  // total matters
}

TEST(DecodeAttentionBf16, ThreadCountDoesNotChangeResultAndRejectsBadInput) {
  at::manual_seed(22);
  auto kc = at::randn({6, 30, 32}).to(at::kBFloat16), vc = at::randn({6, 30, 32}).to(at::kBFloat16);
  auto q = at::randn({6, 32});
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  auto y1 = decode_attention_bf16(q, kc, vc, 17, 0.2);
  at::set_num_threads(2);
  auto y2 = decode_attention_bf16(q, kc, vc, 17, 0.2);
  at::set_num_threads(saved);
  EXPECT_TRUE(at::equal(y1, y2));  // heads are independent
  EXPECT_FALSE(decode_attention_bf16_applies(q, kc.to(at::kFloat), vc));
  EXPECT_THROW(decode_attention_bf16(q, kc, vc, 31, 0.2), std::exception);  // beyond the cache
  EXPECT_THROW(decode_attention_bf16(at::randn({6, 31}), kc, vc, 3, 0.2), std::exception);
}

}  // namespace
}  // namespace glmpipe
