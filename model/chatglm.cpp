// ChatGLM-6B (v1) forward pass; see chatglm.h and spec §1.4–1.6.
#include "model/chatglm.h"

#include <cmath>

#include "common/error.h"
#include "model/quant.h"

namespace glmpipe {

namespace {
constexpr double kAlpha28 = 7.483314773547883;  // √(2·28), spec §1.4.7

std::string layer_key(int64_t l, const std::string& rest) {
  return "transformer.layers." + std::to_string(l) + "." + rest;
}

// u: [S, n, r] fp32; cos/sin: [S, 1, r]. NeoX rotate_half on halves of r (spec §1.5).
at::Tensor rope(const at::Tensor& u, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t h = u.size(-1) / 2;
  auto rotated = at::cat({-u.narrow(-1, h, h), u.narrow(-1, 0, h)}, -1);
  return u * cos + rotated * sin;
}

// The dtype activations are computed in. On CPU a bf16 model keeps its weights and KV cache in bf16
// but computes in fp32: the row kernels read bf16 weights with fp32 activations at the same speed,
// while libtorch's bf16 elementwise ops and small bf16 matmuls on CPU are slower than fp32 (measured
// ~4 ms per ChatGLM-6B layer and token of attention/LayerNorm/GELU overhead in bf16, bench_decode).
at::ScalarType compute_dtype(const ModelOptions& o) {
  return o.device.is_cpu() && o.dtype == at::kBFloat16 ? at::kFloat : o.dtype;
}
}  // namespace

at::Tensor LayerNorm::operator()(const at::Tensor& x, double eps) const {
  if (weight.scalar_type() != x.scalar_type())  // bf16 parameters, fp32 compute (see compute_dtype)
    return at::layer_norm(x, {weight.size(0)}, weight.to(x.scalar_type()), bias.to(x.scalar_type()), eps);
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

ChatGLMShard::ChatGLMShard(const ModelConfig& config, const ShardSpec& spec, const ModelOptions& options)
    : config_(config), spec_(spec), options_(options), alpha_(kAlpha28) {
  GLMPIPE_CHECK(spec.layer_begin >= 0 && spec.layer_begin <= spec.layer_end && spec.layer_end <= config.num_layers)
      << "shard layers [" << spec.layer_begin << ", " << spec.layer_end << ") outside the model's "
      << config.num_layers << " layers";
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
  auto freqs = at::outer(t, inv_freq);            // [max_pos, r/2]
  auto emb = at::cat({freqs, freqs}, -1);         // [max_pos, r]
  rope_cos_ = emb.cos().to(options.device);
  rope_sin_ = emb.sin().to(options.device);
}

std::vector<std::pair<std::string, at::Tensor*>> ChatGLMShard::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  auto add_linear = [&](const std::string& prefix, LinearWeight& w) {
    out.emplace_back(prefix + ".weight", &w.weight);
    out.emplace_back(prefix + ".bias", &w.bias);
    if (w.quantized()) out.emplace_back(prefix + ".weight_scale", &w.scale);
  };
  auto add_ln = [&](const std::string& prefix, LayerNorm& ln) {
    out.emplace_back(prefix + ".weight", &ln.weight);
    out.emplace_back(prefix + ".bias", &ln.bias);
  };
  if (spec_.has_embedding) out.emplace_back("transformer.word_embeddings.weight", &word_embeddings_);
  for (auto& b : blocks_) {
    const int64_t l = b.layer_id;
    add_ln(layer_key(l, "input_layernorm"), b.input_layernorm);
    add_linear(layer_key(l, "attention.query_key_value"), b.attention.query_key_value);
    add_linear(layer_key(l, "attention.dense"), b.attention.dense);
    add_ln(layer_key(l, "post_attention_layernorm"), b.post_attention_layernorm);
    add_linear(layer_key(l, "mlp.dense_h_to_4h"), b.mlp.dense_h_to_4h);
    add_linear(layer_key(l, "mlp.dense_4h_to_h"), b.mlp.dense_4h_to_h);
  }
  if (spec_.has_head) {
    add_ln("transformer.final_layernorm", final_layernorm_);
    // Tied with the embedding: listed once when this shard also holds the embedding.
    if (!spec_.has_embedding) out.emplace_back("lm_head.weight", &lm_head_);
  }
  return out;
}

int64_t ChatGLMShard::parameter_bytes() {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (t->defined()) n += t->nbytes();
  return n;
}

void ChatGLMShard::quantize_linears(int bits) {
  for (auto& b : blocks_)
    for (LinearWeight* w : {&b.attention.query_key_value, &b.attention.dense, &b.mlp.dense_h_to_4h, &b.mlp.dense_4h_to_h}) {
      if (w->quantized() || !w->weight.defined()) continue;
      auto [q, scale] = quantize_rows(w->weight, bits);
      w->out_features = w->weight.size(0);
      w->in_features = w->weight.size(1);
      w->bits = bits;
      w->weight = q;
      w->scale = scale.to(at::kFloat);
    }
}

std::vector<std::string> ChatGLMShard::checkpoint_keys(const Checkpoint& ckpt) const {
  std::vector<std::string> keys;
  if (spec_.has_embedding) keys.push_back("transformer.word_embeddings.weight");
  for (const auto& b : blocks_) {
    for (const char* ln : {"input_layernorm", "post_attention_layernorm"})
      for (const char* leaf : {".weight", ".bias"}) keys.push_back(layer_key(b.layer_id, std::string(ln) + leaf));
    for (const char* lin : {"attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"}) {
      keys.push_back(layer_key(b.layer_id, std::string(lin) + ".weight"));
      if (config_.quantization_bit != 0) keys.push_back(layer_key(b.layer_id, std::string(lin) + ".weight_scale"));
      keys.push_back(layer_key(b.layer_id, std::string(lin) + ".bias"));
    }
  }
  if (spec_.has_head) {
    keys.push_back("transformer.final_layernorm.weight");
    keys.push_back("transformer.final_layernorm.bias");
    if (!spec_.has_embedding)
      keys.push_back(ckpt.has("lm_head.weight") ? "lm_head.weight" : "transformer.word_embeddings.weight");
  }
  return keys;
}

void ChatGLMShard::load(const Checkpoint& ckpt, const LoadCallback& on_progress) {
  const auto dt = options_.dtype;
  const auto dev = options_.device;
  LoadProgress progress;
  for (const auto& key : checkpoint_keys(ckpt)) {
    progress.tensors_total += 1;
    progress.bytes_total += ckpt.has(key) ? ckpt.info(key).nbytes : 0;  // a missing key fails below, by name
  }
  if (on_progress) on_progress(progress);
  // Every tensor read goes through here: one progress step each.
  auto read = [&](const std::string& name, at::ScalarType type, at::Device device) {
    at::Tensor t = ckpt.load(name, type, device);
    progress.tensors_done += 1;
    progress.bytes_done += ckpt.info(name).nbytes;
    if (on_progress) on_progress(progress);
    return t;
  };
  auto load_f = [&](const std::string& name) { return read(name, dt, dev); };
  auto load_linear = [&](const std::string& prefix, LinearWeight& w) {
    if (config_.quantization_bit != 0) {
      w.bits = config_.quantization_bit;
      w.weight = read(prefix + ".weight", at::kChar, dev);
      w.scale = read(prefix + ".weight_scale", at::kFloat, dev);
      w.out_features = w.weight.size(0);
      w.in_features = w.weight.size(1) * (w.bits == 4 ? 2 : 1);
    } else if (options_.quantize_bits != 0) {
      auto full = read(prefix + ".weight", at::kFloat, at::kCPU);  // one tensor at a time
      auto [q, scale] = quantize_rows(full, options_.quantize_bits);
      w.bits = options_.quantize_bits;
      w.weight = q.to(dev);
      w.scale = scale.to(at::kFloat).to(dev);
      w.out_features = full.size(0);
      w.in_features = full.size(1);
    } else {
      w.weight = load_f(prefix + ".weight");
      w.out_features = w.weight.size(0);
      w.in_features = w.weight.size(1);
    }
    w.bias = load_f(prefix + ".bias");
  };
  auto load_ln = [&](const std::string& prefix, LayerNorm& ln) {
    ln.weight = load_f(prefix + ".weight");
    ln.bias = load_f(prefix + ".bias");
  };
  if (spec_.has_embedding) word_embeddings_ = load_f("transformer.word_embeddings.weight");
  for (auto& b : blocks_) {
    const int64_t l = b.layer_id;
    load_ln(layer_key(l, "input_layernorm"), b.input_layernorm);
    load_linear(layer_key(l, "attention.query_key_value"), b.attention.query_key_value);
    load_linear(layer_key(l, "attention.dense"), b.attention.dense);
    load_ln(layer_key(l, "post_attention_layernorm"), b.post_attention_layernorm);
    load_linear(layer_key(l, "mlp.dense_h_to_4h"), b.mlp.dense_h_to_4h);
    load_linear(layer_key(l, "mlp.dense_4h_to_h"), b.mlp.dense_4h_to_h);
  }
  if (spec_.has_head) {
    load_ln("transformer.final_layernorm", final_layernorm_);
    if (spec_.has_embedding)
      lm_head_ = word_embeddings_;  // tied (spec §1.3): one copy serves both
    else
      lm_head_ = load_f(ckpt.has("lm_head.weight") ? "lm_head.weight" : "transformer.word_embeddings.weight");
  }
}

KVCache ChatGLMShard::make_cache(int64_t slots, int64_t max_seq) const {
  return KVCache(spec_.layer_begin, spec_.layer_end, slots, max_seq, config_.num_attention_heads,
                 config_.head_dim(), options_.dtype, options_.device);
}

at::Tensor ChatGLMShard::embed(const at::Tensor& ids) const {
  GLMPIPE_CHECK(spec_.has_embedding) << "embed() on a shard without the word embedding";
  GLMPIPE_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < config_.vocab_size))
      << "token id out of range [0, " << config_.vocab_size << ")";
  return word_embeddings_.index_select(0, ids.to(word_embeddings_.device()));
}

at::Tensor ChatGLMShard::forward_blocks(at::Tensor hidden, const BatchLayout& batch, KVCache& cache) const {
  GLMPIPE_CHECK(hidden.dim() == 2 && hidden.size(0) == total_tokens(batch) && hidden.size(1) == config_.hidden_size)
      << "forward_blocks: hidden " << hidden.sizes() << " does not match " << total_tokens(batch)
      << " tokens x hidden " << config_.hidden_size;
  for (const auto& s : batch) {
    GLMPIPE_CHECK(s.slot >= 0 && s.slot < cache.slots()) << "KV slot " << s.slot << " outside [0, " << cache.slots() << ")";
    GLMPIPE_CHECK(s.past + s.len <= cache.max_seq() && s.past + s.len < rope_cos_.size(0))
        << "sequence in slot " << s.slot << " needs " << s.past + s.len << " positions; the KV cache holds "
        << cache.max_seq();
  }
  hidden = hidden.to(compute_dtype(options_)).contiguous();
  for (const auto& b : blocks_) hidden = block_forward(b, hidden, batch, cache);
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

// q, k: [S, n, d] (compute dtype, contiguous); rotated in place of the returned copies.
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
    return at::cat({rope(uf.narrow(-1, 0, r), cos1, sin1), rope(uf.narrow(-1, r, r), cos2, sin2)}, -1)
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
    const int64_t total = s.past + s.len;
    kc[s.slot].narrow(1, s.past, s.len).copy_(k.transpose(0, 1));
    vc[s.slot].narrow(1, s.past, s.len).copy_(v.transpose(0, 1));
    auto keys = kc[s.slot].narrow(1, 0, total).to(q.scalar_type());    // [n, P+S, d]
    auto values = vc[s.slot].narrow(1, 0, total).to(q.scalar_type());  // [n, P+S, d]
    auto scores = at::matmul(q.transpose(0, 1), keys.transpose(1, 2)).to(at::kFloat) * scale;  // [n, S, P+S]
    if (s.len > 1) {
      // Query at absolute p sees key j when j <= p or j < ctx_len (prefix-bidirectional, spec §1.6).
      auto qpos = at::arange(s.past, total, at::kLong).unsqueeze(1);
      auto kpos = at::arange(0, total, at::kLong).unsqueeze(0);
      auto blocked = (kpos > qpos).logical_and(kpos >= s.ctx_len).to(scores.device());
      scores.masked_fill_(blocked, -10000.0);
    }
    auto probs = at::softmax(scores, -1).to(values.scalar_type());
    outs.push_back(at::matmul(probs, values).transpose(0, 1).reshape({s.len, n * d}));  // [S, H]
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

at::Tensor ChatGLMShard::final_norm(const at::Tensor& hidden) const {
  GLMPIPE_CHECK(spec_.has_head) << "final_norm() on a shard without final_layernorm + lm_head";
  return final_layernorm_(hidden.to(compute_dtype(options_)).contiguous(), config_.layernorm_epsilon);
}

at::Tensor ChatGLMShard::head(const at::Tensor& hidden) const {
  auto y = final_norm(hidden);  // [R, H]
  LinearWeight w;
  w.weight = spec_.has_embedding ? word_embeddings_ : lm_head_;  // tied (spec §1.3)
  return linear_forward(y, w).to(at::kFloat);  // [R, vocab]
}

}  // namespace glmpipe
