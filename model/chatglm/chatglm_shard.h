// ChatGLM-6B (v1) in ATen, written to read like the reference (spec §1.4–1.6): post-LN blocks with
// the α = √(2·28) residual, per-head interleaved QKV, 2D GLM rotary, tanh-GeLU MLP, tied lm_head.
// Everything schema-driven (load, names, quantization) is in model/shard.h.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/norm.h"
#include "model/shard.h"

namespace glmpipe {

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

class ChatGLMShard : public Shard {
 public:
  ChatGLMShard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options);

  at::Tensor forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const override;
  at::Tensor final_norm(const at::Tensor& hidden) const override;

 protected:
  at::Tensor* tensor_slot(const ParamSpec& p) override;
  LinearWeight* linear_slot(const ParamSpec& p) override;

 private:
  at::Tensor block_forward(const GLMBlock& b, const at::Tensor& x, const BatchLayout& batch, KVCache& cache) const;
  at::Tensor attention(const GLMBlock& b, const at::Tensor& qkv, const BatchLayout& batch, KVCache& cache) const;
  void apply_rotary(at::Tensor& q, at::Tensor& k, const SeqChunk& s) const;
  GLMBlock& block_of(const ParamSpec& p, std::string& rest);

  double alpha_;  // √(2·28): hard-wired to 28 layers like the reference, whatever num_layers is
  std::vector<GLMBlock> blocks_;
  LayerNorm final_layernorm_;
  at::Tensor rope_cos_, rope_sin_;  // [max_pos, rot_dim] fp32, rot_dim = head_dim / 2
};

}  // namespace glmpipe
