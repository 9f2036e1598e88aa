// accelerate's own placement forms, read from deployment YAML: device_map keys that are any module
// prefix ("", transformer, transformer.layers, transformer.layers.3), values a rank index, a
// rank's device or disk; max_memory as accelerate's dict, integers and unit strings. Each form must
// give the same plan as its glmpipe spelling; maps that split a block or leave modules unplaced are
// refused naming them; --hf-device-map prints accelerate's JSON shape.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <string>

#include "checkpoint/model_config.h"
#include "common/error.h"
#include "planner/deployment.h"
#include "planner/model_metadata.h"
#include "planner/plan.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

ModelMetadata glm6b() { return synthesize_metadata(ModelConfig{}, "float16", ""); }

Plan plan_of(const std::string& yaml, const ModelMetadata& meta = glm6b()) {
  return make_plan(meta, parse_deployment("model: {path: /m, dtype: float16}\n" + yaml, "d.yaml"));
}

std::string error_of(const std::string& yaml) {
  try {
    plan_of(yaml);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The JSON without the strategy name (a map and a strategy that agree give the same stages).
std::string stages_of(const Plan& p) {
  nlohmann::json j = nlohmann::json::parse(p.to_json());
  return j["stages"].dump();
}

const char* kThreeRanks =
    "ranks:\n  - {device: cuda:0, max_memory: 15GB}\n  - {device: cuda:1, max_memory: 15GB}\n"
    "  - {device: cpu, max_memory: 30GiB}\nkv_cache: {max_batch: 1, max_seq_len: 512}\n";

TEST(PlannerAccelerate, WholeModelKeyEqualsTheUnitMap) {
  const std::string one = "ranks: [{device: cpu, max_memory: 40GiB}]\nkv_cache: {max_seq_len: 512}\n";
  const std::string explicit_map =
      one + "placement: {transformer.word_embeddings: 0, transformer.layers.0-27: 0, "
            "transformer.final_layernorm: 0, lm_head: 0}\n";
  const std::string want = stages_of(plan_of(explicit_map));
  EXPECT_EQ(stages_of(plan_of(one + "placement: {\"\": cpu}\n")), want);
  EXPECT_EQ(stages_of(plan_of(one + "placement: {\"\": 0}\n")), want);
  EXPECT_EQ(stages_of(plan_of(one + "placement: {transformer: cpu, lm_head: cpu}\n")), want);
  EXPECT_EQ(stages_of(plan_of(one + "placement: {transformer.word_embeddings: 0, transformer.layers: 0, "
                                    "transformer.final_layernorm: 0, lm_head: 0}\n")),
            want);
  EXPECT_EQ(stages_of(plan_of(one + "placement: sequential\n")), want);
}

TEST(PlannerAccelerate, PrefixKeysResolveLongestFirstLikeAccelerate) {
  const std::string ranks = kThreeRanks;
  const std::string glmpipe_map =
      ranks + "placement: {transformer.word_embeddings: 0, transformer.layers.0-12: 0, transformer.layers.13-25: 1, "
              "transformer.layers.26-27: 2, transformer.final_layernorm: 2, lm_head: 2}\n";
  const std::string want = stages_of(plan_of(glmpipe_map));
  // "" names everything, the more specific keys take their modules back.
  EXPECT_EQ(stages_of(plan_of(ranks + "placement: {\"\": cpu, transformer.word_embeddings: cuda:0, "
                                      "transformer.layers: 1, transformer.layers.0-12: 0, transformer.layers.26-27: 2}\n")),
            want);
  // Key order does not matter, only how specific a key is.
  EXPECT_EQ(stages_of(plan_of(ranks + "placement: {transformer.layers.26-27: 2, transformer.layers.0-12: 0, "
                                      "transformer.layers: 1, transformer: 0, lm_head: 2, transformer.final_layernorm: 2}\n")),
            want);
}

TEST(PlannerAccelerate, PerBlockKeysDevicesAndIndicesAgree) {
  std::string per_block = std::string(kThreeRanks) + "placement:\n  transformer.word_embeddings: 0\n";
  std::string by_device = std::string(kThreeRanks) + "placement:\n  transformer.word_embeddings: cuda:0\n";
  for (int i = 0; i < 28; ++i) {
    const char* r = i < 13 ? "0" : i < 26 ? "1" : "2";
    const char* d = i < 13 ? "cuda:0" : i < 26 ? "cuda:1" : "cpu";
    per_block += "  transformer.layers." + std::to_string(i) + ": " + r + "\n";
    by_device += "  transformer.layers." + std::to_string(i) + ": " + d + "\n";
  }
  per_block += "  transformer.final_layernorm: 2\n  lm_head: 2\n";
  by_device += "  transformer.final_layernorm: cpu\n  lm_head: cpu\n";
  const std::string ranges = std::string(kThreeRanks) +
                             "placement: {\"\": 1, transformer.word_embeddings: 0, transformer.layers.0-12: 0, "
                             "transformer.layers.26-27: 2, transformer.final_layernorm: 2, lm_head: 2}\n";
  const std::string want = stages_of(plan_of(ranges));
  EXPECT_EQ(stages_of(plan_of(per_block)), want);
  EXPECT_EQ(stages_of(plan_of(by_device)), want);
  Plan p = plan_of(ranges);
  EXPECT_EQ(p.stages[0].layer_end, 13);
  EXPECT_EQ(p.stages[1].layer_begin, 13);
  EXPECT_EQ(p.stages[1].layer_end, 26);
}

TEST(PlannerAccelerate, DiskValueEqualsTheDiskTier) {
  const std::string ranks =
      "ranks:\n  - {device: cuda:0, max_memory: 6GiB}\n  - {device: cpu, max_memory: 4GiB}\n"
      "kv_cache: {max_batch: 1, max_seq_len: 512}\ndisk: {path: /nvme}\n";
  Plan tier = plan_of(ranks + "placement: balanced\n");
  ASSERT_TRUE(tier.stages[1].disk_offload);
  const int split = tier.stages[1].layer_begin;
  Plan mapped = plan_of(ranks + "placement: {\"\": 0, transformer.layers." + std::to_string(split) +
                        "-27: disk, transformer.final_layernorm: disk, lm_head: disk}\n");
  EXPECT_EQ(stages_of(mapped), stages_of(tier));
  std::vector<std::string> all_but_norm = mapped.stages[1].units;  // norms stay resident
  all_but_norm.erase(std::find(all_but_norm.begin(), all_but_norm.end(), "transformer.final_layernorm"));
  EXPECT_EQ(mapped.stages[1].disk_units, all_but_norm);
  EXPECT_EQ(mapped.stages[1].bytes.weights, 0);
  // A mix on one cpu rank: blocks from disk, the head resident.
  Plan mix = plan_of("ranks: [{device: cpu, max_memory: 20GiB}]\nkv_cache: {max_seq_len: 256}\n"
                     "placement: {\"\": cpu, transformer.layers: disk}\n");
  const StagePlan& s = mix.stages[0];
  EXPECT_EQ(s.disk_units.size(), 28u);
  EXPECT_FALSE(s.on_disk("lm_head"));
  const ModelMetadata m = glm6b();
  EXPECT_EQ(s.bytes.mmapped, 28 * m.layer(0).weight_bytes);
  // Tied (ChatGLM-6B): the resident head is the embedding matrix, counted once on its stage.
  ASSERT_TRUE(m.lm_head_tied);
  EXPECT_EQ(s.bytes.weights, m.embedding().weight_bytes + m.final_layernorm().weight_bytes);
  nlohmann::json j = nlohmann::json::parse(mix.to_json());
  EXPECT_EQ(j["stages"][0]["disk"].get<int64_t>(), s.bytes.mmapped);
  EXPECT_EQ(j["stages"][0]["bytes"]["disk"].get<int64_t>(), s.bytes.mmapped);
  EXPECT_EQ(j["stages"][0]["bytes"]["weights"].get<int64_t>(), s.bytes.weights);
}

TEST(PlannerAccelerate, MaxMemoryDictIntegersAndUnitStringsGiveTheSamePlan) {
  const std::string tail = "kv_cache: {max_batch: 1, max_seq_len: 512}\n";
  const std::string ranks =
      "ranks:\n  - {device: cuda:0, max_memory: 10GiB}\n  - {device: cuda:1, max_memory: 10GiB}\n"
      "  - {device: cpu, max_memory: 30GiB}\n" + tail;
  const std::string want = stages_of(plan_of(ranks));
  EXPECT_EQ(stages_of(plan_of("max_memory: {0: 10GiB, 1: 10GiB, cpu: 30GiB}\n" + tail)), want);
  EXPECT_EQ(stages_of(plan_of("max_memory: {cpu: 30GiB, 1: 10737418240, 0: \"10GiB\"}\n" + tail)), want);
  EXPECT_EQ(stages_of(plan_of("ranks: [{device: cuda:0}, {device: cuda:1}, {device: cpu}]\n"
                              "max_memory: {0: 10GiB, 1: 10GiB, cpu: 32212254720}\n" + tail)),
            want);
  // Decimal units are decimal: 10GB is less than 10GiB, and the plan's budget says so.
  Plan gb = plan_of("max_memory: {0: 10GB, 1: 10GB, cpu: 30GB}\n" + tail);
  EXPECT_EQ(gb.stages[0].bytes.budget, 10'000'000'000);
  EXPECT_EQ(gb.stages[2].bytes.budget, 30'000'000'000);
  EXPECT_NE(error_of("max_memory: {2: 10GiB}\nranks: [{device: cuda:0}]\n").find("max_memory.2: no rank has device cuda:2"),
            std::string::npos);
  EXPECT_NE(error_of("max_memory: {gpu: 10GiB}\n").find("max_memory.gpu: unknown device"), std::string::npos);
  EXPECT_NE(error_of("ranks: [{device: cuda:0}]\n").find("ranks[0].max_memory: missing"), std::string::npos);
}

TEST(PlannerAccelerate, MapsThatSplitABlockOrLeaveModulesUnplacedAreRefusedNamingThem) {
  const std::string ranks = kThreeRanks;
  struct Case {
    std::string map, expect;
  };
  const std::vector<Case> cases = {
      {"{\"\": 0, transformer.layers.3.mlp: 1}", "placement.transformer.layers.3.mlp: \"transformer.layers.3.mlp\" "
                                                 "splits the GLMBlock transformer.layers.3"},
      {"{\"\": 0, transformer.layers.5.attention.dense: cpu}", "splits the GLMBlock transformer.layers.5"},
      {"{\"\": 0, lm_head.weight: 2}", "\"lm_head.weight\" is part of lm_head"},
      {"{transformer.word_embeddings: 0, transformer.layers: 1, transformer.final_layernorm: 2}",
       "lm_head is missing"},
      {"{transformer: 0, lm_head: 1}", "transformer.final_layernorm (rank 0) must go with lm_head (rank 1)"},
      {"{transformer.word_embeddings: 0, transformer.layers.0-12: 0, transformer.layers.14-27: 1, "
       "transformer.final_layernorm: 2, lm_head: 2}",
       "gap: no rank for transformer.layers.13"},
      {"{transformer.layers: 1, transformer.final_layernorm: 2, lm_head: 2}",
       "gap: no rank for transformer.word_embeddings"},
      {"{\"\": 0, transformer.layers: 1, transformer.layers.3: 0}",
       "transformer.layers.3 on rank 0 follows transformer.layers.2 on rank 1"},
      {"{\"\": 0, transformer.layers.0-3: 1, transformer.layers.3: 1}", "overlaps placement.transformer.layers.0-3"},
      {"{\"\": disk}", "\"disk\" needs a cpu rank"},
  };
  for (const Case& c : cases) {
    const std::string err = error_of((c.map.find("disk") != std::string::npos
                                          ? std::string("ranks: [{device: cuda:0, max_memory: 40GiB}]\n")
                                          : ranks) +
                                     "placement: " + c.map + "\n");
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.map << "\n -> " << err;
    EXPECT_EQ(err.rfind("d.yaml: ", 0), 0u) << err;
  }
}

TEST(PlannerAccelerate, HfDeviceMapIsAcceleratesShape) {
  ModelConfig c;
  c.num_layers = 3;
  const ModelMetadata m = synthesize_metadata(c, "float16", "");
  Plan p = plan_of("ranks:\n  - {device: cuda:0, max_memory: 40GiB}\n  - {device: cpu, max_memory: 40GiB}\n"
                   "kv_cache: {max_seq_len: 256}\ndisk: {}\n"
                   "placement: {transformer.word_embeddings: 0, transformer.layers.0: 0, \"\": cpu, lm_head: disk}\n",
                   m);
  EXPECT_EQ(p.to_hf_device_map(),
            "{\"transformer.word_embeddings\": 0, \"transformer.layers.0\": 0, \"transformer.layers.1\": \"cpu\", "
            "\"transformer.layers.2\": \"cpu\", \"transformer.final_layernorm\": \"cpu\", \"lm_head\": \"disk\"}");
}

TEST(PlannerAccelerate, PlanCliPrintsHfDeviceMapAndDiskBytes) {
  const std::string dir = test::make_temp_dir("plan_hf");
  ModelConfig c;
  c.num_layers = 2;
  save_model_config(c, dir + "/config.json");
  {
    std::ofstream f(dir + "/d.yaml");
    f << "model: {path: " << dir << ", dtype: float16}\nmax_memory: {0: 40GiB, cpu: 40GiB}\n"
      << "kv_cache: {max_seq_len: 128}\ndisk: {path: " << dir << "/offload}\n"
      << "placement: {\"\": 0, transformer.layers.1: disk, transformer.final_layernorm: cpu, lm_head: cpu}\n";
  }
  test::RunResult r = test::run_command(test::glmpipe_bin() + " plan --config " + dir + "/d.yaml --hf-device-map");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::ordered_json hf = nlohmann::ordered_json::parse(r.out);
  EXPECT_EQ(hf.dump(), "{\"transformer.word_embeddings\":0,\"transformer.layers.0\":0,\"transformer.layers.1\":\"disk\","
                       "\"transformer.final_layernorm\":\"cpu\",\"lm_head\":\"cpu\"}");
  r = test::run_command(test::glmpipe_bin() + " plan --config " + dir + "/d.yaml --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["stages"][0]["disk"].get<int64_t>(), 0);
  EXPECT_GT(j["stages"][1]["disk"].get<int64_t>(), 0);
  EXPECT_EQ(j["stages"][1]["disk_units"], nlohmann::json::array({"transformer.layers.1"}));
  EXPECT_TRUE(j["stages"][1].contains("bytes"));
  EXPECT_TRUE(j["stages"][1]["bytes"].contains("mmapped"));
}

}  // namespace
}  // namespace glmpipe
