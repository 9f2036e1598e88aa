// Random checkpoints of every family, generated from the family's tensor schema (see tiny_model.h).
#include "model/tiny_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/error.h"
#include "model/family.h"

namespace glmpipe {

TinyFamily parse_tiny_family(const std::string& s) {
  if (s == "chatglm") return TinyFamily::kChatGLM;
  if (s == "chatglm2") return TinyFamily::kChatGLM2;
  if (s == "glm4") return TinyFamily::kGLM4;
  GLMPIPE_FAIL() << "tiny model: --family \"" << s << "\" (allowed: chatglm, chatglm2, glm4)";
  return TinyFamily::kChatGLM;
}

namespace {

void check_common(const TinyModelOptions& o) {
  GLMPIPE_CHECK(o.layers >= 1) << "tiny model: --layers must be >= 1, got " << o.layers;
  GLMPIPE_CHECK(o.hidden >= 1 && o.heads >= 1) << "tiny model: --hidden and --heads must be positive";
  GLMPIPE_CHECK(o.inner >= 0) << "tiny model: --inner must be >= 0 (0 = 4 * hidden)";
  GLMPIPE_CHECK(o.dtype == at::kFloat || o.dtype == at::kHalf || o.dtype == at::kBFloat16)
      << "tiny model: dtype must be float32, float16 or bfloat16, got " << o.dtype;
  GLMPIPE_CHECK(o.quantization_bit == 0 || o.quantization_bit == 4 || o.quantization_bit == 8)
      << "tiny model: --quantization-bit must be 0, 4 or 8, got " << o.quantization_bit;
  GLMPIPE_CHECK(o.shards >= 1) << "tiny model: --shards must be >= 1, got " << o.shards;
}

ModelConfig chatglm2_tiny_config(const TinyModelOptions& o) {
  const bool glm4 = o.family == TinyFamily::kGLM4;
  GLMPIPE_CHECK(o.vocab >= 16) << "tiny model: --vocab must be >= 16 for " << (glm4 ? "glm4" : "chatglm2") << ", got "
                               << o.vocab;
  ModelConfig c;
  c.family = Family::kChatGLM2;
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.num_layers = o.layers;
  c.num_attention_heads = o.heads;
  GLMPIPE_CHECK(o.kv_channels > 0 || o.hidden % o.heads == 0)
      << "tiny model: --hidden " << o.hidden << " is not divisible by --heads " << o.heads << " (or give --kv-channels)";
  c.kv_channels = o.kv_channels > 0 ? o.kv_channels : o.hidden / o.heads;
  GLMPIPE_CHECK(c.kv_channels % 4 == 0) << "tiny model: kv_channels " << c.kv_channels << " must be a multiple of 4";
  GLMPIPE_CHECK(o.kv_groups >= 1 && o.heads % o.kv_groups == 0)
      << "tiny model: --heads " << o.heads << " must be a multiple of --kv-groups " << o.kv_groups;
  c.multi_query_group_num = o.kv_groups;
  c.inner_hidden_size = o.inner ? o.inner : 4 * o.hidden;
  c.layernorm_epsilon = glm4 ? 1.5625e-7 : 1e-5;
  c.rope_ratio = o.rope_ratio > 0 ? o.rope_ratio : glm4 ? 500.0 : 1.0;
  c.max_sequence_length = 2048;
  c.position_encoding_2d = false;
  c.bos_token_id = c.mask_token_id = c.gmask_token_id = -1;
  const int64_t special = o.vocab - 14;  // GLM-4: <|endoftext|> is the first of 14 special ids
  c.eos_token_ids = glm4 ? std::vector<int64_t>{special, special + 7, special + 9} : std::vector<int64_t>{2};
  c.eos_token_id = c.eos_token_ids.front();
  c.pad_token_id = glm4 ? special : 0;
  c.name_or_path = !o.name_or_path.empty() ? o.name_or_path : glm4 ? "THUDM/glm-4-9b-chat" : "THUDM/chatglm3-6b";
  return c;
}

}  // namespace

ModelConfig tiny_model_config(const TinyModelOptions& o) {
  check_common(o);
  ModelConfig c;
  if (o.family != TinyFamily::kChatGLM) {
    c = chatglm2_tiny_config(o);
  } else {
    GLMPIPE_CHECK(o.hidden % o.heads == 0) << "tiny model: --hidden " << o.hidden << " is not divisible by --heads " << o.heads;
    GLMPIPE_CHECK((o.hidden / o.heads) % 4 == 0)
        << "tiny model: head_dim " << o.hidden / o.heads << " must be a multiple of 4 (2D rotary)";
    GLMPIPE_CHECK(o.vocab >= 8) << "tiny model: --vocab must be >= 8 (special ids live at the end), got " << o.vocab;
    c.vocab_size = o.vocab;
    c.hidden_size = o.hidden;
    c.num_layers = o.layers;
    c.num_attention_heads = o.heads;
    c.inner_hidden_size = o.inner ? o.inner : 4 * o.hidden;
    c.layernorm_epsilon = 1e-5;
    if (o.vocab > 130005) {  // large enough for ChatGLM-6B's own ids (spec §1.1): use them
      c.mask_token_id = 130000;
      c.gmask_token_id = 130001;
      c.bos_token_id = 130004;
      c.eos_token_id = 130005;
      c.pad_token_id = 3;
    } else {  // a small vocabulary: the same roles at its end
      c.mask_token_id = o.vocab - 5;
      c.gmask_token_id = o.vocab - 4;
      c.bos_token_id = o.vocab - 3;
      c.eos_token_id = o.vocab - 2;
      c.pad_token_id = 0;
    }
    c.eos_token_ids = {c.eos_token_id};
    c.tie_word_embeddings = o.tie_word_embeddings;
  }
  GLMPIPE_CHECK(o.quantization_bit != 4 || (c.hidden_size % 2 == 0 && c.inner_hidden_size % 2 == 0 &&
                                            c.num_attention_heads * c.head_dim() % 2 == 0))
      << "tiny model: int4 packing needs even hidden and inner sizes";
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

// v1 only: `gain` on the two projections that feed the residual. The reference's post-LN residual
// scales the normalized input by α = √56 ≈ 7.5, so sublayer outputs of unit size would leave every
// position dominated by its own token embedding (a random model would then greedily repeat its
// input token forever). Outputs of size ~α make the random model mix context and vary its output.
constexpr double kResidualGain = 8.0;

std::vector<std::pair<std::string, at::Tensor>> make_tiny_tensors(const TinyModelOptions& o) {
  const ModelConfig c = tiny_model_config(o);
  const ModelSchema schema = model_schema(c);
  const bool v1 = c.family == Family::kChatGLM;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const at::ScalarType norm_dtype = v1 && o.dtype == at::kHalf ? at::kFloat : o.dtype;
  auto normal = [&](std::vector<int64_t> shape, double mean, double std) {
    return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * std + mean;
  };
  std::vector<std::pair<std::string, at::Tensor>> out;
  at::Tensor emb;
  auto ends_with = [](const std::string& s, const char* suf) {
    const std::string x = suf;
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  auto linear = [&](const ParamSpec& p) {
    const int64_t out_f = p.shape[0], in_f = p.shape[1];
    const double gain = v1 && (ends_with(p.name, "attention.dense") || ends_with(p.name, "dense_4h_to_h")) ? kResidualGain : 1.0;
    at::Tensor w = normal({out_f, in_f}, 0, gain / std::sqrt(double(in_f)));
    // GELU outputs have a positive mean; rows summing to zero keep it from adding the same vector
    // to every position (which would make one token win everywhere).
    if (gain != 1.0) w = w - w.mean(1, true);
    at::Tensor b = v1 || p.bias ? normal({out_f}, 0, 0.02) : at::Tensor();
    if (o.quantization_bit && p.quantizable) {
      auto [q, scale] = quantize_weight_rows(w.to(o.dtype), o.quantization_bit);
      out.emplace_back(p.name + ".weight", q);
      out.emplace_back(p.name + ".weight_scale", scale);
    } else {
      out.emplace_back(p.name + ".weight", w.to(o.dtype));
    }
    if (p.bias) out.emplace_back(p.name + ".bias", b.to(o.dtype));
  };
  for (const ParamSpec& p : schema.params) {
    switch (p.kind) {
      case ParamKind::kEmbedding:
        emb = normal(p.shape, 0, 1).to(o.dtype);
        out.emplace_back(p.name, emb);
        break;
      case ParamKind::kNorm:
        out.emplace_back(p.name, (ends_with(p.name, ".bias") ? normal(p.shape, 0, 0.1) : normal(p.shape, 1, 0.1)).to(norm_dtype));
        break;
      case ParamKind::kIgnored: {  // rotary inv_freq as the reference's __init__ stores it (no rope_ratio)
        const int64_t rot = 2 * p.shape[0];
        out.emplace_back(p.name, at::pow(10000.0, at::arange(0, rot, 2, at::kFloat) / double(rot)).reciprocal().to(o.dtype));
        break;
      }
      case ParamKind::kLinear: linear(p); break;
      case ParamKind::kHead:
        if (!p.tied_to.empty() && !o.distinct_lm_head) {
          if (o.write_lm_head) out.emplace_back(p.name, emb.clone());
        } else if (p.tied_to.empty() || o.write_lm_head) {  // untied, or a tied one stored different
          out.emplace_back(p.name, normal(p.shape, 0, 1.0 / std::sqrt(double(p.shape[1]))).to(o.dtype));
        }
        break;
    }
  }
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
