// KVCache: per-layer key/value storage for one stage, preallocated for `slots` sequences of up to
// `max_seq` tokens each (the budget the planner reserved). A sequence owns one slot from its
// prefill until it finishes; slots are handed out by the scheduler (stage/), so this class holds
// only tensors. Keys are stored after rotary, values raw (spec §1.7).
//
// Layout per layer: [slots, heads, max_seq, head_dim], so that one sequence's keys for one head
// are a contiguous [tokens, head_dim] panel and attention reads them with no copy.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace glmpipe {

class KVCache {
 public:
  KVCache() = default;
  KVCache(int64_t layer_begin, int64_t layer_end, int64_t slots, int64_t max_seq, int64_t heads,
          int64_t head_dim, at::ScalarType dtype, at::Device device = at::kCPU);

  // Global layer id in [layer_begin, layer_end).
  at::Tensor& k(int64_t layer);  // [slots, heads, max_seq, head_dim]
  at::Tensor& v(int64_t layer);  // [slots, heads, max_seq, head_dim]

  int64_t slots() const { return slots_; }
  int64_t max_seq() const { return max_seq_; }
  int64_t bytes() const;

 private:
  int64_t index(int64_t layer) const;

  int64_t layer_begin_ = 0, layer_end_ = 0, slots_ = 0, max_seq_ = 0;
  std::vector<at::Tensor> k_, v_;
};

}  // namespace glmpipe
