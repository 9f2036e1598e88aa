// ChatGLM2-6B, ChatGLM3-6B and GLM-4-9B in ATen, as the official modeling_chatglm.py computes them
// (chatglm2-family.md §1.3):
//   x = x + dense(Attn(RoPE(QKV(RMSNorm₁(x)))));  x = x + MLP(RMSNorm₂(x));  y = RMSNorm_f(x)
//   QKV rows [Q of n heads | K of G groups | V of G groups] (with bias), query head h reads group
//   ⌊h·G/n⌋, rotary on the first half of each head in adjacent pairs, purely causal mask,
//   SwiGLU MLP (dense_h_to_4h = [gate | up]), untied output_layer. The KV cache holds G groups.
// Everything schema-driven (load, names, quantization) is in model/shard.h.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/norm.h"
#include "model/shard.h"

namespace glmpipe {

struct GLM2Block {
  int64_t layer_id = 0;  // global
  RMSNorm input_layernorm;
  struct {
    LinearWeight query_key_value;  // [(n + 2G)·d, hidden] + bias
    LinearWeight dense;            // [hidden, n·d], no bias
  } self_attention;
  RMSNorm post_attention_layernorm;
  struct {
    LinearWeight dense_h_to_4h;  // [2·ffn, hidden]: rows [0, ffn) gate, [ffn, 2·ffn) up
    LinearWeight dense_4h_to_h;  // [hidden, ffn]
  } mlp;
};

class ChatGLM2Shard : public Shard {
 public:
  ChatGLM2Shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options);

  at::Tensor forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const override;
  at::Tensor final_norm(const at::Tensor& hidden) const override;

 protected:
  at::Tensor* tensor_slot(const ParamSpec& p) override;
  LinearWeight* linear_slot(const ParamSpec& p) override;

 private:
  at::Tensor block_forward(const GLM2Block& b, const at::Tensor& x, const BatchLayout& batch, KVCache& cache) const;
  at::Tensor attention(const GLM2Block& b, const at::Tensor& qkv, const BatchLayout& batch, KVCache& cache) const;
  // cos/sin [S, 1, d/4] fp32 for absolute positions [past, past + len)
  std::pair<at::Tensor, at::Tensor> rotary(int64_t past, int64_t len) const;
  GLM2Block& block_of(const ParamSpec& p, std::string& rest);

  std::vector<GLM2Block> blocks_;
  RMSNorm final_layernorm_;
  at::Tensor inv_freq_;     // [d/4] fp32, θ_i = (base·ratio)^(−2i/(d/2)) or base^(…) with positions/ratio
  double position_scale_;   // 1 / rope_ratio for position interpolation, else 1
  at::ScalarType rope_dtype_;  // the model dtype the reference rounds cos/sin to
};

}  // namespace glmpipe
