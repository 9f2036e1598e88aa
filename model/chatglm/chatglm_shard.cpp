// ChatGLM-6B (v1) forward pass; see chatglm_shard.h and spec §1.4–1.6.
#include "model/chatglm/chatglm_shard.h"

#include <cmath>

#include "common/error.h"
#include "model/attention.h"
#include "model/rotary.h"

namespace glmpipe {

namespace {
constexpr double kAlpha28 = 7.483314773547883;  // √(2·28), spec §1.4.7
}  // namespace

ChatGLMShard::ChatGLMShard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options)
    : Shard(config, spec, options), alpha_(kAlpha28) {
  GLMPIPE_CHECK(config.hidden_size % config.num_attention_heads == 0 && config.head_dim() % 4 == 0)
      << "hidden_size " << config.hidden_size << " / heads " << config.num_attention_heads
      << " must give a head_dim divisible by 4 (2D rotary on two halves)";
  for (int64_t l = spec.layer_begin; l < spec.layer_end; ++l) {
    blocks_.emplace_back();
    blocks_.back().layer_id = l;
  }
  // inv_freq[j] = 1 / 10000^(2j / r) for the rotary dim r = head_dim / 2, rounded to fp16 as the
  // reference builds it in half precision (spec §1.5).
  const int64_t r = config.head_dim() / 2;
  auto inv_freq = at::pow(10000.0, at::arange(0, r, 2, at::kDouble) / static_cast<double>(r)).reciprocal();
  inv_freq = inv_freq.to(at::kHalf).to(at::kFloat);
  const int64_t max_pos = std::max<int64_t>(config.max_sequence_length, 2048) + 2;
  auto t = at::arange(max_pos, at::kFloat);
  auto freqs = at::outer(t, inv_freq);     // [max_pos, r/2]
  auto emb = at::cat({freqs, freqs}, -1);  // [max_pos, r]
  rope_cos_ = emb.cos().to(options.device);
  rope_sin_ = emb.sin().to(options.device);
}

// "transformer.layers.N.<rest>" → block N (owned), rest = "<module>.<leaf>".
GLMBlock& ChatGLMShard::block_of(const ParamSpec& p, std::string& rest) {
  const int64_t l = schema_.layer_of(p.name);
  GLMPIPE_CHECK(l >= spec_.layer_begin && l < spec_.layer_end) << "parameter " << p.name << " is not in this shard";
  const std::string prefix = schema_.layer_prefix + std::to_string(l) + ".";
  rest = p.name.substr(prefix.size());
  return blocks_.at(static_cast<size_t>(l - spec_.layer_begin));
}

at::Tensor* ChatGLMShard::tensor_slot(const ParamSpec& p) {
  if (p.name == "transformer.final_layernorm.weight") return &final_layernorm_.weight;
  if (p.name == "transformer.final_layernorm.bias") return &final_layernorm_.bias;
  std::string rest;
  GLMBlock& b = block_of(p, rest);
  if (rest == "input_layernorm.weight") return &b.input_layernorm.weight;
  if (rest == "input_layernorm.bias") return &b.input_layernorm.bias;
  if (rest == "post_attention_layernorm.weight") return &b.post_attention_layernorm.weight;
  if (rest == "post_attention_layernorm.bias") return &b.post_attention_layernorm.bias;
  GLMPIPE_FAIL() << "ChatGLM-6B has no tensor parameter " << p.name;
  return nullptr;
}

LinearWeight* ChatGLMShard::linear_slot(const ParamSpec& p) {
  std::string rest;
  GLMBlock& b = block_of(p, rest);
  if (rest == "attention.query_key_value") return &b.attention.query_key_value;
  if (rest == "attention.dense") return &b.attention.dense;
  if (rest == "mlp.dense_h_to_4h") return &b.mlp.dense_h_to_4h;
  if (rest == "mlp.dense_4h_to_h") return &b.mlp.dense_4h_to_h;
  GLMPIPE_FAIL() << "ChatGLM-6B has no Linear " << p.name;
  return nullptr;
}

at::Tensor ChatGLMShard::forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const {
  hidden = check_blocks_input(hidden, batch, cache, rope_cos_.size(0));
  for (const auto& b : blocks_) {
    hidden = block_forward(b, hidden, batch, cache);
    release_unit(static_cast<int>(b.layer_id) + 1);  // disk tier: this block's pages leave the rank
  }
  return hidden;
}

// x: [T, hidden] → [T, hidden]. Post-LN DeepNorm residual: the *normalized* input is scaled by α.
at::Tensor ChatGLMShard::block_forward(const GLMBlock& b, const at::Tensor& x, const BatchLayout& batch,
                                       KVCache& cache) const {
  const double eps = config_.layernorm_epsilon;
  auto h = b.input_layernorm(x, eps);                                      // [T, H]
  auto qkv = linear_forward(h, b.attention.query_key_value);               // [T, 3H]
  auto ctx = attention(b, qkv, batch, cache);                              // [T, H]
  auto a = linear_forward(ctx, b.attention.dense);                         // [T, H]
  auto x2 = h * alpha_ + a;
  auto h2 = b.post_attention_layernorm(x2, eps);                           // [T, H]
  auto f = linear_forward(at::gelu(linear_forward(h2, b.mlp.dense_h_to_4h), "tanh"), b.mlp.dense_4h_to_h);
  return h2 * alpha_ + f;
}

// q, k: [S, n, d] (compute dtype); replaced by rotated copies.
void ChatGLMShard::apply_rotary(at::Tensor& q, at::Tensor& k, const SeqChunk& s) const {
  std::vector<int64_t> pos(s.len), blk(s.len);
  for (int64_t i = 0; i < s.len; ++i) {
    pos[i] = glm_position(s, s.past + i);
    blk[i] = glm_block_position(s, s.past + i);
  }
  auto dev = rope_cos_.device();
  auto pos_t = at::tensor(pos, at::kLong).to(dev), blk_t = at::tensor(blk, at::kLong).to(dev);
  auto cos1 = rope_cos_.index_select(0, pos_t).unsqueeze(1), sin1 = rope_sin_.index_select(0, pos_t).unsqueeze(1);
  auto cos2 = rope_cos_.index_select(0, blk_t).unsqueeze(1), sin2 = rope_sin_.index_select(0, blk_t).unsqueeze(1);
  const int64_t r = q.size(-1) / 2;  // dims [0, r) rotate with position, [r, 2r) with block position
  auto rot = [&](const at::Tensor& u) {
    auto uf = u.to(at::kFloat);
    return at::cat({rope_half_split(uf.narrow(-1, 0, r), cos1, sin1), rope_half_split(uf.narrow(-1, r, r), cos2, sin2)},
                   -1)
        .to(u.scalar_type());
  };
  q = rot(q);
  k = rot(k);
}

// qkv: [T, 3H] → context [T, H]. Attention runs per sequence over its own cache slot.
at::Tensor ChatGLMShard::attention(const GLMBlock& b, const at::Tensor& qkv, const BatchLayout& batch,
                                   KVCache& cache) const {
  const int64_t n = config_.num_attention_heads, d = config_.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto& kc = cache.k(b.layer_id);  // [slots, n, max_seq, d]
  auto& vc = cache.v(b.layer_id);
  std::vector<at::Tensor> outs;
  outs.reserve(batch.size());
  int64_t row = 0;
  for (const auto& s : batch) {
    auto m = qkv.narrow(0, row, s.len).view({s.len, n, 3 * d});  // per-head interleaved q|k|v
    row += s.len;
    auto q = m.narrow(2, 0, d), k = m.narrow(2, d, d), v = m.narrow(2, 2 * d, d);  // [S, n, d]
    apply_rotary(q, k, s);
    kc[s.slot].narrow(1, s.past, s.len).copy_(k.transpose(0, 1));
    vc[s.slot].narrow(1, s.past, s.len).copy_(v.transpose(0, 1));
    // Query at absolute p sees key j when j <= p or j < ctx_len (prefix-bidirectional, spec §1.6).
    outs.push_back(cached_attention(q, kc[s.slot], vc[s.slot], s.past, s.ctx_len, scale, -10000.0));  // [S, H]
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

at::Tensor ChatGLMShard::final_norm(const at::Tensor& hidden) const {
  GLMPIPE_CHECK(spec_.has_head) << "final_norm() on a shard without final_layernorm + lm_head";
  return final_layernorm_(hidden.to(compute_dtype(options_)).contiguous(), config_.layernorm_epsilon);
}

}  // namespace glmpipe
