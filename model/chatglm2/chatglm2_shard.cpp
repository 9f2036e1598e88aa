// ChatGLM2/3 and GLM-4 forward pass; see chatglm2_shard.h and chatglm2-family.md §1.3.
#include "model/chatglm2/chatglm2_shard.h"

#include <cmath>
#include <limits>

#include "common/error.h"
#include "model/attention.h"
#include "model/rotary.h"

namespace glmpipe {

namespace {
constexpr double kRopeBase = 10000.0;
}  // namespace

ChatGLM2Shard::ChatGLM2Shard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options)
    : Shard(config, spec, options) {
  GLMPIPE_CHECK(config.head_dim() % 4 == 0 && config.num_attention_heads % config.kv_heads() == 0)
      << "kv_channels " << config.head_dim() << " must be a multiple of 4 and num_attention_heads "
      << config.num_attention_heads << " a multiple of multi_query_group_num " << config.kv_heads();
  for (int64_t l = spec.layer_begin; l < spec.layer_end; ++l) {
    blocks_.emplace_back();
    blocks_.back().layer_id = l;
  }
  // RotaryEmbedding(kv_channels / 2): θ over dim = d/2, i.e. d/4 frequencies. The checkpoint's
  // rotary_pos_emb.inv_freq omits rope_ratio and is ignored (chatglm2-family.md §1.3).
  const bool interp = config.rope_mode == RopeMode::kPositionInterpolation;
  const double base = interp ? kRopeBase : kRopeBase * config.rope_ratio;
  inv_freq_ = rope_inv_freq(config.head_dim() / 2, base).to(options.device);
  position_scale_ = interp ? 1.0 / config.rope_ratio : 1.0;
  // The reference casts its fp32 cos/sin cache to the model dtype ("to mimic complex32").
  rope_dtype_ = options.dtype == at::kHalf || options.dtype == at::kBFloat16 ? options.dtype : at::kFloat;
}

GLM2Block& ChatGLM2Shard::block_of(const ParamSpec& p, std::string& rest) {
  const int64_t l = schema_.layer_of(p.name);
  GLMPIPE_CHECK(l >= spec_.layer_begin && l < spec_.layer_end) << "parameter " << p.name << " is not in this shard";
  rest = p.name.substr((schema_.layer_prefix + std::to_string(l) + ".").size());
  return blocks_.at(static_cast<size_t>(l - spec_.layer_begin));
}

at::Tensor* ChatGLM2Shard::tensor_slot(const ParamSpec& p) {
  if (p.name == "transformer.encoder.final_layernorm.weight") return &final_layernorm_.weight;
  std::string rest;
  GLM2Block& b = block_of(p, rest);
  if (rest == "input_layernorm.weight") return &b.input_layernorm.weight;
  if (rest == "post_attention_layernorm.weight") return &b.post_attention_layernorm.weight;
  GLMPIPE_FAIL() << "ChatGLM2 has no tensor parameter " << p.name;
  return nullptr;
}

LinearWeight* ChatGLM2Shard::linear_slot(const ParamSpec& p) {
  std::string rest;
  GLM2Block& b = block_of(p, rest);
  if (rest == "self_attention.query_key_value") return &b.self_attention.query_key_value;
  if (rest == "self_attention.dense") return &b.self_attention.dense;
  if (rest == "mlp.dense_h_to_4h") return &b.mlp.dense_h_to_4h;
  if (rest == "mlp.dense_4h_to_h") return &b.mlp.dense_4h_to_h;
  GLMPIPE_FAIL() << "ChatGLM2 has no Linear " << p.name;
  return nullptr;
}

at::Tensor ChatGLM2Shard::forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const {
  hidden = check_blocks_input(hidden, batch, cache, std::numeric_limits<int64_t>::max());
  for (const auto& b : blocks_) {
    hidden = block_forward(b, hidden, batch, cache);
    release_unit(static_cast<int>(b.layer_id) + 1);  // disk tier: this block's pages leave the rank
  }
  return hidden;
}

// x: [T, hidden] → [T, hidden]. Pre-norm, plain residual (apply_residual_connection_post_layernorm=false).
at::Tensor ChatGLM2Shard::block_forward(const GLM2Block& b, const at::Tensor& x, const BatchLayout& batch,
                                        KVCache& cache) const {
  const double eps = config_.layernorm_epsilon;
  auto h = b.input_layernorm(x, eps);                                    // [T, H]
  auto qkv = linear_forward(h, b.self_attention.query_key_value);        // [T, (n + 2G)·d]
  auto ctx = attention(b, qkv, batch, cache);                            // [T, n·d]
  auto x2 = x + linear_forward(ctx, b.self_attention.dense);             // [T, H]
  auto h2 = b.post_attention_layernorm(x2, eps);                         // [T, H]
  auto gate_up = linear_forward(h2, b.mlp.dense_h_to_4h);                // [T, 2·ffn]
  const int64_t f = gate_up.size(1) / 2;
  auto act = at::silu(gate_up.narrow(1, 0, f)) * gate_up.narrow(1, f, f);  // [T, ffn]
  return x2 + linear_forward(act, b.mlp.dense_4h_to_h);
}

std::pair<at::Tensor, at::Tensor> ChatGLM2Shard::rotary(int64_t past, int64_t len) const {
  auto pos = at::arange(past, past + len, at::TensorOptions().dtype(at::kFloat).device(inv_freq_.device()));
  if (position_scale_ != 1.0) pos = pos * position_scale_;
  auto angles = at::outer(pos, inv_freq_);  // [S, d/4]
  auto cos = angles.cos().to(rope_dtype_).to(at::kFloat).unsqueeze(1);
  auto sin = angles.sin().to(rope_dtype_).to(at::kFloat).unsqueeze(1);
  return {cos, sin};
}

// qkv: [T, (n + 2G)·d] → context [T, n·d]. Attention runs per sequence over its own cache slot.
at::Tensor ChatGLM2Shard::attention(const GLM2Block& b, const at::Tensor& qkv, const BatchLayout& batch,
                                    KVCache& cache) const {
  const int64_t n = config_.num_attention_heads, G = config_.kv_heads(), d = config_.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto& kc = cache.k(b.layer_id);  // [slots, G, max_seq, d]
  auto& vc = cache.v(b.layer_id);
  std::vector<at::Tensor> outs;
  outs.reserve(batch.size());
  int64_t row = 0;
  for (const auto& s : batch) {
    auto m = qkv.narrow(0, row, s.len);  // block-contiguous [Q | K | V]
    row += s.len;
    auto q = m.narrow(1, 0, n * d).view({s.len, n, d});
    auto k = m.narrow(1, n * d, G * d).view({s.len, G, d});
    auto v = m.narrow(1, (n + G) * d, G * d).view({s.len, G, d});
    auto [cos, sin] = rotary(s.past, s.len);
    q = rope_adjacent_pairs(q, cos, sin);
    k = rope_adjacent_pairs(k, cos, sin);
    kc[s.slot].narrow(1, s.past, s.len).copy_(k.transpose(0, 1));
    vc[s.slot].narrow(1, s.past, s.len).copy_(v.transpose(0, 1));
    outs.push_back(cached_attention(q, kc[s.slot], vc[s.slot], s.past, 0, scale,
                                    -std::numeric_limits<double>::infinity()));  // [S, n·d]
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

at::Tensor ChatGLM2Shard::final_norm(const at::Tensor& hidden) const {
  GLMPIPE_CHECK(spec_.has_head) << "final_norm() on a shard without final_layernorm + output_layer";
  return final_layernorm_(hidden.to(compute_dtype(options_)).contiguous(), config_.layernorm_epsilon);
}

}  // namespace glmpipe
