// config.json <-> ModelConfig. Required keys are checked one by one so that the error names the
// missing key; optional keys fall back to the ChatGLM-6B values (inner_hidden_size: 4 * hidden).
#include "checkpoint/model_config.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/mapped_file.h"
#include "common/error.h"

namespace glmpipe {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

template <typename T>
T get_value(const nlohmann::json& j, const std::string& file, const char* key) {
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << file << ": key \"" << key << "\" has the wrong type (" << j.at(key).dump() << ")";
  }
  return T{};
}

template <typename T>
void required(const nlohmann::json& j, const std::string& file, const char* key, T& out) {
  GLMPIPE_CHECK(j.contains(key) && !j.at(key).is_null()) << file << ": missing required key \"" << key << "\"";
  out = get_value<T>(j, file, key);
}

template <typename T>
void optional(const nlohmann::json& j, const std::string& file, const char* key, T& out) {
  if (j.contains(key) && !j.at(key).is_null()) out = get_value<T>(j, file, key);
}

}  // namespace

ModelConfig load_model_config(const std::string& path) {
  const std::string file = is_dir(path) ? path + "/config.json" : path;
  std::ifstream in(file);
  GLMPIPE_CHECK(in.good()) << file << ": cannot open model config";
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    GLMPIPE_FAIL() << file << ": invalid JSON: " << e.what();
  }
  GLMPIPE_CHECK(j.is_object()) << file << ": expected a JSON object";

  ModelConfig c;
  required(j, file, "model_type", c.model_type);
  GLMPIPE_CHECK(c.model_type == "chatglm")
      << file << ": key \"model_type\" is \"" << c.model_type << "\", expected \"chatglm\" (ChatGLM-6B v1)";
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

  auto positive = [&](const char* key, int64_t v) {
    GLMPIPE_CHECK(v > 0) << file << ": key \"" << key << "\" must be positive, got " << v;
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("num_layers", c.num_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("inner_hidden_size", c.inner_hidden_size);
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
  return c;
}

void save_model_config(const ModelConfig& c, const std::string& path) {
  const std::string file = is_dir(path) ? path + "/config.json" : path;
  nlohmann::ordered_json j;
  j["architectures"] = {"ChatGLMModel"};
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
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  write_file_atomically(file, j.dump(2) + "\n");
}

}  // namespace glmpipe
