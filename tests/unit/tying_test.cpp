// One tying rule, from the checkpoint's config: tie_word_embeddings (absent: the family's official
// default — ChatGLM-6B ties, ChatGLM2/3 and GLM-4 do not). Tied: the embedding matrix serves as the
// head on every placement (a head shard without the embedding reads word_embeddings, never
// lm_head.weight, even when the checkpoint stores a different one); untied: lm_head.weight
// everywhere, also where the shard holds the embedding. Checked against a second checkpoint whose
// head is, by construction, the matrix the rule names.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "tests/test_util.h"

namespace glmpipe {
namespace {

constexpr int64_t kLayers = 2;

// config.json with tie_word_embeddings set (or removed when `tie` < 0).
void set_tie(const std::string& dir, int tie) {
  nlohmann::json j = nlohmann::json::parse(test::read_file(dir + "/config.json"));
  if (tie < 0) j.erase("tie_word_embeddings");
  else j["tie_word_embeddings"] = tie != 0;
  std::ofstream(dir + "/config.json") << j.dump(2);
}

TinyModelOptions tiny(bool distinct_head) {
  TinyModelOptions o;
  o.layers = kLayers;
  o.hidden = 64;
  o.heads = 4;
  o.vocab = 300;
  o.seed = 11;
  o.distinct_lm_head = distinct_head;
  return o;
}

// Logits of rows `h` from a whole-model shard and from a head-only shard of `dir`.
std::pair<at::Tensor, at::Tensor> heads(const std::string& dir, const at::Tensor& h) {
  Checkpoint ckpt = Checkpoint::open(dir);
  const ModelConfig& c = ckpt.config();
  auto whole = make_shard(c, ShardSpec::whole(c), ModelOptions{});
  whole->load(ckpt);
  auto last = make_shard(c, ShardSpec{false, c.num_layers, c.num_layers, true}, ModelOptions{});
  last->load(ckpt);
  return {whole->head(h), last->head(h)};
}

bool same(const at::Tensor& a, const at::Tensor& b) { return a.sizes() == b.sizes() && at::equal(a, b); }

class Tying : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("tying");
    make_tiny_model(dir_ + "/distinct", tiny(true));  // lm_head.weight != word_embeddings
    make_tiny_model(dir_ + "/copy", tiny(false));     // lm_head.weight == word_embeddings
    h_ = at::randn({3, 64}, at::TensorOptions().dtype(at::kFloat));
  }
  std::string dir_;
  at::Tensor h_;
};

TEST_F(Tying, TiedV1ServesTheEmbeddingOnEveryPlacementWhateverLmHeadHolds) {
  set_tie(dir_ + "/distinct", -1);  // the official v1 config has no tie_word_embeddings: tied
  EXPECT_TRUE(Checkpoint::open(dir_ + "/distinct").config().tie_word_embeddings);
  auto [whole, last] = heads(dir_ + "/distinct", h_);
  auto [ref_whole, ref_last] = heads(dir_ + "/copy", h_);  // its lm_head *is* the embedding
  EXPECT_TRUE(same(whole, last)) << "the head-only shard read lm_head.weight";
  EXPECT_TRUE(same(whole, ref_whole));
  EXPECT_TRUE(same(last, ref_last));
}

TEST_F(Tying, UntiedServesLmHeadWeightOnEveryPlacement) {
  set_tie(dir_ + "/distinct", 0);
  auto [whole, last] = heads(dir_ + "/distinct", h_);
  EXPECT_TRUE(same(whole, last)) << "the whole-model shard used the embedding";
  // lm_head.weight, not the embedding: the same rows through a shard whose embedding is lm_head.
  Checkpoint ckpt = Checkpoint::open(dir_ + "/distinct");
  const at::Tensor w = ckpt.load("lm_head.weight", at::kFloat), e = ckpt.load("transformer.word_embeddings.weight", at::kFloat);
  ASSERT_FALSE(at::allclose(w, e));
  auto shard = make_shard(ckpt.config(), ShardSpec::whole(ckpt.config()), ModelOptions{});
  shard->load(ckpt);
  const at::Tensor y = shard->final_norm(h_);
  EXPECT_TRUE(at::allclose(whole, at::matmul(y, w.t()), 1e-4, 1e-4));
  EXPECT_FALSE(at::allclose(whole, at::matmul(y, e.t()), 1e-2, 1e-2));
  // And untied without lm_head.weight is an error naming both.
  TinyModelOptions o = tiny(false);
  o.write_lm_head = false;
  make_tiny_model(dir_ + "/none", o);
  set_tie(dir_ + "/none", 0);
  try {
    heads(dir_ + "/none", h_);
    ADD_FAILURE() << "loaded an untied head without lm_head.weight";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("lm_head.weight"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("tie_word_embeddings"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace glmpipe
