// The explicit placement map (accelerate's device_map) -> validated stage boundaries and disk units.
//
//   placement:                             # keys: any module prefix, as accelerate resolves them
//     "": cpu                              # the whole model ...
//     transformer: 0                       # ... or a parent module (word_embeddings, layers, final_layernorm)
//     transformer.layers: 1                # ... or every block
//     transformer.layers.3: cuda:1         # ... or one block
//     transformer.layers.21-27: cpu        # glmpipe's own inclusive block range
//     lm_head: disk                        # value: rank index, a device of exactly one rank, or disk
//
// Resolution is accelerate's: each module takes the value of the longest key that is a prefix of
// its name (`""` covers everything). `disk` puts the unit on the last cpu rank with its weights
// served from disk (mmapped, see plan.h). Errors: unknown names, keys inside a unit (they split a
// block: no_split_module_classes=[GLMBlock]), two keys of the same depth for one module (overlap),
// modules no key covers (gap), final_layernorm apart from lm_head, units out of rank order (stages
// are contiguous, in rank order), devices/ranks not in the deployment, empty ranks.
#include <algorithm>
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

bool covers(const std::string& key, const std::string& module) {
  return key.empty() || module == key || module.rfind(key + ".", 0) == 0;
}

int depth(const std::string& key) {
  return key.empty() ? 0 : 1 + static_cast<int>(std::count(key.begin(), key.end(), '.'));
}

// One map entry resolved to modules (indices into ModelMetadata::units).
struct Entry {
  std::string key;
  int depth = 0;
  std::vector<int> modules;
};

// "P.A-B" where P.A is a block name: blocks A..B (inclusive), else false.
bool block_range(const ModelMetadata& meta, const std::string& where, const std::string& key, Entry& e) {
  const size_t dot = key.rfind('.');
  if (dot == std::string::npos) return false;
  const std::string id = key.substr(dot + 1), prefix = key.substr(0, dot + 1);
  const size_t dash = id.find('-');
  long a = 0, b = 0;
  if (dash == std::string::npos || !parse_int(id.substr(0, dash), a) || !parse_int(id.substr(dash + 1), b))
    return false;
  const int L = meta.num_layers();
  if (L == 0 || meta.layer(0).name != prefix + "0") return false;
  GLMPIPE_CHECK(a <= b) << where << ": empty block range " << a << "-" << b << " (write A-B with A <= B)";
  GLMPIPE_CHECK(b < L) << where << ": block " << b << " does not exist (the model has " << L << " blocks: "
                       << prefix << "0-" << L - 1 << ")";
  e.depth = depth(prefix + "0");
  for (long i = a; i <= b; ++i) e.modules.push_back(1 + static_cast<int>(i));
  return true;
}

Entry resolve_key(const ModelMetadata& meta, const std::string& where, const std::string& key) {
  Entry e;
  e.key = key;
  if (block_range(meta, where, key, e)) return e;
  e.depth = depth(key);
  for (size_t m = 0; m < meta.units.size(); ++m)
    if (covers(key, meta.units[m].name)) e.modules.push_back(static_cast<int>(m));
  if (!e.modules.empty()) return e;
  const int L = meta.num_layers();
  for (size_t m = 0; m < meta.units.size(); ++m) {
    const std::string& unit = meta.units[m].name;
    if (key.rfind(unit + ".", 0) != 0) continue;
    const bool block = m >= 1 && m <= static_cast<size_t>(L);
    GLMPIPE_CHECK(!block) << where << ": \"" << key << "\" splits the GLMBlock " << unit
                          << " (blocks are never split: no_split_module_classes=[GLMBlock]); map the whole block";
    GLMPIPE_FAIL() << where << ": \"" << key << "\" is part of " << unit << "; units are never split (map "
                   << unit << ")";
  }
  if (L > 0) {  // transformer.layers.N beyond the last block
    const std::string prefix = meta.layer(0).name.substr(0, meta.layer(0).name.size() - 1);
    long id = 0;
    GLMPIPE_CHECK(!(key.rfind(prefix, 0) == 0 && parse_int(key.substr(prefix.size()), id)))
        << where << ": block " << id << " does not exist (the model has " << L << " blocks: " << prefix << "0-"
        << L - 1 << ")";
  }
  const std::string last = L > 0 ? meta.layer(L - 1).name : std::string();
  GLMPIPE_FAIL() << where << ": unknown module \"" << key << "\" (allowed: any prefix of a module name, e.g. \"\", "
                 << meta.embedding().name << ", " << (L > 0 ? meta.layer(0).name : std::string()) << " .. " << last
                 << ", A-B block ranges, " << meta.final_layernorm().name << ", " << meta.lm_head().name << ")";
  return e;
}

int last_cpu(const Deployment& dep) {
  for (int r = static_cast<int>(dep.ranks.size()) - 1; r >= 0; --r)
    if (dep.ranks[static_cast<size_t>(r)].is_cpu()) return r;
  return -1;
}

// Value -> rank; `disk` = the value was "disk" (the last cpu rank, weights served from disk).
int resolve_rank(const std::string& where, const std::string& value, const Deployment& dep, bool& disk) {
  const int R = static_cast<int>(dep.ranks.size());
  disk = value == "disk";
  if (disk) {
    const int r = last_cpu(dep);
    GLMPIPE_CHECK(r >= 0) << where << ": \"disk\" needs a cpu rank (disk units are computed on the last cpu "
                          << "rank, straight from the page cache)";
    return r;
  }
  long idx = 0;
  if (parse_int(value, idx)) {
    GLMPIPE_CHECK(idx < R) << where << ": rank " << idx << " is not in the deployment (ranks 0.." << R - 1 << ")";
    return static_cast<int>(idx);
  }
  std::vector<int> hits;
  std::string devices;
  for (int r = 0; r < R; ++r) {
    if (dep.ranks[static_cast<size_t>(r)].device == value) hits.push_back(r);
    devices += (r ? ", " : "") + dep.ranks[static_cast<size_t>(r)].device;
  }
  GLMPIPE_CHECK(!hits.empty()) << where << ": device \"" << value << "\" is not in the deployment (ranks: "
                               << devices << "; use a device of one rank, a rank index or disk)";
  GLMPIPE_CHECK(hits.size() == 1) << where << ": device \"" << value << "\" names " << hits.size()
                                  << " ranks; use a rank index instead";
  return hits.front();
}

std::string unit_name(const ModelMetadata& meta, int u) {
  if (u == 0) return meta.embedding().name;
  if (u <= meta.num_layers()) return meta.layer(u - 1).name;
  return "the head (" + meta.final_layernorm().name + " + " + meta.lm_head().name + ")";
}

struct ModuleSlot {
  int rank = -1;
  bool disk = false;
  int entry = -1;  // index into the resolved entries
};

// Longest-prefix resolution of every module (ModelMetadata::units order).
std::vector<ModuleSlot> resolve_modules(const ModelMetadata& meta, const Deployment& dep, const std::string& file,
                                        std::vector<Entry>& entries) {
  std::vector<ModuleSlot> slots(meta.units.size());
  for (const auto& [key, value] : dep.placement_map) {
    const std::string where = file + ": placement." + (key.empty() ? "\"\"" : key);
    entries.push_back(resolve_key(meta, where, key));
    const Entry& e = entries.back();
    bool disk = false;
    const int r = resolve_rank(where, value, dep, disk);
    for (int m : e.modules) {
      ModuleSlot& s = slots[static_cast<size_t>(m)];
      if (s.entry >= 0) {
        const Entry& prev = entries[static_cast<size_t>(s.entry)];
        GLMPIPE_CHECK(prev.depth != e.depth)
            << where << ": overlaps placement." << prev.key << " on " << meta.units[static_cast<size_t>(m)].name;
        if (prev.depth > e.depth) continue;  // the more specific key wins
      }
      s = {r, disk, static_cast<int>(entries.size()) - 1};
    }
  }
  return slots;
}

}  // namespace

MapPlacement map_boundaries(const ModelMetadata& meta, const Deployment& dep) {
  const std::string file = dep.source_file.empty() ? std::string("deployment") : dep.source_file;
  const int L = meta.num_layers(), N = L + 2, R = static_cast<int>(dep.ranks.size());
  GLMPIPE_CHECK(!dep.placement_map.empty()) << file << ": placement: the map is empty";
  std::vector<Entry> entries;
  const std::vector<ModuleSlot> slots = resolve_modules(meta, dep, file, entries);
  const ModuleSlot& norm = slots[static_cast<size_t>(L) + 1];
  const ModuleSlot& lm = slots[static_cast<size_t>(L) + 2];
  GLMPIPE_CHECK((norm.rank < 0) == (lm.rank < 0))
      << file << ": placement: " << (norm.rank < 0 ? meta.final_layernorm().name : meta.lm_head().name)
      << " is missing (" << meta.final_layernorm().name << " must go with " << meta.lm_head().name << ")";
  GLMPIPE_CHECK(norm.rank == lm.rank)
      << file << ": placement." << entries[static_cast<size_t>(lm.entry)].key << ": " << meta.final_layernorm().name
      << " (rank " << norm.rank << ") must go with " << meta.lm_head().name << " (rank " << lm.rank << ")";
  MapPlacement out;
  std::vector<int> rank_of(static_cast<size_t>(N));
  std::vector<std::string> key_of(static_cast<size_t>(N));
  out.disk.assign(static_cast<size_t>(N), 0);
  std::string missing;
  for (int u = 0; u < N; ++u) {
    const ModuleSlot& s = slots[static_cast<size_t>(u == N - 1 ? L + 2 : u)];  // the head follows lm_head
    rank_of[static_cast<size_t>(u)] = s.rank;
    out.disk[static_cast<size_t>(u)] = s.disk;
    if (s.rank < 0) missing += (missing.empty() ? "" : ", ") + unit_name(meta, u);
    else key_of[static_cast<size_t>(u)] = entries[static_cast<size_t>(s.entry)].key;
  }
  GLMPIPE_CHECK(missing.empty()) << file << ": placement: gap: no rank for " << missing
                                 << " (the map must cover every module; its tensors would be unplaced)";
  for (int u = 1; u < N; ++u) {
    const int prev = rank_of[static_cast<size_t>(u) - 1], cur = rank_of[static_cast<size_t>(u)];
    GLMPIPE_CHECK(cur >= prev) << file << ": placement." << key_of[static_cast<size_t>(u)] << ": "
                               << unit_name(meta, u) << " on rank " << cur << " follows " << unit_name(meta, u - 1)
                               << " on rank " << prev << " (stages are contiguous and in rank order)";
  }
  out.bounds.assign(static_cast<size_t>(R) + 1, -1);
  out.bounds[0] = 0;
  out.bounds[static_cast<size_t>(R)] = N;
  for (int u = 0; u < N; ++u)
    if (u == 0 || rank_of[static_cast<size_t>(u)] != rank_of[static_cast<size_t>(u) - 1])
      out.bounds[static_cast<size_t>(rank_of[static_cast<size_t>(u)])] = u;
  for (int r = 0; r < R; ++r)
    GLMPIPE_CHECK((r == 0 && rank_of[0] == 0) || (r > 0 && out.bounds[static_cast<size_t>(r)] >= 0))
        << file << ": placement: ranks[" << r << "] (" << dep.ranks[static_cast<size_t>(r)].device
        << ") gets no unit (every rank needs at least one; remove the rank)";
  return out;
}

}  // namespace glmpipe::detail
