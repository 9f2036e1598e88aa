// Random ChatGLM-6B (v1) checkpoints (see tiny_model.h).
#include "checkpoint/tiny_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/error.h"

namespace glmpipe {

ModelConfig tiny_model_config(const TinyModelOptions& o) {
  GLMPIPE_CHECK(o.layers >= 1) << "tiny model: --layers must be >= 1, got " << o.layers;
  GLMPIPE_CHECK(o.hidden >= 1 && o.heads >= 1) << "tiny model: --hidden and --heads must be positive";
  GLMPIPE_CHECK(o.hidden % o.heads == 0) << "tiny model: --hidden " << o.hidden << " is not divisible by --heads " << o.heads;
  GLMPIPE_CHECK((o.hidden / o.heads) % 4 == 0)
      << "tiny model: head_dim " << o.hidden / o.heads << " must be a multiple of 4 (2D rotary)";
  GLMPIPE_CHECK(o.inner >= 0) << "tiny model: --inner must be >= 0 (0 = 4 * hidden)";
  GLMPIPE_CHECK(o.vocab >= 8) << "tiny model: --vocab must be >= 8 (special ids live at the end), got " << o.vocab;
  GLMPIPE_CHECK(o.dtype == at::kFloat || o.dtype == at::kHalf || o.dtype == at::kBFloat16)
      << "tiny model: dtype must be float32, float16 or bfloat16, got " << o.dtype;
  GLMPIPE_CHECK(o.quantization_bit == 0 || o.quantization_bit == 4 || o.quantization_bit == 8)
      << "tiny model: --quantization-bit must be 0, 4 or 8, got " << o.quantization_bit;
  GLMPIPE_CHECK(o.shards >= 1) << "tiny model: --shards must be >= 1, got " << o.shards;
  ModelConfig c;
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.num_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.inner_hidden_size = o.inner ? o.inner : 4 * o.hidden;
  GLMPIPE_CHECK(o.quantization_bit != 4 || (c.hidden_size % 2 == 0 && c.inner_hidden_size % 2 == 0))
      << "tiny model: int4 packing needs even hidden and inner sizes";
  c.layernorm_epsilon = 1e-5;
  c.mask_token_id = o.vocab - 5;
  c.gmask_token_id = o.vocab - 4;
  c.bos_token_id = o.vocab - 3;
  c.eos_token_id = o.vocab - 2;
  c.pad_token_id = 0;
  c.quantization_bit = o.quantization_bit;
  c.torch_dtype = o.dtype == at::kHalf ? "float16" : o.dtype == at::kBFloat16 ? "bfloat16" : "float32";
  return c;
}

std::pair<at::Tensor, at::Tensor> quantize_weight_rows(const at::Tensor& w, int bits) {
  GLMPIPE_CHECK(w.dim() == 2 && (bits == 4 || bits == 8)) << "quantize_weight_rows: need a 2-D weight and bits 4 or 8";
  const double qmax = bits == 8 ? 127.0 : 7.0;
  at::Tensor wf = w.to(at::kFloat);
  at::Tensor scale = (wf.abs().amax({1}) / qmax).to(at::kHalf);  // [out]
  at::Tensor q = at::round(wf / scale.to(at::kFloat).clamp_min(1e-12).unsqueeze(1)).clamp(-qmax, qmax).to(at::kInt);
  if (bits == 4) {
    GLMPIPE_CHECK(w.size(1) % 2 == 0) << "quantize_weight_rows: int4 needs an even number of columns, got " << w.size(1);
    using at::indexing::Slice;
    at::Tensor even = q.index({Slice(), Slice(0, at::indexing::None, 2)});
    at::Tensor odd = q.index({Slice(), Slice(1, at::indexing::None, 2)});
    // (even << 4) | (odd & 0xF) as a two's-complement byte; even*16 + (odd & 15) lies in [-112, 127].
    q = even * 16 + at::bitwise_and(odd, 15);
  }
  return {q.to(at::kChar).contiguous(), scale};
}

constexpr double kResidualGain = 8.0;

std::vector<std::pair<std::string, at::Tensor>> make_tiny_tensors(const TinyModelOptions& o) {
  const ModelConfig c = tiny_model_config(o);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t H = c.hidden_size, I = c.inner_hidden_size, V = c.vocab_size;
  const at::ScalarType ln_dtype = o.dtype == at::kHalf ? at::kFloat : o.dtype;
  auto normal = [&](std::vector<int64_t> shape, double mean, double std) {
    return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * std + mean;
  };
  std::vector<std::pair<std::string, at::Tensor>> out;
  at::Tensor emb = normal({V, H}, 0, 1).to(o.dtype);
  out.emplace_back("transformer.word_embeddings.weight", emb);
  const int64_t rot = c.head_dim() / 2;  // rotary dims per half; inv_freq has rot/2 entries
  at::Tensor inv_freq =
      at::pow(10000.0, at::arange(0, rot, 2, at::TensorOptions().dtype(at::kFloat)) / double(rot)).reciprocal();
  auto layer_norm = [&](const std::string& prefix) {
    out.emplace_back(prefix + ".weight", normal({H}, 1, 0.1).to(ln_dtype));
    out.emplace_back(prefix + ".bias", normal({H}, 0, 0.1).to(ln_dtype));
  };
  // `gain` on the two projections that feed the residual: the reference's post-LN residual scales
  // the normalized input by α = √56 ≈ 7.5, so sublayer outputs of unit size would leave every
  // position dominated by its own token embedding (a random model would then greedily repeat its
  // input token forever). Outputs of size ~α make the random model mix context and vary its output.
  auto linear = [&](const std::string& prefix, int64_t out_f, int64_t in_f, double gain = 1.0) {
    at::Tensor w = normal({out_f, in_f}, 0, gain / std::sqrt(double(in_f)));
    // GELU outputs have a positive mean; rows summing to zero keep it from adding the same vector
    // to every position (which would make one token win everywhere).
    if (gain != 1.0) w = w - w.mean(1, true);
    at::Tensor b = normal({out_f}, 0, 0.02);
    if (o.quantization_bit) {
      auto [q, scale] = quantize_weight_rows(w.to(o.dtype), o.quantization_bit);
      out.emplace_back(prefix + ".weight", q);
      out.emplace_back(prefix + ".weight_scale", scale);
    } else {
      out.emplace_back(prefix + ".weight", w.to(o.dtype));
    }
    out.emplace_back(prefix + ".bias", b.to(o.dtype));
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "transformer.layers." + std::to_string(l);
    layer_norm(p + ".input_layernorm");
    out.emplace_back(p + ".attention.rotary_emb.inv_freq", inv_freq.to(o.dtype));
    linear(p + ".attention.query_key_value", 3 * H, H);
    linear(p + ".attention.dense", H, H, kResidualGain);
    layer_norm(p + ".post_attention_layernorm");
    linear(p + ".mlp.dense_h_to_4h", I, H);
    linear(p + ".mlp.dense_4h_to_h", H, I, kResidualGain);
  }
  layer_norm("transformer.final_layernorm");
  if (o.write_lm_head) out.emplace_back("lm_head.weight", emb.clone());
  return out;
}

ModelConfig make_tiny_model(const std::string& dir, const TinyModelOptions& o) {
  ModelConfig c = tiny_model_config(o);
  WriteOptions w;
  w.format = o.format;
  w.shards = o.shards;
  write_checkpoint(dir, c, make_tiny_tensors(o), w);
  return c;
}

}  // namespace glmpipe
