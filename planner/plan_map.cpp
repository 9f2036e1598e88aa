// The explicit placement map (accelerate's device_map key style) -> validated stage boundaries.
//
//   placement:
//     transformer.word_embeddings: 0       # rank index ...
//     transformer.layers.0-20: 0           # inclusive block range
//     transformer.layers.21: cuda:1        # ... or a device naming exactly one rank
//     transformer.layers.22-27: cpu
//     transformer.final_layernorm: cpu     # must go with lm_head
//     lm_head: cpu
//
// Errors: unknown names, split blocks (transformer.layers.3.mlp), overlaps, gaps, units out of rank
// order (stages are contiguous, in rank order), devices/ranks not in the deployment, empty ranks.
#include <cstdlib>
#include <sstream>

#include "common/error.h"
#include "planner/plan_internal.h"

namespace glmpipe::detail {
namespace {

bool parse_int(const std::string& s, long& v) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  v = std::strtol(s.c_str(), nullptr, 10);
  return true;
}

// Placement units named by `key` as [first, last] (inclusive); final_layernorm and lm_head both give
// the head unit L+1 (`is_norm` tells which).
void key_units(const std::string& where, const std::string& key, int L, int& first, int& last,
               bool& is_norm) {
  static const std::string kLayers = "transformer.layers.";
  is_norm = false;
  const char* units_hint =
      " (allowed: transformer.word_embeddings, transformer.layers.N, transformer.layers.A-B, "
      "transformer.final_layernorm, lm_head)";
  if (key == "transformer.word_embeddings") { first = last = 0; return; }
  if (key == "transformer.final_layernorm" || key == "lm_head") {
    first = last = L + 1;
    is_norm = key != "lm_head";
    return;
  }
  for (const char* whole : {"transformer.word_embeddings.", "transformer.final_layernorm.", "lm_head."})
    GLMPIPE_CHECK(key.rfind(whole, 0) != 0)
        << where << ": \"" << key << "\" is part of a unit; units are never split" << units_hint;
  GLMPIPE_CHECK(key.rfind(kLayers, 0) == 0) << where << ": unknown module \"" << key << "\"" << units_hint;
  std::string rest = key.substr(kLayers.size());
  size_t dot = rest.find('.');
  std::string id = rest.substr(0, dot);
  if (dot != std::string::npos) {
    long v = 0;
    GLMPIPE_CHECK(!parse_int(id, v))
        << where << ": \"" << key << "\" splits the GLMBlock transformer.layers." << id
        << " (blocks are never split: no_split_module_classes=[GLMBlock]); map the whole block";
  }
  size_t dash = id.find('-');
  long a = 0, b = 0;
  bool ok = dash == std::string::npos ? parse_int(id, a) && (b = a, true)
                                      : parse_int(id.substr(0, dash), a) && parse_int(id.substr(dash + 1), b);
  GLMPIPE_CHECK(ok && dot == std::string::npos)
      << where << ": unknown module \"" << key << "\"" << units_hint;
  GLMPIPE_CHECK(a <= b) << where << ": empty block range " << a << "-" << b << " (write A-B with A <= B)";
  GLMPIPE_CHECK(b < L) << where << ": block " << b << " does not exist (the model has " << L
                       << " blocks: transformer.layers.0-" << L - 1 << ")";
  first = 1 + static_cast<int>(a);
  last = 1 + static_cast<int>(b);
}

int resolve_rank(const std::string& where, const std::string& value, const Deployment& dep) {
  const int R = static_cast<int>(dep.ranks.size());
  long idx = 0;
  if (parse_int(value, idx)) {
    GLMPIPE_CHECK(idx < R) << where << ": rank " << idx << " is not in the deployment (ranks 0.."
                           << R - 1 << ")";
    return static_cast<int>(idx);
  }
  std::vector<int> hits;
  std::string devices;
  for (int r = 0; r < R; ++r) {
    if (dep.ranks[static_cast<size_t>(r)].device == value) hits.push_back(r);
    devices += (r ? ", " : "") + dep.ranks[static_cast<size_t>(r)].device;
  }
  GLMPIPE_CHECK(!hits.empty()) << where << ": device \"" << value << "\" is not in the deployment (ranks: "
                               << devices << "; use a device of one rank or a rank index)";
  GLMPIPE_CHECK(hits.size() == 1) << where << ": device \"" << value << "\" names " << hits.size()
                                  << " ranks; use a rank index instead";
  return hits.front();
}

std::string unit_name(const ModelMetadata& meta, int u) {
  if (u == 0) return meta.embedding().name;
  if (u <= meta.num_layers()) return meta.layer(u - 1).name;
  return "the head (transformer.final_layernorm + lm_head)";
}

}  // namespace

std::vector<int> map_boundaries(const ModelMetadata& meta, const Deployment& dep) {
  const std::string file = dep.source_file.empty() ? std::string("deployment") : dep.source_file;
  const int L = meta.num_layers(), N = L + 2, R = static_cast<int>(dep.ranks.size());
  GLMPIPE_CHECK(!dep.placement_map.empty()) << file << ": placement: the map is empty";
  std::vector<int> rank_of(static_cast<size_t>(N), -1);
  std::vector<std::string> key_of(static_cast<size_t>(N));
  int norm_rank = -1, head_rank = -1;
  for (const auto& [key, value] : dep.placement_map) {
    const std::string where = file + ": placement." + key;
    int first = 0, last = 0;
    bool is_norm = false;
    key_units(where, key, L, first, last, is_norm);
    const int r = resolve_rank(where, value, dep);
    if (first == L + 1) {
      int& slot = is_norm ? norm_rank : head_rank;
      GLMPIPE_CHECK(slot < 0) << where << ": mapped twice";
      slot = r;
      if (norm_rank >= 0 && head_rank >= 0)
        GLMPIPE_CHECK(norm_rank == head_rank)
            << where << ": transformer.final_layernorm (rank " << norm_rank << ") must go with lm_head (rank "
            << head_rank << ")";
      if (rank_of[static_cast<size_t>(L + 1)] >= 0) continue;
    }
    for (int u = first; u <= last; ++u) {
      GLMPIPE_CHECK(rank_of[static_cast<size_t>(u)] < 0)
          << where << ": overlaps placement." << key_of[static_cast<size_t>(u)] << " on "
          << unit_name(meta, u);
      rank_of[static_cast<size_t>(u)] = r;
      key_of[static_cast<size_t>(u)] = key;
    }
  }
  GLMPIPE_CHECK((norm_rank < 0) == (head_rank < 0))
      << file << ": placement: " << (norm_rank < 0 ? "transformer.final_layernorm" : "lm_head")
      << " is missing (transformer.final_layernorm must go with lm_head)";
  std::string missing;
  for (int u = 0; u < N; ++u)
    if (rank_of[static_cast<size_t>(u)] < 0) missing += (missing.empty() ? "" : ", ") + unit_name(meta, u);
  GLMPIPE_CHECK(missing.empty()) << file << ": placement: gap: no rank for " << missing
                                 << " (the map must cover every unit)";
  for (int u = 1; u < N; ++u) {
    const int prev = rank_of[static_cast<size_t>(u) - 1], cur = rank_of[static_cast<size_t>(u)];
    GLMPIPE_CHECK(cur >= prev) << file << ": placement." << key_of[static_cast<size_t>(u)] << ": "
                               << unit_name(meta, u) << " on rank " << cur << " follows "
                               << unit_name(meta, u - 1) << " on rank " << prev
                               << " (stages are contiguous and in rank order)";
  }
  std::vector<int> bounds(static_cast<size_t>(R) + 1, -1);
  bounds[0] = 0;
  bounds[static_cast<size_t>(R)] = N;
  for (int u = 0; u < N; ++u)
    if (u == 0 || rank_of[static_cast<size_t>(u)] != rank_of[static_cast<size_t>(u) - 1])
      bounds[static_cast<size_t>(rank_of[static_cast<size_t>(u)])] = u;
  for (int r = 0; r < R; ++r)
    GLMPIPE_CHECK(bounds[static_cast<size_t>(r)] >= 0 || r == 0)
        << file << ": placement: ranks[" << r << "] (" << dep.ranks[static_cast<size_t>(r)].device
        << ") gets no unit (every rank needs at least one; remove the rank)";
  GLMPIPE_CHECK(rank_of[0] == 0) << file << ": placement: ranks[0] (" << dep.ranks[0].device
                                 << ") gets no unit (every rank needs at least one; remove the rank)";
  return bounds;
}

}  // namespace glmpipe::detail
