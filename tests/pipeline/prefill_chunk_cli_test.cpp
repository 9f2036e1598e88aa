// Chunked prefill end to end: a GLM-4-family tiny model generates the same greedy ids whether a
// 30-token prompt is prefilled whole (--prefill-chunk 0) or in chunks of 4 or 1, in one process and
// in a 2-rank pipeline (kv_cache.prefill_chunk in the YAML, chunks of several sequences in flight);
// the first stage's step count shows the chunks were really sent (ceil(30/4) prefill micro-batches).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "tests/test_util.h"

using namespace glmpipe;

namespace {

test::RunResult glmpipe(const std::string& args) {
  return test::run_command("timeout 180 " + test::glmpipe_bin() + " " + args);
}

// "… N micro-batches, R rows" of the first stage's closing summary (rank 0's log line).
int micro_batches(const std::string& log) {
  std::smatch m;
  const std::regex re("\\[r0/[0-9]+ s0\\][^\\n]* ([0-9]+) micro-batches");
  return std::regex_search(log, m, re) ? std::stoi(m[1]) : -1;
}

class PrefillChunkCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("prefill_chunk");
    model_ = dir_ + "/glm4";
    auto r = glmpipe("make-tiny-model " + model_ + " --family glm4 --layers 3 --hidden 64 --heads 4 --vocab 256 --seed 9");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (int i = 0; i < 30; ++i) ids_ += (i ? "," : "") + std::to_string(20 + (i * 37) % 200);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string gen(int new_tokens) const {
    return " --ids " + ids_ + " --max-new-tokens " + std::to_string(new_tokens) + " --greedy --print-ids";
  }
  std::string dir_, model_, ids_;
};

TEST_F(PrefillChunkCli, ChunkedEqualsWholeInOneProcessAndAPipeline) {
  auto whole = glmpipe("generate --model " + model_ + " --threads 1 --prefill-chunk 0" + gen(6));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  ASSERT_FALSE(whole.out.empty());
  EXPECT_EQ(micro_batches(whole.err), 6) << whole.err;  // 1 prefill + 5 decode steps
  for (const char* chunk : {"4", "1"}) {
    auto r = glmpipe("generate --model " + model_ + " --threads 1 --prefill-chunk " + chunk + gen(6));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, whole.out) << "chunk " << chunk;
    EXPECT_EQ(micro_batches(r.err), std::string(chunk) == "4" ? 8 + 5 : 30 + 5) << r.err;
  }
  const std::string cfg = dir_ + "/two.yaml";
  std::ofstream(cfg) << "model: {path: unused, dtype: float32}\nranks:\n"
                        "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                        "  - {device: cpu, max_memory: 2GiB, threads: 1}\n"
                        "placement: balanced\nkv_cache: {max_batch: 2, max_seq_len: 128, prefill_chunk: 4}\n"
                        "reserve: {cpu: 64MiB}\n";
  auto piped = glmpipe("generate --config " + cfg + " --model " + model_ + gen(6));
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, whole.out);
  EXPECT_EQ(micro_batches(piped.err), 8 + 5) << piped.err;
}

TEST_F(PrefillChunkCli, BadChunkValuesAreRefused) {
  auto r = glmpipe("generate --model " + model_ + " --threads 1 --prefill-chunk -3" + gen(2));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("prefill-chunk"), std::string::npos) << r.err;
  const std::string cfg = dir_ + "/bad.yaml";
  std::ofstream(cfg) << "model: {path: unused, dtype: float32}\nranks:\n  - {device: cpu, max_memory: 2GiB}\n"
                        "kv_cache: {prefill_chunk: -1}\n";
  r = glmpipe("generate --config " + cfg + " --model " + model_ + gen(2));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("kv_cache.prefill_chunk"), std::string::npos) << r.err;
}

}  // namespace
