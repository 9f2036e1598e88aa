// `glmpipe plan` end to end (run_command + nlohmann): the JSON contract, metadata from a real
// (tiny) checkpoint vs config.json alone, and infeasible / missing-model errors on stderr.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/model_config.h"
#include "checkpoint/tiny_model.h"
#include "common/error.h"
#include "planner/model_metadata.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::string plan_cmd(const std::string& config, const std::string& model, bool json) {
  return test::glmpipe_bin() + " plan --config " + test::source_dir() + "/configs/" + config +
         " --model " + model + (json ? " --json" : "");
}

TEST(PlanCli, JsonContractForT4FromConfigJsonOnly) {
  const std::string dir = test::make_temp_dir("plan_cfg");
  save_model_config(ModelConfig{}, dir + "/config.json");  // ChatGLM-6B config, no weights
  test::RunResult r = test::run_command(plan_cmd("t4_plus_cpu.yaml", dir, true));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["stages"].is_array());
  ASSERT_EQ(j["stages"].size(), 2u);
  const auto& s0 = j["stages"][0];
  const auto& s1 = j["stages"][1];
  EXPECT_EQ(s0["rank"].get<int>(), 0);
  EXPECT_EQ(s0["device"].get<std::string>(), "cuda:0");
  EXPECT_EQ(s1["device"].get<std::string>(), "cpu");
  auto units0 = s0["units"].get<std::vector<std::string>>();
  auto units1 = s1["units"].get<std::vector<std::string>>();
  ASSERT_EQ(units0.size(), 27u);  // embedding + 26 blocks (hand count in planner_plan_test)
  EXPECT_EQ(units0.front(), "transformer.word_embeddings");
  EXPECT_EQ(units0.back(), "transformer.layers.25");
  EXPECT_EQ(units1, (std::vector<std::string>{"transformer.layers.26", "transformer.layers.27",
                                              "transformer.final_layernorm", "lm_head"}));
  // 1.07 GB embedding + 26 blocks of 201,379,840 fp16 params; KV 26 * 2 * 2048 * 4096 * 2.
  EXPECT_EQ(s0["bytes"]["weights"].get<int64_t>(), 130528LL * 4096 * 2 + 26LL * 201379840 * 2);
  EXPECT_EQ(s0["bytes"]["kv_cache"].get<int64_t>(), 26LL * 2 * 2048 * 4096 * 2);
  for (const char* k : {"weights", "kv_cache", "activations", "reserve", "total", "budget", "headroom", "work"})
    EXPECT_TRUE(s1["bytes"][k].is_number_integer()) << k;
  // Per-token work: one fp16 embedding row + 26 blocks | 2 blocks + final_layernorm + lm_head.
  EXPECT_EQ(s0["bytes"]["work"].get<int64_t>(), 4096LL * 2 + 26LL * 201379840 * 2);
  EXPECT_EQ(s1["bytes"]["work"].get<int64_t>(), 2LL * 201379840 * 2 + 2LL * 4096 * 2 + 130528LL * 4096 * 2);
  EXPECT_EQ(s0["bytes"]["budget"].get<int64_t>(), 15000000000LL);
  EXPECT_EQ(j["strategy"].get<std::string>(), "sequential");
  EXPECT_EQ(j["max_seq_len"].get<int64_t>(), 2048);
  EXPECT_EQ(j["device_map"]["lm_head"].get<int>(), 1);

  test::RunResult table = test::run_command(plan_cmd("t4_plus_cpu.yaml", dir, false));
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("headroom"), std::string::npos);
  EXPECT_NE(table.out.find("work/token"), std::string::npos);
  EXPECT_NE(table.out.find("per-token work: slowest stage"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("transformer.layers.26"), std::string::npos);
}

TEST(PlanCli, InfeasibleAndMissingModelExitNonZeroWithReasonOnStderr) {
  const std::string dir = test::make_temp_dir("plan_big");
  save_model_config(ModelConfig{}, dir + "/config.json");
  // The tiny deployment (2 x 2 GiB CPU ranks) cannot hold ChatGLM-6B in float32.
  test::RunResult r = test::run_command(plan_cmd("tiny_cpu_2rank.yaml", dir, true));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("tiny_cpu_2rank.yaml: no placement fits"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank 0 (cpu)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("short by"), std::string::npos) << r.err;

  test::RunResult missing = test::run_command(plan_cmd("t4_plus_cpu.yaml", "/nonexistent/model", true));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("/nonexistent/model: model directory does not exist"), std::string::npos)
      << missing.err;
}

// A real checkpoint's tensor list: fp16 file with fp32 LayerNorms, counted at the compute dtype.
TEST(PlanCli, MetadataFromTinyCheckpointMatchesHandCount) {
  const std::string dir = test::make_temp_dir("plan_tiny");
  TinyModelOptions o;
  o.layers = 3;  // hidden 64, heads 4, inner 256, vocab 256
  o.dtype = at::kHalf;
  make_tiny_model(dir, o);
  const int64_t H = 64, I = 256, V = 256;
  const int64_t block = 3 * H * H + 3 * H + H * H + H + I * H + I + H * I + H + 4 * H;
  for (const char* dtype : {"float16", "float32"}) {
    const int64_t e = std::string(dtype) == "float32" ? 4 : 2;
    ModelMetadata m = metadata_from_checkpoint(Checkpoint::open(dir), dtype, "");
    ASSERT_EQ(m.units.size(), 6u);
    EXPECT_EQ(m.embedding().weight_bytes, V * H * e);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(m.layer(i).weight_bytes, block * e) << i;  // inv_freq ignored
    EXPECT_EQ(m.final_layernorm().weight_bytes, 2 * H * e);
    EXPECT_EQ(m.lm_head().weight_bytes, V * H * e);
    EXPECT_TRUE(m.lm_head_tied);  // v1 default: the stored lm_head.weight is not read
  }
  // Through the CLI with the tiny 3-rank deployment.
  test::RunResult r = test::run_command(plan_cmd("tiny_cpu_3rank.yaml", dir, true));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  int64_t sum = 0;
  for (const auto& s : j["stages"]) sum += s["bytes"]["weights"].get<int64_t>();
  EXPECT_EQ(sum, (2 * V * H + 3 * block + 2 * H) * 4);  // tiny configs compute in float32
  EXPECT_NE(j["model_source"].get<std::string>().find("checkpoint"), std::string::npos);

  // int4 checkpoint without lm_head: stored bytes, tied head.
  const std::string q = test::make_temp_dir("plan_tiny_q4");
  o.quantization_bit = 4;
  o.write_lm_head = false;
  make_tiny_model(q, o);
  ModelMetadata m4 = metadata_from_checkpoint(Checkpoint::open(q), "float16", "");
  EXPECT_EQ(m4.quantization, "int4");
  const int64_t rows = 3 * H + H + I + H, linear = 3 * H * H + H * H + I * H + H * I;
  // stored int4 + fp16 scales (kept in fp32 by the loader: 4 bytes a row) + float biases and norms
  EXPECT_EQ(m4.layer(1).weight_bytes, linear / 2 + rows * 4 + (rows + 4 * H) * 2);
  EXPECT_TRUE(m4.lm_head_tied);
  EXPECT_EQ(m4.lm_head().weight_bytes, V * H * 2);
  EXPECT_THROW(metadata_from_checkpoint(Checkpoint::open(q), "float16", "int8"), Error);
}

}  // namespace
}  // namespace glmpipe
