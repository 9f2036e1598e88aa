// Upper bounds on every number a deployment or a model config may carry (issue 15). Far above any
// real ChatGLM deployment, they keep the planner's 64-bit byte counts and the runtime's allocations
// from overflowing, and its work bounded (the placement DP is O(ranks * units^2)). A value past its
// bound is an Error naming the file and key.
#pragma once

#include <cstdint>

namespace glmpipe::limits {

constexpr int64_t kMaxBatch = int64_t{1} << 16;     // kv_cache.max_batch: sequences in flight
constexpr int64_t kMaxSeqLen = int64_t{1} << 24;    // kv_cache.max_seq_len: tokens per sequence
constexpr int64_t kMaxThreads = 4096;               // ranks[].threads
constexpr int64_t kMaxMicroBatches = 4096;          // mpi.micro_batches
constexpr int64_t kMaxRanks = 4096;                 // ranks: pipeline stages
constexpr int64_t kMaxLayers = 1024;                // config num_layers (the DP is quadratic in it)
constexpr int64_t kMaxInt = 2147483647;             // any other integer key read into an int

}  // namespace glmpipe::limits
