// ModelConfig: the HF `config.json` of a ChatGLM-6B (v1) checkpoint, field names as in the file.
// Parsed by load_model_config(); an unknown model_type or a missing required field is an Error
// naming the file and the key.
#pragma once

#include <cstdint>
#include <string>

namespace glmpipe {

struct ModelConfig {
  std::string model_type = "chatglm";
  int64_t vocab_size = 130528;
  int64_t hidden_size = 4096;
  int64_t num_layers = 28;
  int64_t num_attention_heads = 32;
  int64_t inner_hidden_size = 16384;
  double layernorm_epsilon = 1e-5;
  int64_t max_sequence_length = 2048;
  bool position_encoding_2d = true;
  int64_t bos_token_id = 130004;   // <sop>
  int64_t eos_token_id = 130005;   // <eop>
  int64_t mask_token_id = 130000;  // [MASK]
  int64_t gmask_token_id = 130001; // [gMASK]
  int64_t pad_token_id = 3;
  int quantization_bit = 0;        // 0 (float), 4 or 8 (published int4/int8 layout, spec §3)
  std::string torch_dtype = "float16";

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Reads DIR/config.json (or the file itself when `path` names a file).
ModelConfig load_model_config(const std::string& path);
// Writes config.json in the HF layout (used by make-tiny-model).
void save_model_config(const ModelConfig& cfg, const std::string& path);

}  // namespace glmpipe
