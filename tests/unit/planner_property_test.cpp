// Property tests of make_plan on random models and random device sets (seeded, a few thousand
// cases): every unit exactly once, contiguous stages in rank order, no budget exceeded, bytes as
// documented in plan.h, and each strategy equal to the optimum found by brute force over all splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/error.h"
#include "planner/plan.h"

namespace glmpipe {
namespace {

struct Case {
  ModelMetadata meta;
  Deployment dep;
};

// Random small model: 1..9 blocks with uneven sizes, optional tied head; random ranks and budgets.
Case random_case(std::mt19937_64& rng) {
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Case c;
  ModelConfig cfg;
  cfg.num_layers = uni(1, 9);
  cfg.hidden_size = 8 * uni(1, 8);
  cfg.num_attention_heads = 2;
  cfg.inner_hidden_size = 4 * cfg.hidden_size;
  cfg.vocab_size = uni(16, 4096);
  const std::string dtype = uni(0, 1) ? "float32" : "float16";
  c.meta = synthesize_metadata(cfg, dtype, "");
  for (UnitInfo& u : c.meta.units) u.weight_bytes = uni(1, 100) * 1000;  // uneven, incl. head/embedding
  c.meta.lm_head_tied = uni(0, 3) == 0;
  if (c.meta.lm_head_tied) c.meta.units.back().weight_bytes = c.meta.units.front().weight_bytes;
  const int N = static_cast<int>(cfg.num_layers) + 2;
  const int R = static_cast<int>(uni(1, std::min(4, N)));
  c.dep.kv_cache = {uni(1, 3), uni(1, 64)};
  c.dep.gpu_reserve = uni(0, 20) * 1000;
  c.dep.cpu_reserve = uni(0, 20) * 1000;
  const int64_t total = c.meta.total_weight_bytes();
  for (int r = 0; r < R; ++r) {
    RankSpec s;
    s.device = uni(0, 1) ? "cpu" : "cuda:" + std::to_string(r);
    // Budgets around total/R: some cases are infeasible, some tight, some roomy.
    s.max_memory = std::max<int64_t>(1, total * uni(30, 250) / (100 * R) + uni(0, 200000));
    c.dep.ranks.push_back(s);
  }
  return c;
}

// Independent accounting of unit range [a, b) on rank r (formulas of plan.h).
StageBytes expected_bytes(const Case& c, int r, int a, int b) {
  const ModelMetadata& m = c.meta;
  const int L = m.num_layers(), N = L + 2;
  const int64_t B = c.dep.kv_cache.max_batch, S = c.dep.kv_cache.max_seq_len;
  const int64_t e = m.dtype == "float32" ? 4 : 2, H = m.config.hidden_size;
  StageBytes s;
  int blocks = 0;
  for (int u = a; u < b; ++u) {
    if (u == 0) s.weights += m.units[0].weight_bytes, s.work += H * e;  // work: one embedding row
    else if (u <= L) s.weights += m.units[static_cast<size_t>(u)].weight_bytes, ++blocks;
    else s.weights += m.units[static_cast<size_t>(L) + 1].weight_bytes + m.units[static_cast<size_t>(L) + 2].weight_bytes;
  }
  s.work += s.weights - (a == 0 ? m.units[0].weight_bytes : 0);  // blocks + head (the whole lm_head, tied or not)
  if (m.lm_head_tied && a == 0 && b == N) s.weights -= m.units.back().weight_bytes;
  s.kv_cache = blocks * 2 * B * S * H * e;
  const RankSpec& rs = c.dep.ranks[static_cast<size_t>(r)];
  if (rs.is_cpu()) {  // the cpu model (its terms: planner_memory_test against what a prefill allocates)
    s.activations = cpu_activation_bytes(m, c.dep, a == 0, blocks > 0, b == N, cpu_rank_threads(rs));
  } else {
    s.activations = 2 * B * S * H * e;
    if (blocks) s.activations += B * S * (3 * H + m.config.inner_hidden_size) * e + B * m.config.num_attention_heads * S * S * 4;
    if (b == N) s.activations += B * m.config.vocab_size * 4;
  }
  s.reserve = rs.device == "cpu" ? c.dep.cpu_reserve : c.dep.gpu_reserve;
  s.total = s.weights + s.kv_cache + s.activations + s.reserve;
  s.budget = rs.max_memory;
  return s;
}

struct Brute {
  bool feasible = false;
  double best_max = 1e300;         // balanced optimum
  double best_sumsq = 1e300;       // among plans at best_max
  int64_t min_cpu = INT64_MAX;     // auto: least weight bytes on cpu ranks ...
  double auto_max = 1e300;         // ... and then the least max fraction
  int64_t min_rank0 = INT64_MAX;   // balanced_low_0
  double low0_max = 1e300;
  std::vector<int> seq_bounds;     // lexicographically largest feasible split = sequential
  int64_t work_max = INT64_MAX;    // balanced_work: least largest per-token work ...
  double work_sumsq = 1e300;       // ... and then the least sum of squared work shares
};

void enumerate(const Case& c, int r, std::vector<int>& bounds, Brute& out) {
  const int R = static_cast<int>(c.dep.ranks.size()), N = c.meta.num_layers() + 2;
  if (r == R - 1) {
    bounds.push_back(N);
    double mx = 0, sq = 0, wsq = 0;
    int64_t cpu = 0, wmax = 0, wtotal = 0;
    bool ok = true;
    for (int k = 0; k < R; ++k) wtotal += expected_bytes(c, k, bounds[size_t(k)], bounds[size_t(k) + 1]).work;
    for (int k = 0; k < R && ok; ++k) {
      StageBytes s = expected_bytes(c, k, bounds[static_cast<size_t>(k)], bounds[static_cast<size_t>(k) + 1]);
      ok = s.total <= s.budget;
      double f = double(s.total) / double(s.budget);
      mx = std::max(mx, f);
      sq += f * f;
      wmax = std::max(wmax, s.work);
      wsq += std::pow(double(s.work) / double(wtotal), 2);
      if (c.dep.ranks[static_cast<size_t>(k)].device == "cpu") cpu += s.weights;
    }
    if (ok) {
      out.feasible = true;
      const double eps = 1e-12;
      if (mx < out.best_max - eps) out.best_max = mx, out.best_sumsq = sq;
      else if (mx <= out.best_max + eps) out.best_sumsq = std::min(out.best_sumsq, sq);
      if (cpu < out.min_cpu || (cpu == out.min_cpu && mx < out.auto_max)) out.min_cpu = cpu, out.auto_max = mx;
      int64_t w0 = expected_bytes(c, 0, 0, bounds[1]).weights;
      if (w0 < out.min_rank0 || (w0 == out.min_rank0 && mx < out.low0_max)) out.min_rank0 = w0, out.low0_max = mx;
      if (out.seq_bounds.empty() || bounds > out.seq_bounds) out.seq_bounds = bounds;
      if (wmax < out.work_max) out.work_max = wmax, out.work_sumsq = wsq;
      else if (wmax == out.work_max) out.work_sumsq = std::min(out.work_sumsq, wsq);
    }
    bounds.pop_back();
    return;
  }
  for (int b = bounds.back() + 1; b <= N - (R - 1 - r); ++b) {
    bounds.push_back(b);
    enumerate(c, r + 1, bounds, out);
    bounds.pop_back();
  }
}

void check_structure(const Case& c, const Plan& p, const std::string& ctx) {
  const int L = c.meta.num_layers();
  ASSERT_EQ(p.stages.size(), c.dep.ranks.size()) << ctx;
  std::vector<std::string> all;
  int expect_begin = 0;
  for (size_t r = 0; r < p.stages.size(); ++r) {
    const StagePlan& s = p.stages[r];
    EXPECT_EQ(s.rank, int(r)) << ctx;
    EXPECT_EQ(s.device, c.dep.ranks[r].device) << ctx;
    EXPECT_FALSE(s.units.empty()) << ctx;
    EXPECT_EQ(s.has_embedding, r == 0) << ctx;
    EXPECT_EQ(s.has_head, r + 1 == p.stages.size()) << ctx;
    EXPECT_EQ(s.layer_begin, expect_begin) << ctx;
    EXPECT_LE(s.layer_begin, s.layer_end) << ctx;
    expect_begin = s.layer_end;
    EXPECT_EQ(s.is_first(), r == 0);
    EXPECT_EQ(s.is_last(), r + 1 == p.stages.size());
    all.insert(all.end(), s.units.begin(), s.units.end());
    // Bytes match the independent accounting, and fit.
    const int a = s.has_embedding ? 0 : 1 + s.layer_begin;
    const int b = s.has_head ? L + 2 : 1 + s.layer_end;
    StageBytes e = expected_bytes(c, int(r), a, b);
    EXPECT_EQ(s.bytes.weights, e.weights) << ctx;
    EXPECT_EQ(s.bytes.kv_cache, e.kv_cache) << ctx;
    EXPECT_EQ(s.bytes.activations, e.activations) << ctx;
    EXPECT_EQ(s.bytes.total, e.total) << ctx;
    EXPECT_LE(s.bytes.total, s.bytes.budget) << ctx;
    EXPECT_EQ(s.bytes.headroom, s.bytes.budget - s.bytes.total) << ctx;
    EXPECT_EQ(s.bytes.work, e.work) << ctx;
  }
  EXPECT_EQ(expect_begin, L) << ctx;
  std::vector<std::string> want;  // every unit exactly once, in pipeline order
  for (const UnitInfo& u : c.meta.units) want.push_back(u.name);
  EXPECT_EQ(all, want) << ctx;
}

double max_fraction(const Plan& p) {
  double m = 0;
  for (const StagePlan& s : p.stages) m = std::max(m, double(s.bytes.total) / double(s.bytes.budget));
  return m;
}

TEST(PlannerProperty, RandomModelsAndDevicesMatchBruteForce) {
  std::mt19937_64 rng(20240601);
  int feasible = 0, infeasible = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Case c = random_case(rng);
    Brute bf;
    std::vector<int> bounds{0};
    enumerate(c, 0, bounds, bf);
    (bf.feasible ? feasible : infeasible)++;
    for (const char* strategy : {"balanced", "auto", "balanced_low_0", "sequential", "balanced_work"}) {
      c.dep.placement = strategy;
      const std::string ctx = "case " + std::to_string(iter) + " " + strategy;
      if (!bf.feasible) {
        EXPECT_THROW(make_plan(c.meta, c.dep), Error) << ctx;
        continue;
      }
      Plan p;
      ASSERT_NO_THROW(p = make_plan(c.meta, c.dep)) << ctx;
      check_structure(c, p, ctx);
      const double m = max_fraction(p);
      if (std::string(strategy) == "balanced") {
        EXPECT_NEAR(m, bf.best_max, 1e-9) << ctx;
        double sq = 0;
        for (const StagePlan& s : p.stages) sq += std::pow(double(s.bytes.total) / double(s.bytes.budget), 2);
        EXPECT_LE(sq, bf.best_sumsq + 1e-9) << ctx;
      } else if (std::string(strategy) == "auto") {
        int64_t cpu = 0;
        bool any_cpu = false, any_cuda = false;
        for (const StagePlan& s : p.stages) {
          if (s.device == "cpu") cpu += s.bytes.weights, any_cpu = true;
          else any_cuda = true;
        }
        if (any_cpu && any_cuda) {
          EXPECT_EQ(cpu, bf.min_cpu) << ctx;
          EXPECT_NEAR(m, bf.auto_max, 1e-9) << ctx;
        } else {
          EXPECT_NEAR(m, bf.best_max, 1e-9) << ctx;
        }
      } else if (std::string(strategy) == "balanced_work") {
        // Work is minimised, not memory: the largest stage work equals the brute-force optimum,
        // then the sum of squared work shares; the budgets only constrain (checked above).
        int64_t wmax = 0, wtotal = 0;
        double wsq = 0;
        for (const StagePlan& s : p.stages) wmax = std::max(wmax, s.bytes.work), wtotal += s.bytes.work;
        for (const StagePlan& s : p.stages) wsq += std::pow(double(s.bytes.work) / double(wtotal), 2);
        EXPECT_EQ(wmax, bf.work_max) << ctx;
        EXPECT_LE(wsq, bf.work_sumsq + 1e-9) << ctx;
      } else if (std::string(strategy) == "balanced_low_0") {
        EXPECT_EQ(p.stages[0].bytes.weights, bf.min_rank0) << ctx;
        EXPECT_NEAR(m, bf.low0_max, 1e-9) << ctx;
      } else {
        std::vector<int> got{0};
        for (const StagePlan& s : p.stages) got.push_back(s.has_head ? c.meta.num_layers() + 2 : 1 + s.layer_end);
        EXPECT_EQ(got, bf.seq_bounds) << ctx;
      }
    }
  }
  // The generator exercises both outcomes.
  EXPECT_GT(feasible, 500);
  EXPECT_GT(infeasible, 200);
}

// Homogeneous devices and uniform blocks: balanced block counts of the inner stages differ by at
// most one, and no stage is more than one block away from the best possible max/min spread.
TEST(PlannerProperty, UniformBlocksOnEqualDevicesAreWithinOneBlock) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 500; ++iter) {
    ModelConfig cfg;
    cfg.num_layers = std::uniform_int_distribution<int>(4, 40)(rng);
    cfg.hidden_size = 64;
    cfg.num_attention_heads = 4;
    cfg.inner_hidden_size = 256;
    cfg.vocab_size = 128;
    ModelMetadata m = synthesize_metadata(cfg, "float32", "");
    for (UnitInfo& u : m.units) u.weight_bytes = 1'000'000;
    m.units[m.units.size() - 2].weight_bytes = 0;  // final norm + lm_head = one block's bytes
    Deployment d;
    d.kv_cache = {1, 1};
    d.cpu_reserve = 0;
    const int R = std::uniform_int_distribution<int>(2, std::min<int>(6, int(cfg.num_layers) / 2))(rng);
    d.ranks.assign(static_cast<size_t>(R), RankSpec{"cpu", 1'000'000'000});
    Plan p = make_plan(m, d);
    // Units per stage (embedding and head weigh like a block here): max - min <= 1.
    size_t lo = SIZE_MAX, hi = 0;
    for (const StagePlan& s : p.stages) lo = std::min(lo, s.units.size() - (s.has_head ? 1 : 0)), hi = std::max(hi, s.units.size() - (s.has_head ? 1 : 0));
    EXPECT_LE(hi - lo, 1u) << "L=" << cfg.num_layers << " R=" << R;
  }
}

// A random valid explicit map reproduces its split exactly.
TEST(PlannerProperty, RandomExplicitMapsRoundTrip) {
  std::mt19937_64 rng(99);
  for (int iter = 0; iter < 500; ++iter) {
    Case c = random_case(rng);
    const int L = c.meta.num_layers(), N = L + 2, R = int(c.dep.ranks.size());
    for (RankSpec& r : c.dep.ranks) r.max_memory = int64_t{1} << 40;
    std::vector<int> cut;  // R-1 distinct cut points in 1..N-1
    for (int u = 1; u < N; ++u) cut.push_back(u);
    std::shuffle(cut.begin(), cut.end(), rng);
    cut.resize(static_cast<size_t>(R) - 1);
    std::sort(cut.begin(), cut.end());
    cut.insert(cut.begin(), 0);
    cut.push_back(N);
    c.dep.placement = "map";
    for (int r = 0; r < R; ++r) {
      const std::string rank = std::to_string(r);
      for (int u = cut[size_t(r)]; u < cut[size_t(r) + 1]; ++u) {
        if (u == 0) c.dep.placement_map.emplace_back("transformer.word_embeddings", rank);
        else if (u <= L) c.dep.placement_map.emplace_back("transformer.layers." + std::to_string(u - 1), rank);
        else c.dep.placement_map.emplace_back("lm_head", rank), c.dep.placement_map.emplace_back("transformer.final_layernorm", rank);
      }
    }
    std::shuffle(c.dep.placement_map.begin(), c.dep.placement_map.end(), rng);  // order of keys is free
    Plan p = make_plan(c.meta, c.dep);
    check_structure(c, p, "map case " + std::to_string(iter));
    for (int r = 0; r < R; ++r)
      EXPECT_EQ(p.stages[size_t(r)].has_head ? N : 1 + p.stages[size_t(r)].layer_end, cut[size_t(r) + 1]);
  }
}

}  // namespace
}  // namespace glmpipe
