// ChatGLM2/3 and GLM-4 through the CLI, as users run them: make-tiny-model --family, `glmpipe
// forward` against the independent PyTorch reference scripts/chatglm2_ref.py (multi-layer,
// 4 rotary frequencies, grouped KV, rope_ratio as base scaling and as position interpolation,
// the YAML override, int4), 2-, 3- and 4-rank CPU pipelines bit-identical to one process in both
// formats with tensors straddling shard files, and `glmpipe plan` showing the GQA-sized KV cache.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/npy.h"
#include "model/family.h"
#include "model/model_config.h"
#include "model/qgemv.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

const char* kPython = "/usr/bin/python3";

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

test::RunResult glmpipe(const std::string& args) {
  return test::run_command("timeout 180 " + test::glmpipe_bin() + " " + args);
}

bool have_torch() { return test::run_command(std::string(kPython) + " -c 'import torch, numpy'").exit_code == 0; }

// A CPU deployment of `n` one-thread ranks (+ `extra` top-level YAML lines).
std::string deployment(const std::string& dir, const std::string& name, int n, const std::string& placement,
                       const std::string& extra = "") {
  std::string y = "# test\nmodel: {path: unused, dtype: float32}\n" + extra + "ranks:\n";
  for (int i = 0; i < n; ++i) y += "  - {device: cpu, max_memory: 2GiB, threads: 1}\n";
  y += "placement: " + placement + "\nkv_cache: {max_batch: 2, max_seq_len: 256}\nreserve: {cpu: 64MiB}\n";
  return write_file(dir + "/" + name + ".yaml", y);
}

const std::string kIds = "11,42,7,150,96,97,33,201,5,77,3,18";

class ChatGLM2Cli : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir("glm2cli"); }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string make(const std::string& name, const std::string& args) {
    const std::string d = dir_ + "/" + name;
    auto r = glmpipe("make-tiny-model " + d + " --layers 3 --hidden 64 --heads 4 --vocab 256 --seed 5 " + args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return d;
  }
  at::Tensor forward(const std::string& model, const std::string& extra, int prefill = 7) {
    const std::string out = dir_ + "/fwd.npy";
    std::remove(out.c_str());
    auto r = glmpipe("forward --model " + model + " --threads 1 --ids " + kIds + " --prefill " + std::to_string(prefill) +
                     " --out " + out + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? load_npy(out) : at::Tensor();
  }
  at::Tensor reference(const std::string& model, const std::string& rope_mode) {
    const std::string out = dir_ + "/ref.npy";
    auto r = test::run_command(std::string(kPython) + " " + test::source_dir() + "/scripts/chatglm2_ref.py logits --model " +
                               model + " --ids " + kIds + " --out " + out + " --rope-mode " + rope_mode);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? load_npy(out) : at::Tensor();
  }
  static float rel(const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<float>() / std::max(1.0f, b.abs().max().item<float>());
  }
  std::string dir_;
};

TEST_F(ChatGLM2Cli, TinyModelLayoutAndConfigAsTheOfficialClassWritesThem) {
  const std::string m = make("glm4", "--family glm4 --format safetensors --shards 3");
  auto j = nlohmann::json::parse(test::read_file(m + "/config.json"));
  EXPECT_EQ(j["model_type"], "chatglm");
  EXPECT_EQ(j["architectures"][0], "ChatGLMModel");
  EXPECT_TRUE(j["multi_query_attention"].get<bool>());
  EXPECT_EQ(j["multi_query_group_num"], 2);
  EXPECT_EQ(j["kv_channels"], 16);
  EXPECT_EQ(j["padded_vocab_size"], 256);
  EXPECT_DOUBLE_EQ(j["layernorm_epsilon"].get<double>(), 1.5625e-7);
  EXPECT_EQ(j["rope_ratio"], 500);
  EXPECT_EQ(j["eos_token_id"].size(), 3u);
  EXPECT_FALSE(j.contains("vocab_size"));
  auto idx = nlohmann::json::parse(test::read_file(m + "/model.safetensors.index.json"));
  std::set<std::string> files;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) files.insert(it.value());
  EXPECT_EQ(files.size(), 3u);
  EXPECT_EQ(idx["weight_map"]["transformer.output_layer.weight"], "model-00003-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["transformer.encoder.layers.0.self_attention.query_key_value.weight"].get<std::string>(),
            "model-00001-of-00003.safetensors");
  // Every schema tensor is written, nothing else.
  ModelConfig c = load_model_config(m);
  std::set<std::string> want;
  for (const TensorSpec& t : model_schema(c).tensors()) want.insert(t.name);
  std::set<std::string> got;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) got.insert(it.key());
  EXPECT_EQ(got, want);
}

TEST_F(ChatGLM2Cli, ForwardMatchesIndependentReference) {
  if (!have_torch()) GTEST_SKIP() << kPython << " has no torch/numpy";
  struct Case {
    std::string name, args, rope_mode, extra;
  };
  const std::string pi_yaml = deployment(dir_, "pi_override", 1, "balanced", "rope_mode: base_scale\n");
  const std::vector<Case> cases = {
      {"chatglm2", "--family chatglm2 --kv-groups 2", "base_scale", ""},
      {"glm4_mqa", "--family glm4 --kv-groups 1", "base_scale", ""},               // base x 500
      {"glm4_kvc", "--family glm4 --kv-groups 4 --kv-channels 24", "base_scale", ""},  // 4 x 24 != 64
      {"pi32k", "--family chatglm2 --rope-ratio 16 --name-or-path THUDM/chatglm2-6b-32k", "position_interpolation", ""},
      {"pi32k_override", "--family chatglm2 --rope-ratio 16 --name-or-path THUDM/chatglm2-6b-32k", "base_scale",
       "--config " + pi_yaml},
      {"int4", "--family glm4 --quantization-bit 4", "base_scale", ""},
  };
  at::Tensor base_scale_32k, pi_32k;
  for (const Case& c : cases) {
    const std::string m = make(c.name, c.args + " --format bin --shards 2");
    auto got = forward(m, c.extra);
    auto want = reference(m, c.rope_mode);
    ASSERT_TRUE(got.defined() && want.defined()) << c.name;
    ASSERT_EQ(got.sizes(), want.sizes()) << c.name;
    // The CPU int8/int4 row kernels (model/qgemv*) of the cached one-token steps multiply quantized
    // activations: int8 per 32-column block on AVX-512 and AVX2 (measured 7.3e-3 of the logit range
    // here), int16 per 256-column block otherwise (measured 6.2e-5); float paths agree to ~1e-6.
    const double int4_bound = gemv_isa_for(WeightFormat::kInt4) != KernelIsa::kPortable ? 2e-2 : 2e-4;
    EXPECT_LE(rel(got, want), c.name == "int4" ? int4_bound : 1e-5) << c.name;
    if (c.name == "pi32k") pi_32k = got;
    if (c.name == "pi32k_override") base_scale_32k = got;
  }
  // The two meanings of rope_ratio really differ (so each case above can fail).
  EXPECT_GT(rel(pi_32k, base_scale_32k), 1e-3);
}

TEST_F(ChatGLM2Cli, RopeChoiceIsPrintedAtStartUp) {
  const std::string m = make("pi", "--family chatglm2 --rope-ratio 16 --name-or-path THUDM/chatglm2-6b-32k");
  auto r = glmpipe("generate --model " + m + " --threads 1 --ids 5,6,7 --max-new-tokens 2 --greedy --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("position_interpolation"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("chatglm2-6b-32k"), std::string::npos) << r.err;
}

class ChatGLM2Pipeline : public ChatGLM2Cli, public ::testing::WithParamInterface<std::string> {};

TEST_P(ChatGLM2Pipeline, ForwardAndGenerateBitIdenticalToSingleProcess) {
  // 6 blocks over 3 files: tensors of a block straddle two shard files (loaded per tensor).
  const std::string m = dir_ + "/model";
  auto mk = glmpipe("make-tiny-model " + m + " --family glm4 --layers 6 --hidden 64 --heads 4 --vocab 256 --seed 11 --shards 3 --format " +
                    GetParam());
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const std::vector<std::string> configs = {
      deployment(dir_, "two", 2, "balanced"),
      deployment(dir_, "three", 3, "balanced"),
      deployment(dir_, "four_map", 4,
                 "{transformer.embedding: 0, transformer.encoder.layers.0-2: 1, transformer.encoder.layers.3-5: 2, "
                 "transformer.encoder.final_layernorm: 3, transformer.output_layer: 3}"),
  };
  auto want = forward(m, "");
  ASSERT_TRUE(want.defined());
  const std::string gen = " --ids 11,42,7,150 --max-new-tokens 8 --greedy --print-ids";
  auto single = glmpipe("generate --model " + m + " --threads 1" + gen);
  ASSERT_EQ(single.exit_code, 0) << single.err;
  for (const auto& cfg : configs) {
    auto got = forward(m, "--config " + cfg);
    ASSERT_TRUE(got.defined()) << cfg;
    EXPECT_TRUE(at::equal(got, want)) << cfg << ": max diff " << (got - want).abs().max().item<float>();
    auto r = glmpipe("generate --config " + cfg + " --model " + m + gen);
    ASSERT_EQ(r.exit_code, 0) << cfg << "\n" << r.err;
    EXPECT_EQ(r.out, single.out) << cfg;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, ChatGLM2Pipeline, ::testing::Values("bin", "safetensors"));

TEST_F(ChatGLM2Cli, PlanShowsTheGroupedKvCache) {
  const std::string m = make("plan", "--family glm4 --kv-groups 2");
  const std::string cfg = deployment(dir_, "plan2", 2, "balanced");
  auto r = glmpipe("plan --config " + cfg + " --model " + m + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const int64_t per_token = 3 * 2 * 2 * 16 * 4;  // layers · (K+V) · groups · kv_channels · fp32
  EXPECT_EQ(j["kv_bytes_per_token"], per_token);
  EXPECT_EQ(j["kv_heads"], 2);
  int64_t kv = 0;
  for (const auto& s : j["stages"]) kv += s["bytes"]["kv_cache"].get<int64_t>();
  EXPECT_EQ(kv, per_token * 2 * 256);  // max_batch 2 x max_seq_len 256
  EXPECT_EQ(j["device_map"].begin().key(), "transformer.embedding");
  auto t = glmpipe("plan --config " + cfg + " --model " + m);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("2 KV heads x 16"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("transformer.encoder.layers.2"), std::string::npos) << t.out;
}

// The example GLM-4-9B deployments plan with the real GLM-4-9B-chat config (chatglm2-family.md §1.2).
TEST_F(ChatGLM2Cli, Glm4ExampleDeploymentsPlan) {
  write_file(dir_ + "/config.json", R"({"_name_or_path": "THUDM/glm-4-9b-chat", "model_type": "chatglm",
    "architectures": ["ChatGLMModel"], "add_bias_linear": false, "add_qkv_bias": true,
    "apply_query_key_layer_scaling": true, "apply_residual_connection_post_layernorm": false,
    "attention_dropout": 0.0, "attention_softmax_in_fp32": true, "attn_implementation": "sdpa",
    "bias_dropout_fusion": true, "ffn_hidden_size": 13696, "fp32_residual_connection": false,
    "hidden_dropout": 0.0, "hidden_size": 4096, "kv_channels": 128, "layernorm_epsilon": 1.5625e-07,
    "multi_query_attention": true, "multi_query_group_num": 2, "num_attention_heads": 32,
    "num_hidden_layers": 40, "num_layers": 40, "rope_ratio": 500, "original_rope": true,
    "padded_vocab_size": 151552, "post_layer_norm": true, "rmsnorm": true, "seq_length": 131072,
    "use_cache": true, "torch_dtype": "bfloat16", "transformers_version": "4.44.0",
    "tie_word_embeddings": false, "eos_token_id": [151329, 151336, 151338], "pad_token_id": 151329})");
  for (const char* f : {"glm4_9b_two_12gb.yaml", "glm4_9b_16gb_plus_cpu.yaml", "glm4_9b_cpu_2rank.yaml"}) {
    auto r = glmpipe(std::string("plan --json --config ") + test::source_dir() + "/configs/glm4/" + f + " --model " + dir_);
    ASSERT_EQ(r.exit_code, 0) << f << "\n" << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["num_stages"], 2) << f;
    EXPECT_EQ(j["kv_bytes_per_token"], 40 * 2 * 2 * 128 * 2) << f;  // 40 KiB (chatglm2-family.md §1.6)
    EXPECT_EQ(j["model_family"], "chatglm2");
  }
}

}  // namespace
