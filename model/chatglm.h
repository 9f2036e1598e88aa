// ChatGLM-6B (v1) in ATen, written to read like the reference (spec §1.4–1.6).
//
// The model is a *shard*: any contiguous range of units — the word embedding, GLMBlocks
// [layer_begin, layer_end), the final LayerNorm + lm_head ("head"). The whole model is the shard
// holding all units. A shard knows nothing about processes or communication: a pipeline stage
// calls embed → forward_blocks → head on whatever it owns and moves tensors itself.
//
// Parameter names equal the checkpoint keys (named_parameters()), layer ids are global.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/model_config.h"
#include "model/batch.h"
#include "model/kv_cache.h"
#include "model/linear.h"

namespace glmpipe {

struct ShardSpec {
  bool has_embedding = true;
  int64_t layer_begin = 0;
  int64_t layer_end = 0;  // half-open, global ids
  bool has_head = true;   // final_layernorm + lm_head

  static ShardSpec whole(const ModelConfig& c) { return {true, 0, c.num_layers, true}; }
};

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  // compute dtype: fp32/bf16 on CPU, fp16/bf16 on CUDA
  at::Device device = at::kCPU;
  int quantize_bits = 0;              // quantize float block Linears at load (0, 4 or 8)
};

struct LayerNorm {
  at::Tensor weight, bias;  // [hidden]
  at::Tensor operator()(const at::Tensor& x, double eps) const;
};

struct GLMBlock {
  int64_t layer_id = 0;  // global
  LayerNorm input_layernorm;
  struct {
    LinearWeight query_key_value;  // [3·hidden, hidden], per-head interleaved q|k|v (spec §1.4.2)
    LinearWeight dense;            // [hidden, hidden]
  } attention;
  LayerNorm post_attention_layernorm;
  struct {
    LinearWeight dense_h_to_4h;  // [inner, hidden]
    LinearWeight dense_4h_to_h;  // [hidden, inner]
  } mlp;
};

// Weight-loading progress of one shard: tensors and on-disk bytes read so far / in all.
struct LoadProgress {
  int64_t tensors_done = 0, tensors_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;
};
using LoadCallback = std::function<void(const LoadProgress&)>;

class ChatGLMShard {
 public:
  ChatGLMShard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options);

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
  at::Tensor forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const;
  // hidden: [R, hidden] → final LayerNorm output [R, hidden] (HF last_hidden_state)
  at::Tensor final_norm(const at::Tensor& hidden) const;
  // hidden: [R, hidden] → logits [R, vocab] (fp32): final_norm then lm_head
  at::Tensor head(const at::Tensor& hidden) const;

  // A cache sized for this shard's layers.
  KVCache make_cache(int64_t slots, int64_t max_seq) const;

  const ModelConfig& config() const { return config_; }
  const ShardSpec& spec() const { return spec_; }
  const ModelOptions& options() const { return options_; }

 private:
  at::Tensor block_forward(const GLMBlock& b, const at::Tensor& x, const BatchLayout& batch,
                           KVCache& cache) const;
  at::Tensor attention(const GLMBlock& b, const at::Tensor& qkv, const BatchLayout& batch,
                       KVCache& cache) const;
  void apply_rotary(at::Tensor& q, at::Tensor& k, const SeqChunk& s) const;
  const GLMBlock& block(int64_t layer) const { return blocks_.at(layer - spec_.layer_begin); }

  ModelConfig config_;
  ShardSpec spec_;
  ModelOptions options_;
  double alpha_;  // √(2·28): hard-wired to 28 layers like the reference, whatever num_layers is

  at::Tensor word_embeddings_;  // [vocab, hidden] "transformer.word_embeddings.weight"
  std::vector<GLMBlock> blocks_;
  LayerNorm final_layernorm_;
  at::Tensor lm_head_;  // [vocab, hidden] "lm_head.weight" (tied: word_embeddings when absent)
  at::Tensor rope_cos_, rope_sin_;  // [max_pos, rot_dim] fp32, rot_dim = head_dim / 2
};

}  // namespace glmpipe
