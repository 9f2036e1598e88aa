// ModelConfig: the HF `config.json` of a ChatGLM-family checkpoint, field names as in the file.
//
// One struct serves every family (model/family.h); `family` says which architecture the fields
// describe, detected from the file: ChatGLM-6B (v1) has `position_encoding_2d`, ChatGLM2/3 and
// GLM-4 (one architecture, "chatglm2") have `multi_query_attention` (chatglm2-family.md §1.1).
// Parsed by load_model_config(); an unknown model_type, a missing required field or an
// architecture switch glmpipe does not implement is an Error naming the file and the key.
//
// Fields shared by the families keep v1's names; v2+ names are read into them:
//   padded_vocab_size -> vocab_size, ffn_hidden_size -> inner_hidden_size,
//   seq_length -> max_sequence_length. v2+-only fields carry their HF names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace glmpipe {

enum class Family {
  kChatGLM,   // ChatGLM-6B (v1): 2D GLM positions, post-LN α residual, GeLU MLP, tied lm_head
  kChatGLM2,  // ChatGLM2-6B, ChatGLM3-6B, GLM-4-9B: RMSNorm, grouped KV, SwiGLU, untied output_layer
};

// How `rope_ratio` enters the rotary angles (chatglm2-family.md §1.2): ChatGLM3-32k/128k and
// GLM-4 multiply the base; THUDM's chatglm2-6b-32k divides the position index.
enum class RopeMode { kBaseScale, kPositionInterpolation };

struct ModelConfig {
  Family family = Family::kChatGLM;
  std::string model_type = "chatglm";
  int64_t vocab_size = 130528;          // v2+: padded_vocab_size
  int64_t hidden_size = 4096;
  int64_t num_layers = 28;
  int64_t num_attention_heads = 32;
  int64_t inner_hidden_size = 16384;    // v2+: ffn_hidden_size
  double layernorm_epsilon = 1e-5;
  int64_t max_sequence_length = 2048;   // v2+: seq_length
  bool position_encoding_2d = true;
  int64_t bos_token_id = 130004;   // <sop>          (v1 only; -1 for v2+)
  int64_t eos_token_id = 130005;   // <eop> / </s>   (first of eos_token_ids)
  int64_t mask_token_id = 130000;  // [MASK]         (v1 only; -1 for v2+)
  int64_t gmask_token_id = 130001; // [gMASK]        (v1 only; -1 for v2+)
  int64_t pad_token_id = 3;
  int quantization_bit = 0;        // 0 (float), 4 or 8 (published int4/int8 layout, spec §3)
  // config.json tie_word_embeddings; absent: the official default of the family (v1: HF's default
  // true, as ChatGLM-6B's config has no such key; v2+: false). Tied: the embedding matrix is the
  // head on every placement; untied: lm_head.weight / output_layer everywhere (model/shard.cpp).
  bool tie_word_embeddings = true;
  std::string torch_dtype = "float16";

  // v2+ (ChatGLM2/3, GLM-4). 0 means "as v1": kv_channels = hidden / heads, one KV group per head.
  int64_t kv_channels = 0;            // head size (heads × kv_channels need not equal hidden)
  int64_t multi_query_group_num = 0;  // KV groups G; query head h reads group ⌊h·G/heads⌋
  bool add_qkv_bias = true;
  double rope_ratio = 1.0;
  RopeMode rope_mode = RopeMode::kBaseScale;
  std::string rope_mode_reason;       // why rope_mode was chosen (printed at start-up)
  std::vector<int64_t> eos_token_ids; // every id of config eos_token_id (GLM-4: a list of 3)
  std::string name_or_path;           // "_name_or_path"

  int64_t head_dim() const { return kv_channels > 0 ? kv_channels : hidden_size / num_attention_heads; }
  int64_t kv_heads() const { return multi_query_group_num > 0 ? multi_query_group_num : num_attention_heads; }
};

const char* family_name(Family f);  // "chatglm" | "chatglm2"
const char* rope_mode_name(RopeMode m);  // "base_scale" | "position_interpolation"

// Reads DIR/config.json (or the file itself when `path` names a file). For v2+ with rope_ratio ≠ 1
// the rope mode is decided from the modeling_chatglm.py beside the config (when present), else
// from _name_or_path / auto_map (chatglm2-6b-32k interpolates positions, the rest scale the base);
// set_rope_mode() applies a deployment's override afterwards.
ModelConfig load_model_config(const std::string& path);
// Writes config.json in the HF layout of the family's official configuration class
// (used by make-tiny-model).
void save_model_config(const ModelConfig& cfg, const std::string& path);
// Parses "base_scale" | "position_interpolation" (Error naming `where` otherwise).
RopeMode parse_rope_mode(const std::string& s, const std::string& where);

}  // namespace glmpipe
