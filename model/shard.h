// Shard: the part of a model one pipeline stage holds — any contiguous range of placement units:
// the word embedding, blocks [layer_begin, layer_end), the final norm + head. The whole model is
// the shard holding all units. A shard knows nothing about processes or communication: a stage
// calls embed → forward_blocks → head on whatever it owns and moves tensors itself.
//
//   ModelConfig cfg = ckpt.config();                              // any family, auto-detected
//   std::unique_ptr<Shard> s = make_shard(cfg, ShardSpec::whole(cfg), ModelOptions{});  // model/model.h
//   s->load(ckpt);                                                // only this shard's tensors
//   KVCache cache = s->make_cache(slots, max_seq);                // kv_heads() groups per layer
//   at::Tensor h = s->forward_blocks(s->embed(ids), batch, cache);
//   at::Tensor logits = s->head(h);
//
// The family (model/chatglm/, model/chatglm2/) implements the forward pass; everything driven by
// the tensor schema (load, named_parameters, checkpoint_keys, quantization, sizes) lives here once.
// Parameter names equal the checkpoint keys, layer ids are global.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "model/batch.h"
#include "model/disk_weights.h"
#include "model/family.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/model_config.h"

namespace glmpipe {

struct ShardSpec {
  bool has_embedding = true;
  int64_t layer_begin = 0;
  int64_t layer_end = 0;  // half-open, global ids
  bool has_head = true;   // final norm + lm_head / output_layer
  // The disk tier: owned placement units (family.h numbering: 0 embedding, 1..L blocks, L+2 head)
  // whose matrices are served from disk (model/disk_weights.h) instead of loaded.
  std::vector<int> disk_units;

  static ShardSpec whole(const ModelConfig& c) { return {true, 0, c.num_layers, true, {}}; }
  bool on_disk(int unit) const {
    for (int u : disk_units)
      if (u == unit) return true;
    return false;
  }
};

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  // compute dtype: fp32/bf16 on CPU, fp16/bf16 on CUDA
  at::Device device = at::kCPU;
  int quantize_bits = 0;              // quantize float block Linears at load (0, 4 or 8)
  std::string offload_dir;            // disk tier: where converted copies go (deployment disk.path)
};

// Weight-loading progress of one shard: tensors and on-disk bytes read so far / in all.
struct LoadProgress {
  int64_t tensors_done = 0, tensors_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;
};
using LoadCallback = std::function<void(const LoadProgress&)>;

// The dtype activations are computed in. On CPU a bf16 model keeps its weights and KV cache in bf16
// but computes in fp32: the row kernels read bf16 weights with fp32 activations at the same speed,
// while libtorch's bf16 elementwise ops and small bf16 matmuls on CPU are slower than fp32 (measured
// ~4 ms per ChatGLM-6B layer and token of attention/LayerNorm/GELU overhead in bf16, bench_decode).
at::ScalarType compute_dtype(const ModelOptions& o);

class Shard {
 public:
  Shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options);
  virtual ~Shard() = default;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Fills every parameter of this shard from the checkpoint, tensor by tensor (no other tensors
  // are read). Quantized checkpoints (config.quantization_bit) load as int8 + scale. `on_progress`
  // is called once before the first tensor and after each one.
  void load(const Checkpoint& ckpt, const LoadCallback& on_progress = {});
  // The checkpoint keys load() reads, in order.
  std::vector<std::string> checkpoint_keys(const Checkpoint& ckpt) const;
  // (checkpoint key, tensor) for every parameter this shard holds.
  std::vector<std::pair<std::string, at::Tensor*>> named_parameters();
  int64_t parameter_bytes();
  // Quantizes every float block Linear in place (per-row symmetric, spec §3.3): benchmarks and
  // weights filled without a checkpoint. Loading with ModelOptions::quantize_bits does the same
  // tensor by tensor.
  void quantize_linears(int bits);

  // ids: [T] int64 → [T, hidden]
  at::Tensor embed(const at::Tensor& ids) const;
  // hidden: [T, hidden] rows ordered as `batch`; runs blocks [layer_begin, layer_end), appending
  // each sequence's keys/values to `cache`. Returns [T, hidden].
  virtual at::Tensor forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const = 0;
  // hidden: [R, hidden] → final norm output [R, hidden] (HF last_hidden_state)
  virtual at::Tensor final_norm(const at::Tensor& hidden) const = 0;
  // hidden: [R, hidden] → logits [R, vocab] (fp32): final_norm then the head
  at::Tensor head(const at::Tensor& hidden) const;

  // A cache sized for this shard's layers: kv_heads() groups of head_dim() per layer.
  KVCache make_cache(int64_t slots, int64_t max_seq) const;

  const ModelConfig& config() const { return config_; }
  const ShardSpec& spec() const { return spec_; }
  const ModelOptions& options() const { return options_; }
  const ModelSchema& schema() const { return schema_; }
  const DiskWeights& disk() const { return disk_; }  // the disk tier's views (empty when none)
  bool owns_unit(int unit) const;

 protected:
  // Drops this process's pages of a disk unit after it computed (no-op for resident units): the
  // family's forward_blocks calls it after each block, embed() and head() after theirs.
  void release_unit(int unit) const {
    if (!disk_.empty()) disk_.release(unit);
  }
  // Where the family keeps each parameter of the schema (by ParamSpec::name): a tensor
  // (kEmbedding, kNorm, kHead) or a LinearWeight (kLinear). Called for owned units only.
  virtual at::Tensor* tensor_slot(const ParamSpec& p) = 0;
  virtual LinearWeight* linear_slot(const ParamSpec& p) = 0;
  // Common input checks of forward_blocks; returns hidden in the compute dtype, contiguous.
  at::Tensor check_blocks_input(const at::Tensor& hidden, const BatchLayout& batch, const KVCache& cache,
                                int64_t max_positions) const;

  ModelConfig config_;
  ShardSpec spec_;
  ModelOptions options_;
  ModelSchema schema_;
  at::Tensor word_embeddings_;  // [vocab, hidden]
  LinearWeight lm_head_;        // [vocab, hidden] (tied: the word_embeddings matrix, see family.h)
  DiskWeights disk_;

 private:
  std::vector<DiskWeights::Want> disk_wants(const Checkpoint& ckpt) const;
  std::vector<const ParamSpec*> owned_params() const;
  const ParamSpec* embedding_param() const;
};

}  // namespace glmpipe
