// make_plan: a pure function that splits ChatGLM-6B into contiguous pipeline stages, one per rank
// of a Deployment, under each rank's real memory budget.
//
// Placement units, in pipeline order: the embedding, each GLMBlock (never split), and the head
// (final_layernorm + lm_head, always together). Each rank gets a non-empty contiguous run of units,
// ranks in deployment order; a rank may hold zero blocks only when it holds the embedding or the head
// (a rank with nothing at all is an error: fewer ranks are needed then).
//
// Per-stage memory, all in bytes (B = kv_cache.max_batch, S = kv_cache.max_seq_len, e = bytes of the
// compute dtype, H = hidden, I = inner_hidden, n = heads, V = vocab):
//   weights     = sum of the stage's unit bytes (ModelMetadata); a tied lm_head on the stage that also
//                 holds the embedding counts once; units on disk count 0 (mmapped, reported as
//                 `mmapped`/`disk`, the page cache holds what it can)
//   disk_window = the largest unit on disk: its pages are mapped into the rank while it computes and
//                 released after each use (a tied head on disk reads the whole embedding matrix)
//   kv_cache    = blocks * 2 * B * S * H * e
//   activations = the working set of one full-length prefill step (T = B*Sq rows; Sq = S, or for
//                 v2+ kv_cache.prefill_chunk when smaller: prompts prefilled in chunks) on top
//                 of the resident bytes, and the GEMM workspace it leaves behind. cpu ranks (fp32
//                 activations, a = 4; counted from the forward code, see planner/activations.cpp):
//                   stage input: T*H*a (T*H*(e + a) with the embedding: its rows, then in fp32)
//                 + with blocks, the larger of (Q = qkv width, U = dense_h_to_4h out, F = its
//                   input to dense_4h_to_h, G = kv_heads*head_dim)
//                     MLP phase       T*a*(7H + Q + U + F) (+ T*2*(F + H) with a bf16 GEMM;
//                                     v2+ SwiGLU: at least T*a*(5H + Q + U + 2F))
//                     attention phase T*a*(4H + Q + G) (+ S*a*2G, 16-bit cache) + 2*n*Sq*S*4
//                 + with blocks and T > 32 rows: the GEMM workspace of the largest Linear (out*in
//                   elements): quantized: dequantized copy, 2 bytes with a bf16 GEMM, else 4;
//                   bf16 weights without a bf16 GEMM: fp32 widened copy; fp32 weights: none
//                   and with a bf16 GEMM, oneDNN's scratchpad per thread (threads = ranks[i].threads,
//                   0: the planning host's cores): 5 KiB + 128*Kmax + 512*min(T, 2048) (Kmax =
//                   the largest Linear input; a fitted bound, see planner/activations.cpp)
//                 + with the head: B*V*4 (fp32 logits of the last positions)
//                 "bf16 GEMM" = this CPU has AVX512-BF16/AMX-BF16 (cpu_gemm_is_bf16(), the
//                 kernels' own test; every cpu rank is assumed to be like the planning host).
//                 cuda ranks (not measured): 2*B*S*H*e (received + sent hidden states)
//                   + if it has blocks: B*S*(3H + I)*e + B*n*S*S*4; + if it has the head: B*V*4
//                 Weights, kv_cache and activations are what a rank's peak RSS grows by over its
//                 RSS before loading (bench/RESULTS_plan_accuracy.md: within 5 %), given that the
//                 rank serves large tensors from mmap (reset_memory_baseline in
//                 launcher/startup_report.h: no heap fragmentation on top of the live bytes).
//   reserve     = the rank's reserve (gpu_reserve for cuda ranks, cpu_reserve for cpu)
//   total       = weights + disk_window + kv_cache + activations + reserve  <=  budget = ranks[i].max_memory
//
// Strategies (Deployment::placement, accelerate's device_map names):
//   balanced       minimise the largest total/budget over the stages (stages proportional to what
//                  each device holds: mixed cards, even by bytes, not by block count); among those
//                  plans the one with the smallest sum of squared fractions (the rest spread evenly)
//   auto           as balanced, but first put as many weight bytes as possible on cuda ranks
//                  (CPU ranks take the overflow); identical to balanced when all ranks are one kind
//   balanced_low_0 stage 0 gets as little as possible (the embedding), the rest balanced
//   sequential     fill each rank in order up to its budget, as long as the later ranks can still
//                  hold the rest (the lexicographically largest feasible split)
//   balanced_work  (glmpipe's own, for pipeline throughput) minimise the largest per-token *work*
//                  over the stages, then the sum of squared work shares; the budgets above still
//                  bound the resident bytes. Work = bytes read per decode step: a block's weights,
//                  final_layernorm + lm_head (read every step, tied or not), but only one row of the
//                  embedding (hidden * e; a lookup). Memory-balanced plans put the embedding's bytes
//                  on stage 0 where they cost no time and leave the last stage (blocks + lm_head)
//                  the slowest; this one evens the time per step on ranks of equal speed (it does not
//                  know device speeds: for mixed GPU/CPU ranks use auto or a map). KV-cache reads
//                  (which grow with the context) are not counted.
//   map            explicit accelerate-style map: keys are module prefixes resolved as accelerate
//                  does (longest prefix wins), values a rank index, a device of one rank or `disk`
//                  (the unit goes to the last cpu rank, weights on disk); see plan_map.cpp
// Disk tier: when no plan fits and `disk` is set, the last CPU rank is disk-offloaded (its weights
// mmapped, not resident) and the other ranks first take as many weight bytes as they can.
// Infeasible: glmpipe::Error naming the device that is short, by how many bytes, and what would
// fit (a smaller max_seq_len, another strategy, int8/int4, one more device, the disk tier).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "planner/deployment.h"
#include "planner/model_metadata.h"

namespace glmpipe {

struct StageBytes {
  int64_t weights = 0;      // resident weight bytes
  int64_t mmapped = 0;      // weight bytes left on disk (disk tier), not in `total`
  int64_t disk_window = 0;  // the largest disk unit: its pages are resident while it computes
                            // (released after each use), counted in `total`
  int64_t kv_cache = 0;
  int64_t activations = 0;
  int64_t reserve = 0;
  int64_t total = 0;        // weights + disk_window + kv_cache + activations + reserve
  int64_t budget = 0;       // the rank's max_memory
  int64_t headroom = 0;     // budget - total (>= 0 in a returned plan)
  int64_t work = 0;         // bytes read per decode step (see balanced_work), not in `total`
};

struct StagePlan {
  int rank = 0;  // == stage index (one process per stage, deployment order)
  std::string device;
  std::string host;
  int threads = 0;
  bool has_embedding = false;
  int layer_begin = 0, layer_end = 0;  // global block ids [begin, end)
  bool has_head = false;               // final_layernorm + lm_head
  bool disk_offload = false;           // some units of this stage are served from disk
  int num_stages = 1;
  std::vector<std::string> units;      // unit names in order (accelerate's hf_device_map keys)
  std::vector<std::string> disk_units; // the units of `units` on disk (mmapped, computed on this cpu rank)
  StageBytes bytes;

  bool on_disk(const std::string& unit) const {
    for (const std::string& u : disk_units)
      if (u == unit) return true;
    return false;
  }
  bool is_first() const { return rank == 0; }
  bool is_last() const { return rank == num_stages - 1; }
  int num_layers() const { return layer_end - layer_begin; }
};

struct Plan {
  std::vector<StagePlan> stages;
  int64_t max_batch = 1, max_seq_len = 2048;
  std::string dtype, quantization, strategy;
  std::string model_source;
  // The model's family and KV geometry (the KV cache holds kv_heads groups of head_dim per layer).
  std::string model_family;
  int64_t kv_heads = 0, head_dim = 0;
  int64_t kv_bytes_per_token = 0;  // all layers, K + V, at the plan's dtype

  // Unit -> rank/device lines (like hf_device_map) and a bytes table per stage.
  std::string to_table() const;
  // {"strategy", "dtype", "quantization", "max_batch", "max_seq_len", "model_source",
  //  "stages": [{"rank", "device", "host", "threads", "has_embedding", "layer_begin", "layer_end",
  //              "has_head", "disk_offload", "units": [...], "disk_units": [...], "disk": bytes,
  //              "bytes": {weights, mmapped, disk, kv_cache, activations, reserve, total, budget,
  //              headroom, work}}], "device_map": {unit: rank}}   (disk == mmapped: weight bytes on disk)
  std::string to_json() const;
  // accelerate's `model.hf_device_map` shape: {unit: GPU index (int) | "cpu" | "disk"}, in unit order.
  std::string to_hf_device_map() const;
};

Plan make_plan(const ModelMetadata& meta, const Deployment& dep);

// The per-stage byte formulas above, exposed for tests and tools (`has_*`/`blocks` describe the stage).
int64_t kv_cache_bytes(const ModelMetadata& meta, const Deployment& dep, int blocks);
// activation_bytes: the cuda ranks' estimate; cpu_activation_bytes: a cpu rank's (see above).
int64_t activation_bytes(const ModelMetadata& meta, const Deployment& dep, bool has_blocks, bool has_head);
// `threads`: the rank's intra-op threads (cpu_rank_threads): oneDNN's GEMM scratchpad is per thread.
int64_t cpu_activation_bytes(const ModelMetadata& meta, const Deployment& dep, bool has_embedding, bool has_blocks,
                             bool has_head, int threads);
// ranks[i].threads, or for 0 (the runtime's share of the host's cores) all of the planning host's cores.
int cpu_rank_threads(const RankSpec& rank);
// True when this CPU's GEMMs for bf16/quantized weights run in bf16 (model/linear.cpp's
// bf16_gemm_fast(): AVX512-BF16 or AMX-BF16, unless GLMPIPE_BF16_GEMM=0).
bool cpu_gemm_is_bf16();
// Per-token work (bytes read per decode step) of each placement unit, in unit order: the embedding
// (one row: hidden * e), blocks 0..L-1 (their weights), the head (final_layernorm + lm_head).
std::vector<int64_t> unit_work_bytes(const ModelMetadata& meta);

}  // namespace glmpipe
