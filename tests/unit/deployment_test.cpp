// Deployment YAML: contract keys, sizes, defaults, errors naming file + key + what is allowed, and
// every file in configs/ loaded and planned (ChatGLM-6B shapes; tiny configs with a small model).
#include <gtest/gtest.h>

#include <dirent.h>

#include <algorithm>
#include <fstream>

#include "common/error.h"
#include "planner/deployment.h"
#include "planner/model_metadata.h"
#include "planner/plan.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

std::string yaml_error(const std::string& text) {
  try {
    parse_deployment(text, "deploy.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Deployment, ContractKeysAndDefaults) {
  Deployment d = parse_deployment(R"(
model: {path: /models/chatglm-6b, dtype: float16}
ranks:                      # pipeline order, one process each
  - {device: cuda:0, max_memory: 14GiB}
  - {device: cpu, max_memory: 30GiB, threads: 16}
placement: balanced
)", "deploy.yaml");
  EXPECT_EQ(d.source_file, "deploy.yaml");
  EXPECT_EQ(d.model.path, "/models/chatglm-6b");
  EXPECT_EQ(d.model.dtype, "float16");
  EXPECT_EQ(d.model.quantization, "");
  ASSERT_EQ(d.ranks.size(), 2u);
  EXPECT_EQ(d.ranks[0].device, "cuda:0");
  EXPECT_EQ(d.ranks[0].max_memory, 14LL * 1024 * 1024 * 1024);
  EXPECT_TRUE(d.ranks[0].is_cuda());
  EXPECT_EQ(d.ranks[1].device, "cpu");
  EXPECT_EQ(d.ranks[1].max_memory, 30LL * 1024 * 1024 * 1024);
  EXPECT_EQ(d.ranks[1].threads, 16);
  EXPECT_EQ(d.placement, "balanced");
  EXPECT_EQ(d.kv_cache.max_batch, 1);
  EXPECT_EQ(d.kv_cache.max_seq_len, 2048);
  EXPECT_EQ(d.gpu_reserve, 1610612736);  // 1.5 GiB
  EXPECT_EQ(d.cpu_reserve, 1073741824);
  EXPECT_EQ(d.reserve_of(0), 1610612736);
  EXPECT_EQ(d.reserve_of(1), 1073741824);
  EXPECT_FALSE(d.disk.enabled);
  EXPECT_DOUBLE_EQ(d.generation.temperature, 0.95);
  EXPECT_DOUBLE_EQ(d.generation.top_p, 0.7);
  EXPECT_EQ(d.generation.top_k, 50);
  EXPECT_EQ(d.generation.max_length, 2048);
}

TEST(Deployment, AllOptionalKeys) {
  Deployment d = parse_deployment(R"(
model: {path: m, dtype: bfloat16, quantization: int4}
ranks:
  - {device: cuda:1, max_memory: 15GB, host: node1, reserve: 512MiB}
  - {device: cpu, max_memory: 1000}
placement:
  transformer.word_embeddings: 0
  transformer.layers.0-20: cuda:1
  lm_head: cpu
kv_cache: {max_batch: 4, max_seq_len: 1024}
reserve: {gpu: 2GiB, cpu: 1.5GiB}
disk: {path: /nvme/offload}
generation: {max_new_tokens: 64, temperature: 0.5, top_p: 0.9, top_k: 10, repetition_penalty: 1.1,
             greedy: true, seed: 42, max_length: 1024}
mpi: {hostfile: hosts, bind_to_core: true, micro_batches: 3, extra_args: [--mca, btl, tcp]}
)", "x.yaml");
  EXPECT_EQ(d.model.quantization, "int4");
  EXPECT_EQ(d.model.dtype, "bfloat16");
  EXPECT_EQ(d.ranks[0].max_memory, 15000000000LL);
  EXPECT_EQ(d.ranks[0].host, "node1");
  EXPECT_EQ(d.ranks[0].reserve, 512LL << 20);
  EXPECT_EQ(d.reserve_of(0), 512LL << 20);
  EXPECT_EQ(d.reserve_of(1), 3LL << 29);
  EXPECT_EQ(d.ranks[1].max_memory, 1000);
  EXPECT_EQ(d.placement, "map");
  ASSERT_EQ(d.placement_map.size(), 3u);
  EXPECT_EQ(d.placement_map[1], (std::pair<std::string, std::string>{"transformer.layers.0-20", "cuda:1"}));
  EXPECT_EQ(d.kv_cache.max_batch, 4);
  EXPECT_EQ(d.gpu_reserve, 2LL << 30);
  EXPECT_TRUE(d.disk.enabled);
  EXPECT_EQ(d.disk.path, "/nvme/offload");
  EXPECT_EQ(d.generation.max_new_tokens, 64);
  EXPECT_TRUE(d.generation.greedy);
  EXPECT_EQ(d.generation.seed, 42u);
  EXPECT_EQ(d.mpi.extra_args, (std::vector<std::string>{"--mca", "btl", "tcp"}));
  EXPECT_EQ(d.mpi.micro_batches, 3);
  EXPECT_TRUE(d.mpi.bind_to_core);
}

TEST(Deployment, LivenessTimeout) {
  const std::string base = "model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB}]\n";
  EXPECT_EQ(parse_deployment(base, "x.yaml").mpi.liveness_timeout_s, 60);  // the default
  EXPECT_EQ(parse_deployment(base + "mpi: {liveness_timeout_s: 2.5}\n", "x.yaml").mpi.liveness_timeout_s, 2.5);
  for (const char* bad : {"0", "-3", "ten", "1e9"}) {
    try {
      parse_deployment(base + "mpi: {liveness_timeout_s: " + bad + "}\n", "x.yaml");
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("x.yaml: mpi.liveness_timeout_s: "), std::string::npos) << e.what();
    }
  }
}

TEST(Deployment, Sizes) {
  EXPECT_EQ(parse_byte_size("14GiB", "k"), 14LL << 30);
  EXPECT_EQ(parse_byte_size("15GB", "k"), 15000000000LL);
  EXPECT_EQ(parse_byte_size("512MiB", "k"), 512LL << 20);
  EXPECT_EQ(parse_byte_size("1.5GiB", "k"), 3LL << 29);
  EXPECT_EQ(parse_byte_size("123", "k"), 123);
  EXPECT_EQ(parse_byte_size("2 gib", "k"), 2LL << 30);
  EXPECT_THROW(parse_byte_size("14 furlongs", "k"), Error);
  EXPECT_THROW(parse_byte_size("GiB", "k"), Error);
  EXPECT_THROW(parse_byte_size("1.2.3GB", "k"), Error);
}

TEST(Deployment, ErrorsNameFileKeyAndWhatIsAllowed) {
  const std::string ranks = "ranks: [{device: cuda:0, max_memory: 1GiB}]\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model: {path: m}\nranks:\n  - {device: cuda:0, max_memory: 1GiB}\n  - {device: gpu0, max_memory: 1GiB}\n",
       "deploy.yaml: ranks[1].device: \"gpu0\" is not a device (allowed: cuda:N, cpu)"},
      {"model: {path: m}\n" + ranks + "placment: balanced\n",
       "deploy.yaml: placment: unknown key (allowed: model, ranks, placement"},
      {"model: {path: m, dtyp: float16}\n" + ranks, "deploy.yaml: model.dtyp: unknown key (allowed: path, dtype, quantization)"},
      {"model: {path: m, dtype: fp8}\n" + ranks, "deploy.yaml: model.dtype: \"fp8\" is not allowed (allowed: float32, float16, bfloat16)"},
      {"model: {path: m, quantization: int3}\n" + ranks, "deploy.yaml: model.quantization: \"int3\" is not allowed (allowed: none, int8, int4)"},
      {"model: {path: m}\nranks: [{device: cpu, max_memory: 14 furlongs}]\n", "deploy.yaml: ranks[0].max_memory: \"14 furlongs\" is not a size"},
      {"model: {path: m}\nranks: [{device: cpu}]\n", "deploy.yaml: ranks[0].max_memory: missing"},
      {"model: {path: m}\nranks: [{device: cpu, max_memory: 1GiB, thread: 4}]\n", "deploy.yaml: ranks[0].thread: unknown key (allowed: device, max_memory, threads, host, reserve)"},
      {"model: {path: m}\nranks: []\n", "deploy.yaml: ranks: must be a non-empty list"},
      {"model: {path: m}\n", "deploy.yaml: ranks: missing"},
      {ranks, "deploy.yaml: model: missing"},
      {"model: {path: m}\n" + ranks + "placement: even\n", "deploy.yaml: placement: \"even\" is not allowed (allowed: auto, balanced, balanced_low_0, sequential, balanced_work)"},
      {"model: {path: m}\n" + ranks + "kv_cache: {max_batch: 0}\n", "deploy.yaml: kv_cache.max_batch: 0 is too small (allowed: >= 1)"},
      {"model: {path: m}\n" + ranks + "kv_cache: {max_seq_len: lots}\n", "deploy.yaml: kv_cache.max_seq_len: \"lots\" is not an integer"},
      {"model: {path: m}\n" + ranks + "generation: {top_p: 2}\n", "deploy.yaml: generation.top_p: 2 is out of range"},
      {"model: {path: m}\n" + ranks + "generation: {greedy: maybe}\n", "deploy.yaml: generation.greedy: \"maybe\" is not a boolean"},
      {"model: {path: m}\n" + ranks + "mpi: {hostfile: h, bind: true}\n", "deploy.yaml: mpi.bind: unknown key"},
      {"model: {path: m}\n" + ranks + "reserve: {gpu: 1GiB, tpu: 1GiB}\n", "deploy.yaml: reserve.tpu: unknown key (allowed: gpu, cpu)"},
      {"model: {path: m}\n" + ranks + "placement: {lm_head: [0, 1]}\n", "deploy.yaml: placement.lm_head: must be a rank index"},
      {"model: [unclosed\n", "deploy.yaml:"},
      {"- just a list\n", "deploy.yaml: (top level): must be a mapping"},
  };
  for (const auto& [text, want] : cases) {
    std::string err = yaml_error(text);
    EXPECT_NE(err.find(want), std::string::npos) << "yaml:\n" << text << "\nerror: " << err;
  }
}

TEST(Deployment, LoadNamesMissingFile) {
  try {
    load_deployment("/nonexistent/deploy.yaml");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/deploy.yaml: cannot open"), std::string::npos) << e.what();
  }
}

std::vector<std::string> config_files() {
  std::vector<std::string> out;
  const std::string dir = test::source_dir() + "/configs";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.substr(n.size() - 5) == ".yaml") out.push_back(dir + "/" + n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ModelConfig tiny_config() {
  ModelConfig c;  // the shape of `make-tiny-model` defaults, 4 blocks
  c.num_layers = 4;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.inner_hidden_size = 256;
  c.vocab_size = 256;
  return c;
}

TEST(Deployment, EveryExampleConfigLoadsAndPlans) {
  const std::vector<std::string> files = config_files();
  ASSERT_GE(files.size(), 9u) << "configs/ under " << test::source_dir();
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    std::ifstream in(f);
    std::string first;
    std::getline(in, first);
    EXPECT_EQ(first.rfind("#", 0), 0u) << "each config starts with a comment explaining it";
    Deployment d = load_deployment(f);
    const bool tiny = f.find("/tiny_") != std::string::npos;
    ModelMetadata m = synthesize_metadata(tiny ? tiny_config() : ModelConfig{}, d.model.dtype, d.model.quantization);
    Plan p;
    ASSERT_NO_THROW(p = make_plan(m, d));
    ASSERT_EQ(p.stages.size(), d.ranks.size());
    int64_t weights = 0;
    for (const StagePlan& s : p.stages) {
      EXPECT_LE(s.bytes.total, s.bytes.budget);
      weights += s.bytes.weights + s.bytes.mmapped;
    }
    // Every unit once; a tied head on a stage without the embedding loads its own copy of it.
    bool head_apart = true;
    for (const StagePlan& s : p.stages)
      if (s.has_embedding && s.has_head) head_apart = false;
    const int64_t copy = m.lm_head_tied && head_apart ? m.lm_head().weight_bytes : 0;
    EXPECT_EQ(weights, m.total_weight_bytes() + copy);
    if (!tiny) EXPECT_EQ(d.model.path, "/models/chatglm-6b");
  }
}

TEST(Deployment, ExampleConfigSpecifics) {
  const std::string dir = test::source_dir() + "/configs/";
  const ModelMetadata glm = synthesize_metadata(ModelConfig{}, "float16", "");
  {  // T4 + CPU: embedding + 26 blocks on the card (see planner_plan_test for the hand count).
    Plan p = make_plan(glm, load_deployment(dir + "t4_plus_cpu.yaml"));
    EXPECT_EQ(p.stages[0].device, "cuda:0");
    EXPECT_TRUE(p.stages[0].has_embedding);
    EXPECT_EQ(p.stages[0].layer_end, 26);
    EXPECT_TRUE(p.stages[1].has_head);
    Deployment autod = load_deployment(dir + "t4_plus_cpu.yaml");
    autod.placement = "auto";
    EXPECT_EQ(make_plan(glm, autod).stages[0].layer_end, 26);
  }
  {  // 6 GB + 12 GB: the big card gets more than twice the blocks of the small one... roughly by budget.
    Plan p = make_plan(glm, load_deployment(dir + "mixed_6gb_12gb.yaml"));
    EXPECT_GT(p.stages[1].num_layers(), 2 * p.stages[0].num_layers());
    Deployment by_count = load_deployment(dir + "mixed_6gb_12gb.yaml");
    by_count.placement = "map";
    by_count.placement_map = {{"transformer.word_embeddings", "0"}, {"transformer.layers.0-13", "0"},
                              {"transformer.layers.14-27", "1"}, {"transformer.final_layernorm", "1"},
                              {"lm_head", "1"}};
    EXPECT_THROW(make_plan(glm, by_count), Error);  // what splitting by layer count does
  }
  {
    Deployment d = load_deployment(dir + "cluster_2node.yaml");
    EXPECT_EQ(d.ranks[1].host, "node2");
    EXPECT_EQ(d.mpi.hostfile, "configs/hostfile.example");
    EXPECT_TRUE(test::file_exists(test::source_dir() + "/" + d.mpi.hostfile));
    EXPECT_EQ(make_plan(glm, d).stages[1].host, "node2");
  }
  {
    Deployment d = load_deployment(dir + "cpu_3rank.yaml");
    Plan p = make_plan(synthesize_metadata(ModelConfig{}, d.model.dtype, ""), d);
    ASSERT_EQ(p.stages.size(), 3u);
    for (const StagePlan& s : p.stages) EXPECT_EQ(s.device, "cpu");
  }
  {
    Plan p = make_plan(synthesize_metadata(tiny_config(), "float32", ""), load_deployment(dir + "tiny_cpu_3rank.yaml"));
    ASSERT_EQ(p.stages.size(), 3u);
    EXPECT_GT(p.stages[1].num_layers(), 0);
  }
}

}  // namespace
}  // namespace glmpipe
