// make_plan: the cost model, the strategies (one exact DP + a greedy for `sequential`) and the
// infeasibility report. Formulas and strategy definitions are documented in plan.h.
#include "planner/plan.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <sstream>

#include "common/checked.h"
#include "common/error.h"
#include "planner/limits.h"
#include "planner/plan_internal.h"

namespace glmpipe {

// Byte counts are checked 64-bit products: one that overflows saturates at INT64_MAX, which no budget
// holds (attempt() names the keys when even a single block overflows).
int64_t kv_cache_bytes(const ModelMetadata& meta, const Deployment& dep, int blocks) {
  // The family's KV geometry: v1 caches every head, ChatGLM2/3 and GLM-4 only the KV groups.
  return (CheckedI64(blocks) * dep.kv_cache.max_batch * dep.kv_cache.max_seq_len * meta.kv_bytes_per_token_layer())
      .saturated();
}

int64_t activation_bytes(const ModelMetadata& meta, const Deployment& dep, bool has_blocks, bool has_head) {
  const CheckedI64 B = dep.kv_cache.max_batch, S = dep.kv_cache.max_seq_len, e = dtype_bytes(meta.dtype);
  const ModelConfig& c = meta.config;
  CheckedI64 bytes = CheckedI64(2) * B * S * c.hidden_size * e;  // received + sent hidden states
  if (has_blocks)
    bytes += B * S * block_activation_width(c) * e + B * c.num_attention_heads * S * S * 4;
  if (has_head) bytes += B * c.vocab_size * 4;
  return bytes.saturated();
}

std::vector<int64_t> unit_work_bytes(const ModelMetadata& meta) {
  std::vector<int64_t> w{meta.config.hidden_size * dtype_bytes(meta.dtype)};
  for (int i = 0; i < meta.num_layers(); ++i) w.push_back(meta.layer(i).weight_bytes);
  w.push_back(meta.final_layernorm().weight_bytes + meta.lm_head().weight_bytes);
  return w;
}

namespace detail {

CostModel::CostModel(const ModelMetadata& meta, const Deployment& dep) : meta_(meta), dep_(dep) {
  const int L = meta.num_layers();
  GLMPIPE_CHECK(L > 0 && meta.units.size() == static_cast<size_t>(L) + 3)
      << "model metadata: expected " << L + 3 << " units (embedding, " << L
      << " blocks, final_layernorm, lm_head), got " << meta.units.size();
  unit_weight_.push_back(meta.embedding().weight_bytes);
  for (int i = 0; i < L; ++i) unit_weight_.push_back(meta.layer(i).weight_bytes);
  unit_weight_.push_back(meta.final_layernorm().weight_bytes + meta.lm_head().weight_bytes);
  prefix_.assign(1, 0);
  work_prefix_.assign(1, 0);
  CheckedI64 sum = 0, work_sum = 0;
  for (int64_t w : unit_weight_) prefix_.push_back((sum += w).value());
  for (int64_t w : unit_work_bytes(meta)) work_prefix_.push_back((work_sum += w).value());
  GLMPIPE_CHECK(sum.ok() && work_sum.ok()) << "model metadata (" << meta.source
                                           << "): the weight bytes overflow 64 bits (config values out of range)";
  // Per rank (its threads) and stage shape (has_embedding, has_blocks, has_head): the DP asks many
  // times. cpu_activation_bytes is affine in the threads (a per-thread scratchpad), so two calls
  // per shape serve every rank.
  cpu_activations_.resize(dep.ranks.size());
  for (int k = 0; k < 8; ++k) {
    const int64_t a0 = cpu_activation_bytes(meta, dep, k & 4, k & 2, k & 1, 0);
    const int64_t per_thread = sat_add(cpu_activation_bytes(meta, dep, k & 4, k & 2, k & 1, 1), -a0);
    for (size_t r = 0; r < dep.ranks.size(); ++r)
      cpu_activations_[r][static_cast<size_t>(k)] =
          sat_add(a0, (CheckedI64(per_thread) * cpu_rank_threads(dep.ranks[r])).saturated());
  }
  for (int k = 0; k < 4; ++k) device_activations_[static_cast<size_t>(k)] = activation_bytes(meta, dep, k & 2, k & 1);
}

int64_t CostModel::activations(int rank, bool has_embedding, bool has_blocks, bool has_head) const {
  const bool cpu = dep_.ranks.at(static_cast<size_t>(rank)).is_cpu();
  return cpu ? cpu_activations_[static_cast<size_t>(rank)][static_cast<size_t>(has_embedding * 4 + has_blocks * 2 + has_head)]
             : device_activations_[static_cast<size_t>(has_blocks * 2 + has_head)];
}

int64_t CostModel::weights(int a, int b) const {
  int64_t w = prefix_[static_cast<size_t>(b)] - prefix_[static_cast<size_t>(a)];
  if (meta_.lm_head_tied && a == 0 && b == num_units()) w -= meta_.lm_head().weight_bytes;
  return w;
}

StageBytes CostModel::stage_bytes(int rank, int a, int b, bool disk) const {
  return stage_bytes(rank, a, b, std::vector<char>(static_cast<size_t>(num_units()), disk ? 1 : 0));
}

StageBytes CostModel::stage_bytes(int rank, int a, int b, const std::vector<char>& disk) const {
  const int L = meta_.num_layers();
  const int blocks = std::max(0, std::min(b, L + 1) - std::max(a, 1));
  StageBytes s;
  for (int u = a; u < b; ++u) {
    const int64_t w = unit_weight_[static_cast<size_t>(u)];
    (disk[static_cast<size_t>(u)] ? s.mmapped : s.weights) += w;
    if (disk[static_cast<size_t>(u)]) s.disk_window = std::max(s.disk_window, w);
  }
  // A tied head on the stage that holds the embedding uses that matrix: count it once, where the
  // embedding lives (resident or on disk).
  if (meta_.lm_head_tied && a == 0 && b == num_units())
    (disk[0] ? s.mmapped : s.weights) -= meta_.lm_head().weight_bytes;
  s.kv_cache = kv_cache_bytes(meta_, dep_, blocks);
  s.activations = activations(rank, a == 0, blocks > 0, b == num_units());
  s.reserve = dep_.reserve_of(static_cast<size_t>(rank));
  s.total = sat_add(sat_add(sat_add(s.weights, s.disk_window), s.kv_cache), sat_add(s.activations, s.reserve));
  s.budget = dep_.ranks[static_cast<size_t>(rank)].max_memory;
  s.headroom = s.budget - s.total;
  s.work = work(a, b);
  return s;
}

StagePlan CostModel::stage(int rank, int a, int b, const std::vector<char>& disk) const {
  const int L = meta_.num_layers();
  const RankSpec& spec = dep_.ranks[static_cast<size_t>(rank)];
  StagePlan st;
  st.rank = rank;
  st.device = spec.device;
  st.host = spec.host;
  st.threads = spec.threads;
  st.num_stages = num_ranks();
  st.has_embedding = a == 0;
  st.has_head = b == num_units();
  st.layer_begin = std::clamp(a - 1, 0, L);
  st.layer_end = std::clamp(b - 1, 0, L);
  auto add = [&](int u, const std::string& name) {
    st.units.push_back(name);
    if (disk[static_cast<size_t>(u)]) st.disk_units.push_back(name);
  };
  if (st.has_embedding) add(0, meta_.embedding().name);
  for (int i = st.layer_begin; i < st.layer_end; ++i) add(i + 1, meta_.layer(i).name);
  if (st.has_head) {
    st.units.push_back(meta_.final_layernorm().name);  // norms stay resident, also on a disk stage
    add(L + 1, meta_.lm_head().name);
  }
  st.disk_offload = !st.disk_units.empty();
  st.bytes = stage_bytes(rank, a, b, disk);
  return st;
}

std::vector<char> disk_mask(const std::vector<int>& bounds, int num_units, int disk_rank) {
  std::vector<char> disk(static_cast<size_t>(num_units), 0);
  if (disk_rank >= 0)
    for (int u = bounds[static_cast<size_t>(disk_rank)]; u < bounds[static_cast<size_t>(disk_rank) + 1]; ++u)
      disk[static_cast<size_t>(u)] = 1;
  return disk;
}

Plan assemble_plan(const CostModel& cm, const std::vector<int>& bounds, const std::vector<char>& disk) {
  Plan p;
  const Deployment& dep = cm.dep();
  p.max_batch = dep.kv_cache.max_batch;
  p.max_seq_len = dep.kv_cache.max_seq_len;
  p.dtype = cm.meta().dtype;
  p.quantization = cm.meta().quantization;
  p.strategy = dep.placement;
  p.model_source = cm.meta().source;
  p.model_family = family_name(cm.meta().config.family);
  p.kv_heads = cm.meta().config.kv_heads();
  p.head_dim = cm.meta().config.head_dim();
  p.kv_bytes_per_token = cm.meta().kv_bytes_per_token_layer() * cm.meta().num_layers();
  for (int r = 0; r < cm.num_ranks(); ++r)
    p.stages.push_back(cm.stage(r, bounds[static_cast<size_t>(r)], bounds[static_cast<size_t>(r) + 1], disk));
  return p;
}

}  // namespace detail

namespace {

using detail::CostModel;

// Lexicographic DP over contiguous splits. Each rank gets a non-empty unit run. Two additive
// penalties come first (disk bytes, then the strategy's), then the largest per-stage measure
// (total/budget; balanced_work: work/total work); a second pass keeps that optimum as a cap and
// minimises the sum of squared measures instead (exact, since every criterion of each pass is
// additive or a max). `relaxed` ignores the budgets (diagnostics).
struct Objective {
  std::function<int64_t(int, int, int)> pen1, pen2;  // (rank, a, b) -> penalty
  bool by_work = false;                              // measure = work share instead of total/budget
  int disk_rank = -1;
  bool relaxed = false;
};

struct Key {
  bool valid = false;
  int64_t p1 = 0, p2 = 0;
  double x = 0;  // pass 1: max fraction; pass 2: sum of squared fractions
  bool operator<(const Key& o) const {
    if (valid != o.valid) return valid;
    if (p1 != o.p1) return p1 < o.p1;
    if (p2 != o.p2) return p2 < o.p2;
    return x < o.x;
  }
};

bool dp_pass(const CostModel& cm, const Objective& obj, bool second, double cap, std::vector<int>& bounds,
             double& best_max) {
  const int R = cm.num_ranks(), N = cm.num_units();
  std::vector<std::vector<Key>> best(static_cast<size_t>(R) + 1, std::vector<Key>(static_cast<size_t>(N) + 1));
  std::vector<std::vector<int>> from(best.size(), std::vector<int>(static_cast<size_t>(N) + 1, -1));
  best[0][0].valid = true;
  for (int r = 0; r < R; ++r) {
    for (int i = r + 1; i <= N - (R - 1 - r); ++i) {
      for (int j = r; j < i; ++j) {
        const Key& prev = best[static_cast<size_t>(r)][static_cast<size_t>(j)];
        if (!prev.valid) continue;
        StageBytes s = cm.stage_bytes(r, j, i, r == obj.disk_rank);
        if (!obj.relaxed && s.total > s.budget) continue;
        double frac = obj.by_work ? static_cast<double>(s.work) / static_cast<double>(std::max<int64_t>(1, cm.total_work()))
                                  : static_cast<double>(s.total) / static_cast<double>(s.budget);
        if (second && frac > cap) continue;
        Key k = prev;
        k.p1 += obj.pen1 ? obj.pen1(r, j, i) : 0;
        k.p2 += obj.pen2 ? obj.pen2(r, j, i) : 0;
        k.x = second ? prev.x + frac * frac : std::max(prev.x, frac);
        Key& cur = best[static_cast<size_t>(r) + 1][static_cast<size_t>(i)];
        if (k < cur) {
          cur = k;
          from[static_cast<size_t>(r) + 1][static_cast<size_t>(i)] = j;
        }
      }
    }
  }
  const Key& end = best[static_cast<size_t>(R)][static_cast<size_t>(N)];
  if (!end.valid) return false;
  best_max = end.x;
  bounds.assign(static_cast<size_t>(R) + 1, 0);
  bounds[static_cast<size_t>(R)] = N;
  for (int r = R; r > 0; --r)
    bounds[static_cast<size_t>(r) - 1] = from[static_cast<size_t>(r)][static_cast<size_t>(bounds[static_cast<size_t>(r)])];
  return true;
}

bool optimize(const CostModel& cm, const Objective& obj, std::vector<int>& bounds) {
  double m = 0, unused = 0;
  if (!dp_pass(cm, obj, false, 0, bounds, m)) return false;
  return dp_pass(cm, obj, true, m * (1 + 1e-12) + 1e-15, bounds, unused);
}

// `sequential`: each rank in order takes the longest run that fits while the ranks after it can
// still hold the rest (the lexicographically largest feasible split). With uneven units a plain
// greedy fill can strand a later rank, hence the suffix-feasibility table.
bool sequential(const CostModel& cm, int disk_rank, std::vector<int>& bounds) {
  const int R = cm.num_ranks(), N = cm.num_units();
  // ok[r][i]: ranks r..R-1 can hold units [i, N), one non-empty run each.
  std::vector<std::vector<char>> ok(static_cast<size_t>(R) + 1, std::vector<char>(static_cast<size_t>(N) + 1, 0));
  ok[static_cast<size_t>(R)][static_cast<size_t>(N)] = 1;
  for (int r = R - 1; r >= 0; --r)
    for (int i = 0; i < N; ++i)
      for (int j = i + 1; j <= N && !ok[static_cast<size_t>(r)][static_cast<size_t>(i)]; ++j)
        ok[static_cast<size_t>(r)][static_cast<size_t>(i)] =
            ok[static_cast<size_t>(r) + 1][static_cast<size_t>(j)] && cm.fits(r, i, j, r == disk_rank);
  if (!ok[0][0]) return false;
  bounds.assign(1, 0);
  for (int r = 0; r < R; ++r) {
    const int a = bounds.back();
    int b = N;
    while (!(ok[static_cast<size_t>(r) + 1][static_cast<size_t>(b)] && cm.fits(r, a, b, r == disk_rank))) --b;
    bounds.push_back(b);
  }
  return true;
}

int last_cpu_rank(const Deployment& dep) {
  for (int r = static_cast<int>(dep.ranks.size()) - 1; r >= 0; --r)
    if (dep.ranks[static_cast<size_t>(r)].is_cpu()) return r;
  return -1;
}

Objective strategy_objective(const CostModel& cm, int disk_rank) {
  const Deployment& dep = cm.dep();
  Objective obj;
  obj.disk_rank = disk_rank;
  if (disk_rank >= 0)
    obj.pen1 = [&cm, disk_rank](int r, int a, int b) { return r == disk_rank ? cm.weights(a, b) : 0; };
  bool any_cuda = false, any_cpu = false;
  for (const RankSpec& r : dep.ranks) (r.is_cuda() ? any_cuda : any_cpu) = true;
  if (dep.placement == "auto" && any_cuda && any_cpu)
    obj.pen2 = [&cm, &dep](int r, int a, int b) {
      return dep.ranks[static_cast<size_t>(r)].is_cpu() ? cm.weights(a, b) : 0;
    };
  if (dep.placement == "balanced_low_0")
    obj.pen2 = [&cm](int r, int a, int b) { return r == 0 ? cm.weights(a, b) : 0; };
  obj.by_work = dep.placement == "balanced_work";
  return obj;
}

// Why the budgets cannot hold the model: the over-budget stages of the best split without budgets.
std::string shortfall(const CostModel& cm) {
  Objective obj;
  obj.relaxed = true;
  std::vector<int> b;
  double m = 0;
  dp_pass(cm, obj, false, 0, b, m);
  std::ostringstream os;
  os << "the most even split still overfills";
  for (int r = 0; r < cm.num_ranks(); ++r) {
    StageBytes s = cm.stage_bytes(r, b[static_cast<size_t>(r)], b[static_cast<size_t>(r) + 1], false);
    if (s.total <= s.budget) continue;
    os << " rank " << r << " (" << cm.dep().ranks[static_cast<size_t>(r)].device << "): needs "
       << format_bytes(s.total) << " (weights " << format_bytes(s.weights) << ", kv_cache "
       << format_bytes(s.kv_cache) << ", activations " << format_bytes(s.activations) << ", reserve "
       << format_bytes(s.reserve) << ") of max_memory " << format_bytes(s.budget) << ", short by "
       << s.total - s.budget << " bytes (" << format_bytes(s.total - s.budget) << ");";
  }
  return os.str();
}

struct Attempt {
  bool ok = false;
  Plan plan;
  std::string why;
};

Attempt attempt(const ModelMetadata& meta, const Deployment& dep) {
  const std::string& file = dep.source_file.empty() ? std::string("deployment") : dep.source_file;
  GLMPIPE_CHECK(!dep.ranks.empty()) << file << ": ranks: no ranks";
  GLMPIPE_CHECK(dep.kv_cache.max_batch >= 1 && dep.kv_cache.max_seq_len >= 1)
      << file << ": kv_cache: max_batch and max_seq_len must be >= 1";
  GLMPIPE_CHECK(dep.kv_cache.max_batch <= limits::kMaxBatch && dep.kv_cache.max_seq_len <= limits::kMaxSeqLen)
      << file << ": kv_cache: max_batch " << dep.kv_cache.max_batch << " / max_seq_len " << dep.kv_cache.max_seq_len
      << " exceed the limits (max_batch <= " << limits::kMaxBatch << ", max_seq_len <= " << limits::kMaxSeqLen << ")";
  GLMPIPE_CHECK(meta.config.num_layers <= limits::kMaxLayers)
      << meta.source << ": num_layers " << meta.config.num_layers << " exceeds the planner's limit of "
      << limits::kMaxLayers << " blocks";
  GLMPIPE_CHECK(static_cast<int64_t>(dep.ranks.size()) <= limits::kMaxRanks)
      << file << ": ranks: " << dep.ranks.size() << " ranks exceed the limit of " << limits::kMaxRanks;
  // One block's KV cache and working set must at least be countable: a product past 2^63 is a
  // config error, named here, not a byte total that wraps negative and "fits".
  GLMPIPE_CHECK(kv_cache_bytes(meta, dep, 1) < INT64_MAX && activation_bytes(meta, dep, true, true) < INT64_MAX &&
                cpu_activation_bytes(meta, dep, true, true, true, 1) < INT64_MAX)
      << file << ": kv_cache.max_batch " << dep.kv_cache.max_batch << " x kv_cache.max_seq_len "
      << dep.kv_cache.max_seq_len << ": one block's KV cache or activations overflow 64-bit byte counts"
      << " (no device holds them); lower kv_cache.max_seq_len or kv_cache.max_batch";
  CostModel cm(meta, dep);
  GLMPIPE_CHECK(cm.num_ranks() <= cm.num_units())
      << file << ": ranks: " << cm.num_ranks() << " ranks but the model has only " << cm.num_units()
      << " placement units (embedding, " << meta.num_layers()
      << " blocks, head); every rank needs at least one unit";
  for (size_t r = 0; r < dep.ranks.size(); ++r)
    GLMPIPE_CHECK(dep.ranks[r].max_memory > 0) << file << ": ranks[" << r << "].max_memory must be > 0";
  const int disk_cpu = dep.disk.enabled ? last_cpu_rank(dep) : -1;
  Attempt at;
  std::vector<int> bounds;
  if (dep.placement == "map") {
    detail::MapPlacement mp = detail::map_boundaries(meta, dep);
    std::ostringstream os;
    for (int r = 0; r < cm.num_ranks(); ++r) {
      const int a = mp.bounds[static_cast<size_t>(r)], b = mp.bounds[static_cast<size_t>(r) + 1];
      if (cm.fits(r, a, b, mp.disk)) continue;
      if (r == disk_cpu && cm.fits(r, a, b, true)) {  // the disk tier takes the whole cpu stage
        for (int u = a; u < b; ++u) mp.disk[static_cast<size_t>(u)] = 1;
        continue;
      }
      StageBytes s = cm.stage_bytes(r, a, b, mp.disk);
      os << " rank " << r << " (" << dep.ranks[static_cast<size_t>(r)].device << ") needs "
         << format_bytes(s.total) << " (weights " << format_bytes(s.weights) << ", kv_cache "
         << format_bytes(s.kv_cache) << ", activations " << format_bytes(s.activations) << ", reserve "
         << format_bytes(s.reserve) << ") of max_memory " << format_bytes(s.budget) << ", short by "
         << s.total - s.budget << " bytes (" << format_bytes(s.total - s.budget) << ");";
    }
    at.why = os.str().empty() ? "" : "the placement map overfills" + os.str();
    at.ok = at.why.empty();
    if (at.ok) at.plan = detail::assemble_plan(cm, mp.bounds, mp.disk);
    return at;
  }
  GLMPIPE_CHECK(dep.placement == "auto" || dep.placement == "balanced" || dep.placement == "balanced_low_0" ||
                dep.placement == "sequential" || dep.placement == "balanced_work")
      << file << ": placement: \"" << dep.placement
      << "\" (allowed: auto, balanced, balanced_low_0, sequential, balanced_work, or a map)";
  for (int disk_rank : {-1, disk_cpu}) {
    if (at.ok || (disk_rank < 0 && !at.why.empty())) break;  // 2nd round: only with a disk rank
    if (dep.placement == "sequential")
      at.ok = sequential(cm, disk_rank, bounds);
    else
      at.ok = optimize(cm, strategy_objective(cm, disk_rank), bounds);
    if (at.ok) at.plan = detail::assemble_plan(cm, bounds, detail::disk_mask(bounds, cm.num_units(), disk_rank));
    else if (at.why.empty()) at.why = shortfall(cm);
  }
  return at;
}

bool fits_plan(const ModelMetadata& meta, const Deployment& dep) {
  try {
    return attempt(meta, dep).ok;
  } catch (const Error&) {  // e.g. one more rank than units
    return false;
  }
}

std::string suggestions(const ModelMetadata& meta, const Deployment& dep) {
  std::vector<std::string> fits;
  // The largest max_seq_len that fits (feasibility only grows as the sequence shrinks).
  {
    Deployment d = dep;
    int64_t lo = 0, hi = dep.kv_cache.max_seq_len - 1;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo + 1) / 2;
      d.kv_cache.max_seq_len = mid;
      if (fits_plan(meta, d)) lo = mid; else hi = mid - 1;
    }
    if (lo >= 1)
      fits.push_back("kv_cache.max_seq_len: " + std::to_string(lo) + " (or fewer tokens; at max_batch " +
                     std::to_string(dep.kv_cache.max_batch) + ")");
  }
  for (const char* s : {"auto", "balanced", "balanced_low_0", "sequential"}) {
    if (dep.placement == s) continue;
    Deployment d = dep;
    d.placement = s;
    if (fits_plan(meta, d)) fits.push_back(std::string("placement: ") + s);
  }
  if (meta.quantization.empty())
    for (const char* q : {"int8", "int4"}) {
      if (fits_plan(synthesize_metadata(meta.config, meta.dtype, q), dep)) {
        fits.push_back(std::string("model.quantization: ") + q);
        break;
      }
    }
  {
    size_t big = 0;
    for (size_t i = 1; i < dep.ranks.size(); ++i)
      if (dep.ranks[i].max_memory > dep.ranks[big].max_memory) big = i;
    Deployment d = dep;
    d.ranks.push_back(dep.ranks[big]);
    if (d.placement == "map") d.placement = "balanced";
    if (fits_plan(meta, d))
      fits.push_back("one more rank like ranks[" + std::to_string(big) + "] (" + dep.ranks[big].device +
                     ", " + format_bytes(dep.ranks[big].max_memory) + ")");
  }
  if (!dep.disk.enabled) {
    Deployment d = dep;
    d.disk.enabled = true;
    if (last_cpu_rank(dep) >= 0 && fits_plan(meta, d))
      fits.push_back("the disk tier (disk: {path: ...}; the last cpu rank mmaps its weights)");
    else if (last_cpu_rank(dep) < 0)
      fits.push_back("maybe: a cpu rank with the disk tier (disk: {path: ...})");
  }
  std::string out;
  for (const std::string& f : fits) out += (out.empty() ? "" : " | ") + f;
  return out.empty() ? "nothing tried fits (smaller max_seq_len, other strategies, int8/int4, one more "
                       "device, disk tier)"
                     : out;
}

}  // namespace

Plan make_plan(const ModelMetadata& meta, const Deployment& dep) {
  Attempt at = attempt(meta, dep);
  if (at.ok) return at.plan;
  const std::string file = dep.source_file.empty() ? std::string("deployment") : dep.source_file;
  const std::string would_fit = suggestions(meta, dep);  // not inside the throwing stream below
  GLMPIPE_FAIL() << file << ": no placement fits (model " << meta.source << ", " << meta.dtype
                 << (meta.quantization.empty() ? "" : " " + meta.quantization) << ", weights "
                 << format_bytes(meta.total_weight_bytes()) << ", kv_cache " << dep.kv_cache.max_batch
                 << " x " << dep.kv_cache.max_seq_len << " tokens, placement " << dep.placement
                 << (dep.disk.enabled ? ", disk tier on" : "") << "): " << at.why
                 << " Would fit: " << would_fit;
  return {};
}

}  // namespace glmpipe
