// ChatGLM2-6B, ChatGLM3-6B and GLM-4-9B (one architecture, chatglm2-family.md §1): config.json as
// the official ChatGLMConfig reads and writes it, the tensor schema (§1.4) and how rope_ratio is
// meant (§1.2). The forward pass is chatglm2_shard.cpp.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "model/config_json.h"
#include "model/family.h"

namespace glmpipe::detail {
namespace {

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// config.json alone does not say what rope_ratio means (chatglm2-family.md §1.2): THUDM's
// chatglm2-6b-32k modeling file divides the position index by it, the ChatGLM3/GLM-4 files multiply
// the base. Decided, in this order, from the modeling file shipped beside the weights, then from
// _name_or_path / auto_map. A deployment's top-level `rope_mode:` overrides it (launcher/session.cpp).
void decide_rope_mode(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  const std::string dir = file.find('/') == std::string::npos ? "." : file.substr(0, file.rfind('/'));
  std::ifstream py(dir + "/modeling_chatglm.py");
  if (py.good()) {
    std::stringstream ss;
    ss << py.rdbuf();
    const std::string src = ss.str();
    const bool scales_base = src.find("base * self.rope_ratio") != std::string::npos ||
                             src.find("base = base * rope_ratio") != std::string::npos;
    const bool interpolates = src.find("/ self.rope_ratio") != std::string::npos ||
                              src.find("/ rope_ratio") != std::string::npos;
    if (scales_base != interpolates) {
      c.rope_mode = scales_base ? RopeMode::kBaseScale : RopeMode::kPositionInterpolation;
      c.rope_mode_reason = dir + "/modeling_chatglm.py " + (scales_base ? "multiplies the base" : "divides positions") +
                           " by rope_ratio";
      return;
    }
  }
  std::string names = lower(c.name_or_path);
  if (j.contains("auto_map") && j["auto_map"].is_object())
    for (auto it = j["auto_map"].begin(); it != j["auto_map"].end(); ++it)
      if (it.value().is_string()) names += " " + lower(it.value().get<std::string>());
  if (names.find("chatglm2-6b-32k") != std::string::npos) {
    c.rope_mode = RopeMode::kPositionInterpolation;
    c.rope_mode_reason = "_name_or_path/auto_map name chatglm2-6b-32k (its modeling file interpolates positions)";
  } else {
    c.rope_mode = RopeMode::kBaseScale;
    c.rope_mode_reason = "ChatGLM3/GLM-4 rule (no chatglm2-6b-32k in _name_or_path/auto_map): base x rope_ratio";
  }
}

// Architecture switches of ChatGLMConfig that the official checkpoints all set one way; the others
// would need code glmpipe does not have, so they are refused by name.
void require_flag(const nlohmann::json& j, const std::string& file, const char* key, bool want, bool dflt) {
  bool v = dflt;
  optional(j, file, key, v);
  GLMPIPE_CHECK(v == want) << file << ": key \"" << key << "\" = " << (v ? "true" : "false")
                           << " is not supported (ChatGLM2/3 and GLM-4 checkpoints use " << (want ? "true" : "false")
                           << ")";
}

}  // namespace

void parse_chatglm2_config(const nlohmann::json& j, const std::string& file, ModelConfig& c) {
  required(j, file, "padded_vocab_size", c.vocab_size);
  required(j, file, "hidden_size", c.hidden_size);
  required(j, file, "num_layers", c.num_layers);
  required(j, file, "num_attention_heads", c.num_attention_heads);
  required(j, file, "kv_channels", c.kv_channels);
  required(j, file, "ffn_hidden_size", c.inner_hidden_size);
  required(j, file, "layernorm_epsilon", c.layernorm_epsilon);
  bool mqa = false;
  optional(j, file, "multi_query_attention", mqa);
  c.multi_query_group_num = 1;  // class default
  if (mqa) required(j, file, "multi_query_group_num", c.multi_query_group_num);
  else c.multi_query_group_num = c.num_attention_heads;
  c.max_sequence_length = 2048;
  optional(j, file, "seq_length", c.max_sequence_length);
  c.add_qkv_bias = false;  // class default
  optional(j, file, "add_qkv_bias", c.add_qkv_bias);
  optional(j, file, "rope_ratio", c.rope_ratio);
  c.tie_word_embeddings = false;  // the official value (and class default) of ChatGLM2/3 and GLM-4
  optional(j, file, "tie_word_embeddings", c.tie_word_embeddings);
  GLMPIPE_CHECK(!c.tie_word_embeddings)
      << file << ": key \"tie_word_embeddings\" is true, but this family's head transformer.output_layer is "
      << "never tied to the embedding (glmpipe implements the official untied head only)";
  c.tie_word_embeddings = false;
  optional(j, file, "quantization_bit", c.quantization_bit);
  optional(j, file, "torch_dtype", c.torch_dtype);
  optional(j, file, "_name_or_path", c.name_or_path);
  c.position_encoding_2d = false;
  c.bos_token_id = c.mask_token_id = c.gmask_token_id = -1;  // in the tokenizer, not in config.json
  c.pad_token_id = 0;
  optional(j, file, "pad_token_id", c.pad_token_id);
  c.eos_token_ids = {2};
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) c.eos_token_ids = get_value<std::vector<int64_t>>(j, file, "eos_token_id");
  else if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) c.eos_token_ids = {get_value<int64_t>(j, file, "eos_token_id")};
  GLMPIPE_CHECK(!c.eos_token_ids.empty()) << file << ": key \"eos_token_id\" is an empty list";
  GLMPIPE_CHECK(c.eos_token_ids.size() <= 4)  // stage/step_message.h kMaxStopIds
      << file << ": key \"eos_token_id\" lists " << c.eos_token_ids.size() << " ids, at most 4 are supported";
  c.eos_token_id = c.eos_token_ids.front();

  require_flag(j, file, "rmsnorm", true, true);
  require_flag(j, file, "post_layer_norm", true, true);
  require_flag(j, file, "original_rope", true, true);
  require_flag(j, file, "add_bias_linear", false, false);
  require_flag(j, file, "apply_residual_connection_post_layernorm", false, false);
  GLMPIPE_CHECK(!j.contains("pre_seq_len") || j["pre_seq_len"].is_null())
      << file << ": key \"pre_seq_len\" = " << j["pre_seq_len"].dump()
      << ": p-tuning v2 prefixes (transformer.prefix_encoder) are not supported; use a merged checkpoint";

  check_positive(file, "padded_vocab_size", c.vocab_size);
  check_positive(file, "hidden_size", c.hidden_size);
  check_positive(file, "num_layers", c.num_layers);
  check_positive(file, "num_attention_heads", c.num_attention_heads);
  check_positive(file, "kv_channels", c.kv_channels);
  check_positive(file, "ffn_hidden_size", c.inner_hidden_size);
  check_positive(file, "multi_query_group_num", c.multi_query_group_num);
  check_positive(file, "seq_length", c.max_sequence_length);
  GLMPIPE_CHECK(c.num_attention_heads % c.multi_query_group_num == 0)
      << file << ": num_attention_heads " << c.num_attention_heads << " is not a multiple of multi_query_group_num "
      << c.multi_query_group_num;
  GLMPIPE_CHECK(c.kv_channels % 4 == 0)
      << file << ": kv_channels " << c.kv_channels << " must be a multiple of 4 (rotary on half the head, in pairs)";
  GLMPIPE_CHECK(c.rope_ratio > 0) << file << ": key \"rope_ratio\" must be positive, got " << c.rope_ratio;
  GLMPIPE_CHECK(c.layernorm_epsilon > 0) << file << ": key \"layernorm_epsilon\" must be positive";
  GLMPIPE_CHECK(c.quantization_bit == 0 || c.quantization_bit == 4 || c.quantization_bit == 8)
      << file << ": key \"quantization_bit\" must be 0, 4 or 8, got " << c.quantization_bit;
  for (int64_t id : c.eos_token_ids)
    GLMPIPE_CHECK(id >= 0 && id < c.vocab_size)
        << file << ": key \"eos_token_id\" has " << id << ", outside the vocabulary [0, " << c.vocab_size << ")";
  if (c.rope_ratio != 1.0) decide_rope_mode(j, file, c);
  else c.rope_mode_reason = "rope_ratio 1";
}

// As ChatGLMConfig.save_pretrained writes it (the attributes of the class, then the
// PretrainedConfig ones), e.g. chatglm3-6b / glm-4-9b-chat config.json.
nlohmann::ordered_json chatglm2_config_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  if (!c.name_or_path.empty()) j["_name_or_path"] = c.name_or_path;
  j["model_type"] = "chatglm";
  j["architectures"] = {"ChatGLMModel"};
  j["auto_map"] = {{"AutoConfig", "configuration_chatglm.ChatGLMConfig"},
                   {"AutoModel", "modeling_chatglm.ChatGLMForConditionalGeneration"},
                   {"AutoModelForCausalLM", "modeling_chatglm.ChatGLMForConditionalGeneration"},
                   {"AutoModelForSeq2SeqLM", "modeling_chatglm.ChatGLMForConditionalGeneration"},
                   {"AutoModelForSequenceClassification", "modeling_chatglm.ChatGLMForSequenceClassification"}};
  j["add_bias_linear"] = false;
  j["add_qkv_bias"] = c.add_qkv_bias;
  j["apply_query_key_layer_scaling"] = true;
  j["apply_residual_connection_post_layernorm"] = false;
  j["attention_dropout"] = 0.0;
  j["attention_softmax_in_fp32"] = true;
  j["bias_dropout_fusion"] = true;
  j["ffn_hidden_size"] = c.inner_hidden_size;
  j["fp32_residual_connection"] = false;
  j["hidden_dropout"] = 0.0;
  j["hidden_size"] = c.hidden_size;
  j["kv_channels"] = c.head_dim();
  j["layernorm_epsilon"] = c.layernorm_epsilon;
  j["multi_query_attention"] = true;
  j["multi_query_group_num"] = c.kv_heads();
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_layers"] = c.num_layers;
  j["original_rope"] = true;
  j["padded_vocab_size"] = c.vocab_size;
  j["post_layer_norm"] = true;
  j["rmsnorm"] = true;
  if (c.rope_ratio != 1.0) j["rope_ratio"] = c.rope_ratio;
  j["seq_length"] = c.max_sequence_length;
  j["use_cache"] = true;
  if (c.quantization_bit != 0) j["quantization_bit"] = c.quantization_bit;
  j["torch_dtype"] = c.torch_dtype;
  j["transformers_version"] = "4.44.0";
  j["tie_word_embeddings"] = false;
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  else j["eos_token_id"] = c.eos_token_id;
  j["pad_token_id"] = c.pad_token_id;
  return j;
}

// chatglm2-family.md §1.4; QKV rows are [Q of all heads | K of G groups | V of G groups].
ModelSchema chatglm2_schema(const ModelConfig& c) {
  ModelSchema s;
  s.family = Family::kChatGLM2;
  s.num_layers = static_cast<int>(c.num_layers);
  s.quantization_bit = c.quantization_bit;
  s.layer_prefix = "transformer.encoder.layers.";
  const int L = s.num_layers;
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.inner_hidden_size, d = c.head_dim();
  const int64_t qkv = (c.num_attention_heads + 2 * c.kv_heads()) * d, attn = c.num_attention_heads * d;
  s.units.push_back("transformer.embedding");
  for (int l = 0; l < L; ++l) s.units.push_back(s.layer_prefix + std::to_string(l));
  s.units.push_back("transformer.encoder.final_layernorm");
  s.units.push_back("transformer.output_layer");

  s.params.push_back({"transformer.embedding.word_embeddings.weight", ParamKind::kEmbedding, {V, H}, 0});
  s.params.push_back({"transformer.rotary_pos_emb.inv_freq", ParamKind::kIgnored, {d / 4}, 0});
  for (int l = 0; l < L; ++l) {
    const std::string p = s.layer_prefix + std::to_string(l) + ".";
    const int u = 1 + l;
    auto linear = [&](const std::string& n, int64_t out, int64_t in, bool bias) {
      s.params.push_back({p + n, ParamKind::kLinear, {out, in}, u, bias, /*quantizable=*/true});
    };
    s.params.push_back({p + "input_layernorm.weight", ParamKind::kNorm, {H}, u});
    linear("self_attention.query_key_value", qkv, H, c.add_qkv_bias);
    linear("self_attention.dense", H, attn, false);
    s.params.push_back({p + "post_attention_layernorm.weight", ParamKind::kNorm, {H}, u});
    linear("mlp.dense_h_to_4h", 2 * I, H, false);
    linear("mlp.dense_4h_to_h", H, I, false);
  }
  s.params.push_back({"transformer.encoder.final_layernorm.weight", ParamKind::kNorm, {H}, L + 1});
  s.params.push_back({"transformer.output_layer.weight", ParamKind::kHead, {V, H}, L + 2});
  return s;
}

}  // namespace glmpipe::detail
