// ChatGLM-6B (v1): config.json, the tensor schema (spec §1.3, §3.2) and the GLM prompt layout
// (spec §1.6). The forward pass is chatglm_shard.cpp.
#include <algorithm>

#include "common/error.h"
#include "model/config_json.h"
#include "model/family.h"

namespace glmpipe::detail {

void parse_chatglm_config(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  required(j, file, "vocab_size", c.vocab_size);
  required(j, file, "hidden_size", c.hidden_size);
  required(j, file, "num_layers", c.num_layers);
  required(j, file, "num_attention_heads", c.num_attention_heads);
  required(j, file, "layernorm_epsilon", c.layernorm_epsilon);
  required(j, file, "bos_token_id", c.bos_token_id);
  required(j, file, "eos_token_id", c.eos_token_id);
  required(j, file, "mask_token_id", c.mask_token_id);
  required(j, file, "gmask_token_id", c.gmask_token_id);
  c.inner_hidden_size = 4 * c.hidden_size;
  optional(j, file, "inner_hidden_size", c.inner_hidden_size);
  optional(j, file, "max_sequence_length", c.max_sequence_length);
  optional(j, file, "position_encoding_2d", c.position_encoding_2d);
  optional(j, file, "pad_token_id", c.pad_token_id);
  optional(j, file, "quantization_bit", c.quantization_bit);
  optional(j, file, "torch_dtype", c.torch_dtype);
  optional(j, file, "_name_or_path", c.name_or_path);
  c.tie_word_embeddings = true;  // HF's PretrainedConfig default: the official config has no key
  optional(j, file, "tie_word_embeddings", c.tie_word_embeddings);
  c.eos_token_ids = {c.eos_token_id};

  check_positive(file, "vocab_size", c.vocab_size);
  check_positive(file, "hidden_size", c.hidden_size);
  check_positive(file, "num_layers", c.num_layers);
  check_positive(file, "num_attention_heads", c.num_attention_heads);
  check_positive(file, "inner_hidden_size", c.inner_hidden_size);
  check_positive(file, "max_sequence_length", c.max_sequence_length);
  GLMPIPE_CHECK(c.hidden_size % c.num_attention_heads == 0)
      << file << ": hidden_size " << c.hidden_size << " is not divisible by num_attention_heads "
      << c.num_attention_heads;
  GLMPIPE_CHECK(c.quantization_bit == 0 || c.quantization_bit == 4 || c.quantization_bit == 8)
      << file << ": key \"quantization_bit\" must be 0, 4 or 8, got " << c.quantization_bit;
  GLMPIPE_CHECK(c.layernorm_epsilon > 0) << file << ": key \"layernorm_epsilon\" must be positive";
  auto in_vocab = [&](const char* key, int64_t v) {
    GLMPIPE_CHECK(v >= 0 && v < c.vocab_size)
        << file << ": key \"" << key << "\" = " << v << " is outside the vocabulary [0, " << c.vocab_size << ")";
  };
  in_vocab("bos_token_id", c.bos_token_id);
  in_vocab("eos_token_id", c.eos_token_id);
  in_vocab("mask_token_id", c.mask_token_id);
  in_vocab("gmask_token_id", c.gmask_token_id);
  in_vocab("pad_token_id", c.pad_token_id);
}

nlohmann::ordered_json chatglm_config_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {"ChatGLMModel"};
  // As THUDM/chatglm-6b's config.json: transformers' AutoConfig/AutoModel resolve the classes of the
  // modeling files shipped beside the weights through this map.
  j["auto_map"] = {{"AutoConfig", "configuration_chatglm.ChatGLMConfig"},
                   {"AutoModel", "modeling_chatglm.ChatGLMForConditionalGeneration"},
                   {"AutoModelForSeq2SeqLM", "modeling_chatglm.ChatGLMForConditionalGeneration"}};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["inner_hidden_size"] = c.inner_hidden_size;
  j["layernorm_epsilon"] = c.layernorm_epsilon;
  j["max_sequence_length"] = c.max_sequence_length;
  j["position_encoding_2d"] = c.position_encoding_2d;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["mask_token_id"] = c.mask_token_id;
  j["gmask_token_id"] = c.gmask_token_id;
  j["pad_token_id"] = c.pad_token_id;
  if (c.quantization_bit != 0) j["quantization_bit"] = c.quantization_bit;
  if (!c.tie_word_embeddings) j["tie_word_embeddings"] = false;  // the official file omits the default
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  return j;
}

// Module order of the reference (spec §1.3); the lm_head is tied to the word embedding.
ModelSchema chatglm_schema(const ModelConfig& c) {
  ModelSchema s;
  s.family = Family::kChatGLM;
  s.num_layers = static_cast<int>(c.num_layers);
  s.quantization_bit = c.quantization_bit;
  s.layer_prefix = "transformer.layers.";
  const int L = s.num_layers;
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.inner_hidden_size;
  s.units.push_back("transformer.word_embeddings");
  for (int l = 0; l < L; ++l) s.units.push_back("transformer.layers." + std::to_string(l));
  s.units.push_back("transformer.final_layernorm");
  s.units.push_back("lm_head");

  s.params.push_back({"transformer.word_embeddings.weight", ParamKind::kEmbedding, {V, H}, 0});
  for (int l = 0; l < L; ++l) {
    const std::string p = s.layer_prefix + std::to_string(l) + ".";
    const int u = 1 + l;
    auto norm = [&](const std::string& n) {
      s.params.push_back({p + n + ".weight", ParamKind::kNorm, {H}, u});
      s.params.push_back({p + n + ".bias", ParamKind::kNorm, {H}, u});
    };
    auto linear = [&](const std::string& n, int64_t out, int64_t in) {
      s.params.push_back({p + n, ParamKind::kLinear, {out, in}, u, /*bias=*/true, /*quantizable=*/true});
    };
    norm("input_layernorm");
    s.params.push_back({p + "attention.rotary_emb.inv_freq", ParamKind::kIgnored, {c.head_dim() / 4}, u});
    linear("attention.query_key_value", 3 * H, H);
    linear("attention.dense", H, H);
    norm("post_attention_layernorm");
    linear("mlp.dense_h_to_4h", I, H);
    linear("mlp.dense_4h_to_h", H, I);
  }
  s.params.push_back({"transformer.final_layernorm.weight", ParamKind::kNorm, {H}, L + 1});
  s.params.push_back({"transformer.final_layernorm.bias", ParamKind::kNorm, {H}, L + 1});
  ParamSpec head{"lm_head.weight", ParamKind::kHead, {V, H}, L + 2};
  // One tying rule, from the config (ModelConfig::tie_word_embeddings): tied, the embedding serves
  // as the head wherever the head is placed and lm_head.weight is never read; untied, it is read
  // everywhere and must be stored.
  head.optional = c.tie_word_embeddings;
  if (c.tie_word_embeddings) head.tied_to = "transformer.word_embeddings.weight";
  s.params.push_back(head);
  return s;
}

PromptLayout chatglm_prompt_layout(const ModelConfig& cfg, const std::vector<int64_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  auto find = [&](int64_t tok) {
    auto it = std::find(ids.begin(), ids.end(), tok);
    return it == ids.end() ? int64_t(-1) : int64_t(it - ids.begin());
  };
  PromptLayout p;
  p.ctx_len = find(cfg.bos_token_id);
  if (p.ctx_len < 0) p.ctx_len = n;
  p.mask_pos = find(cfg.gmask_token_id);
  if (p.mask_pos < 0) p.mask_pos = find(cfg.mask_token_id);
  if (p.mask_pos < 0) p.mask_pos = std::max<int64_t>(p.ctx_len - 1, 0);
  return p;
}

}  // namespace glmpipe::detail
