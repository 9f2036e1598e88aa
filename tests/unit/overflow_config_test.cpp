// Deployment and config values whose arithmetic would overflow (issue 15), through the CLI: each is
// one error line naming the file and key, exit 1, never a wrapped value, a negative byte total or a
// libtorch allocation backtrace, and never minutes of planning.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "checkpoint/model_config.h"
#include "checkpoint/tiny_model.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

class OverflowConfig : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("overflow");
    model_ = dir_ + "/model";
    make_tiny_model(model_, TinyModelOptions{});
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string yaml(const std::string& text) {
    const std::string path = dir_ + "/dep.yaml";
    std::ofstream(path) << text;
    return path;
  }
  // Runs `cmd`; expects exit 1 and an error naming every `parts`, without a backtrace.
  void expect_error(const std::string& cmd, const std::vector<std::string>& parts, double max_seconds = 60) {
    const auto t0 = std::chrono::steady_clock::now();
    test::RunResult r = test::run_command("timeout -s KILL 120 " + cmd);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.exit_code, 1) << cmd << "\n" << r.err;
    for (const auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << cmd << " lacks " << p << ": " << r.err;
    EXPECT_EQ(r.err.find("frame #"), std::string::npos) << "a libtorch backtrace: " << r.err;
    EXPECT_EQ(r.err.find("unexpected error"), std::string::npos) << r.err;
    EXPECT_LT(took, max_seconds) << cmd;
    EXPECT_FALSE(test::file_exists(dir_ + "/out.npy"));
  }
  std::string dir_, model_;
};

const char* kRank = "  - {device: cpu, max_memory: 2GiB, threads: 1}\n";

TEST_F(OverflowConfig, YamlIntegerThatWouldWrapIsRefused) {
  const std::string bin = test::glmpipe_bin();
  // 4294967297 = 2^32 + 1 once became threads: 1.
  expect_error(bin + " plan --model " + model_ + " --config " +
                   yaml("model: {path: x}\nranks:\n  - {device: cpu, max_memory: 2GiB, threads: 4294967297}\n"),
               {"dep.yaml", "ranks[0].threads", "4294967297", "too large"});
  expect_error(bin + " plan --model " + model_ + " --config " +
                   yaml(std::string("model: {path: x}\nranks:\n") + kRank + "mpi: {micro_batches: 4294967296}\n"),
               {"dep.yaml", "mpi.micro_batches", "too large"});
  expect_error(bin + " plan --model " + model_ + " --config " +
                   yaml(std::string("model: {path: x}\nranks:\n") + kRank + "generation: {max_new_tokens: 4294967297}\n"),
               {"dep.yaml", "generation.max_new_tokens", "too large"});
}

// max_batch 1e6 x max_seq_len 1e9 planned with negative byte totals, then died in a libtorch
// allocation: now the keys are refused, in the YAML and on the command line.
TEST_F(OverflowConfig, KvCacheTooLargeNamesTheKeys) {
  const std::string bin = test::glmpipe_bin();
  expect_error(bin + " plan --model " + model_ + " --config " +
                   yaml(std::string("model: {path: x}\nranks:\n") + kRank +
                        "kv_cache: {max_batch: 1000000, max_seq_len: 1000000000}\n"),
               {"dep.yaml", "kv_cache.max_batch", "too large"});
  const std::string run = bin + " forward --model " + model_ + " --ids 1,2 --out " + dir_ + "/out.npy";
  expect_error(run + " --max-batch 1000000 --max-seq 1000000000", {"kv_cache", "max_batch"});
  // Within the bounds, but the attention scores (B * heads * S^2) overflow 64 bits.
  expect_error(run + " --max-batch 65536 --max-seq 16777216", {"kv_cache.max_batch", "kv_cache.max_seq_len", "overflow"});
  // Countable but far beyond any memory: an infeasible plan naming the budget, not an allocation
  // failure.
  expect_error(bin + " generate --model " + model_ + " --ids 1,2 --max-new-tokens 2 --max-batch 64 --max-seq 1000000",
               {"no placement fits", "kv_cache"});
}

// A config.json with 10^6 layers made `plan` run for minutes.
TEST_F(OverflowConfig, MillionLayersIsRefusedQuickly) {
  const std::string cfg_dir = dir_ + "/huge";
  ModelConfig c;
  c.num_layers = 1000000;
  std::system(("mkdir -p " + cfg_dir).c_str());
  save_model_config(c, cfg_dir + "/config.json");
  expect_error(test::glmpipe_bin() + " plan --model " + cfg_dir + " --config " + test::source_dir() +
                   "/configs/t4_plus_cpu.yaml",
               {"config.json", "num_layers", "1000000"}, 20);
}

}  // namespace
}  // namespace glmpipe
