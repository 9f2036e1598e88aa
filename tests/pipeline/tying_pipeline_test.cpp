// Tying does not depend on placement: for a checkpoint whose lm_head.weight differs from the
// embedding, one process, 2 ranks and 3 ranks give bit-identical logits — untied (config
// tie_word_embeddings false: lm_head.weight everywhere) and tied (the official v1 default: the
// embedding everywhere, equal to a checkpoint whose lm_head is a copy of the embedding).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "model/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

class TyingPipeline : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir("tying_pipe"); }
  void make(const std::string& name, bool distinct, int tie) {
    TinyModelOptions o;
    o.layers = 4;
    o.hidden = 64;
    o.heads = 4;
    o.vocab = 300;
    o.seed = 12;
    o.distinct_lm_head = distinct;
    make_tiny_model(dir_ + "/" + name, o);
    nlohmann::json j = nlohmann::json::parse(test::read_file(dir_ + "/" + name + "/config.json"));
    if (tie < 0) j.erase("tie_word_embeddings");
    else j["tie_word_embeddings"] = tie != 0;
    std::ofstream(dir_ + "/" + name + "/config.json") << j.dump(2);
  }
  // Logits file of `model` on `ranks` cpu ranks (1 = one process).
  std::string logits(const std::string& model, int ranks) {
    const std::string out = dir_ + "/" + model + "_" + std::to_string(ranks) + ".npy";
    std::string where = "--model " + dir_ + "/" + model + " --threads 1";
    if (ranks > 1) {
      const std::string cfg = dir_ + "/" + model + "_" + std::to_string(ranks) + ".yaml";
      std::ofstream f(cfg);
      f << "model: {path: " << dir_ << "/" << model << ", dtype: float32}\nranks:\n";
      for (int r = 0; r < ranks; ++r) f << "  - {device: cpu, max_memory: 1GiB, threads: 1}\n";
      f << "placement: balanced\nkv_cache: {max_batch: 1, max_seq_len: 16}\nreserve: {cpu: 64MiB}\n";
      f.close();
      where = "--config " + cfg;
    }
    auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " forward " + where +
                               " --ids 1,2,3,296,297,9 --prefill 4 --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string bytes = test::read_file(out);
    EXPECT_FALSE(bytes.empty()) << r.err;
    return bytes;
  }
  std::string dir_;
};

TEST_F(TyingPipeline, UntiedCheckpointGivesTheSameLogitsOnOneTwoAndThreeRanks) {
  make("untied", true, 0);
  make("tied", true, -1);
  const std::string one = logits("untied", 1);
  EXPECT_EQ(logits("untied", 2), one);
  EXPECT_EQ(logits("untied", 3), one);
  EXPECT_NE(logits("tied", 1), one) << "the head is not lm_head.weight";
}

TEST_F(TyingPipeline, TiedCheckpointGivesTheSameLogitsOnOneTwoAndThreeRanks) {
  make("tied", true, -1);   // lm_head.weight differs and must be ignored
  make("copy", false, -1);  // lm_head.weight == the embedding: the official rule's answer
  const std::string ref = logits("copy", 1);
  EXPECT_EQ(logits("tied", 1), ref);
  EXPECT_EQ(logits("tied", 2), ref);
  EXPECT_EQ(logits("tied", 3), ref);
}

}  // namespace
