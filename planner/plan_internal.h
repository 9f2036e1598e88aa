// Internals shared by the planner's translation units (plan.cpp, plan_map.cpp). Not a public API.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "planner/plan.h"

namespace glmpipe::detail {

// Placement units: 0 = embedding, 1..L = blocks 0..L-1, L+1 = head (final_layernorm + lm_head).
// A stage is a half-open unit range [a, b) on one rank.
class CostModel {
 public:
  CostModel(const ModelMetadata& meta, const Deployment& dep);

  int num_units() const { return static_cast<int>(unit_weight_.size()); }
  int num_ranks() const { return static_cast<int>(dep_.ranks.size()); }
  // Weight bytes of [a, b) (tied lm_head counted once when the embedding is in the range too).
  int64_t weights(int a, int b) const;
  // Per-token work of [a, b) (unit_work_bytes summed) and of the whole model.
  int64_t work(int a, int b) const { return work_prefix_[static_cast<size_t>(b)] - work_prefix_[static_cast<size_t>(a)]; }
  int64_t total_work() const { return work_prefix_.back(); }
  // Full accounting of [a, b) on `rank`; `disk` = weights mmapped instead of resident.
  StageBytes stage_bytes(int rank, int a, int b, bool disk) const;
  // The same with a disk flag per placement unit (`disk[u]`, size num_units()).
  StageBytes stage_bytes(int rank, int a, int b, const std::vector<char>& disk) const;
  bool fits(int rank, int a, int b, bool disk) const {
    StageBytes s = stage_bytes(rank, a, b, disk);
    return s.total <= s.budget;
  }
  bool fits(int rank, int a, int b, const std::vector<char>& disk) const {
    StageBytes s = stage_bytes(rank, a, b, disk);
    return s.total <= s.budget;
  }
  // StagePlan for [a, b) on `rank` (units, layer range, bytes, units on disk).
  StagePlan stage(int rank, int a, int b, const std::vector<char>& disk) const;
  // cpu_activation_bytes / activation_bytes of a stage of that shape, computed once.
  int64_t activations(int rank, bool has_embedding, bool has_blocks, bool has_head) const;
  const ModelMetadata& meta() const { return meta_; }
  const Deployment& dep() const { return dep_; }

 private:
  const ModelMetadata& meta_;
  const Deployment& dep_;
  std::vector<int64_t> unit_weight_;  // per placement unit
  std::vector<int64_t> prefix_;       // prefix sums of unit_weight_
  std::vector<int64_t> work_prefix_;  // prefix sums of unit_work_bytes
  std::vector<std::array<int64_t, 8>> cpu_activations_;  // [rank][has_embedding·4 + has_blocks·2 + has_head]
  std::array<int64_t, 4> device_activations_{};  // [has_blocks·2 + has_head]
};

// Unit boundaries (size ranks + 1, 0 .. N) and disk flags per unit (size N) -> Plan.
Plan assemble_plan(const CostModel& cm, const std::vector<int>& bounds, const std::vector<char>& disk);
// Every unit of `disk_rank`'s stage on disk, none elsewhere (-1: none).
std::vector<char> disk_mask(const std::vector<int>& bounds, int num_units, int disk_rank);

// Explicit map: validated boundaries and the units mapped to `disk` (throws glmpipe::Error naming
// file and key on a bad map).
struct MapPlacement {
  std::vector<int> bounds;  // ranks + 1 entries
  std::vector<char> disk;   // per placement unit
};
MapPlacement map_boundaries(const ModelMetadata& meta, const Deployment& dep);

}  // namespace glmpipe::detail
