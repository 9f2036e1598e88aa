// load_model_config / save_model_config: round trip, defaults, and errors naming file and key.
#include <gtest/gtest.h>

#include <fstream>

#include "checkpoint/model_config.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

const char* kRealConfig = R"({
  "_name_or_path": "THUDM/chatglm-6b", "architectures": ["ChatGLMModel"],
  "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig"},
  "bos_token_id": 130004, "eos_token_id": 130005, "mask_token_id": 130000, "gmask_token_id": 130001,
  "pad_token_id": 3, "hidden_size": 4096, "inner_hidden_size": 16384, "layernorm_epsilon": 1e-05,
  "max_sequence_length": 2048, "model_type": "chatglm", "num_attention_heads": 32, "num_layers": 28,
  "position_encoding_2d": true, "torch_dtype": "float16", "transformers_version": "4.23.1",
  "use_cache": true, "vocab_size": 130528})";

std::string write(const std::string& dir, const std::string& text) {
  std::ofstream(dir + "/config.json", std::ios::trunc) << text;
  return dir + "/config.json";
}

std::string error_of(const std::string& path) {
  try {
    load_model_config(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, ParsesTheRealChatGLM6BConfig) {
  const std::string dir = test::make_temp_dir("cfg");
  write(dir, kRealConfig);
  ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.vocab_size, 130528);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.head_dim(), 128);
  EXPECT_EQ(c.gmask_token_id, 130001);
  EXPECT_EQ(c.pad_token_id, 3);
  EXPECT_EQ(c.quantization_bit, 0);
  EXPECT_DOUBLE_EQ(c.layernorm_epsilon, 1e-5);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(ModelConfig, SaveLoadRoundTripAndInnerDefault) {
  const std::string dir = test::make_temp_dir("cfg");
  ModelConfig c;
  c.vocab_size = 100;
  c.hidden_size = 32;
  c.num_layers = 3;
  c.num_attention_heads = 4;
  c.inner_hidden_size = 96;
  c.bos_token_id = 97;
  c.eos_token_id = 98;
  c.mask_token_id = 95;
  c.gmask_token_id = 96;
  c.pad_token_id = 0;
  c.quantization_bit = 4;
  save_model_config(c, dir);
  ModelConfig r = load_model_config(dir + "/config.json");
  EXPECT_EQ(r.inner_hidden_size, 96);
  EXPECT_EQ(r.quantization_bit, 4);
  EXPECT_EQ(r.eos_token_id, 98);
  std::string s = std::string(kRealConfig);
  s.replace(s.find("\"inner_hidden_size\": 16384,"), 27, "");
  write(dir, s);
  EXPECT_EQ(load_model_config(dir).inner_hidden_size, 4 * 4096);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(ModelConfig, ErrorsNameFileAndKey) {
  const std::string dir = test::make_temp_dir("cfg");
  std::string p = write(dir, R"({"model_type": "chatglm", "vocab_size": 10})");
  std::string msg = error_of(p);
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;

  std::string s = kRealConfig;
  s.replace(s.find("\"model_type\": \"chatglm\""), 23, "\"model_type\": \"llama\"");
  msg = error_of(write(dir, s));
  EXPECT_NE(msg.find("model_type"), std::string::npos) << msg;

  s = kRealConfig;
  s.replace(s.find("\"num_layers\": 28"), 16, "\"num_layers\": \"x\"");
  msg = error_of(write(dir, s));
  EXPECT_NE(msg.find("num_layers"), std::string::npos) << msg;

  s = kRealConfig;
  s.replace(s.find("\"use_cache\": true"), 17, "\"quantization_bit\": 3");
  msg = error_of(write(dir, s));
  EXPECT_NE(msg.find("quantization_bit"), std::string::npos) << msg;

  msg = error_of(write(dir, "{not json"));
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  msg = error_of(dir + "/missing.json");
  EXPECT_NE(msg.find("missing.json"), std::string::npos) << msg;
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace glmpipe
