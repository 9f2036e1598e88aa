// ChatGLM-6B v1 numerics against ../shared/data/reference/glm_model.data: a 1-layer model
// (hidden 32, 8 heads, inner 128, vocab 5) with hidden states produced by the official modeling
// code (spec §5.1). Checked as one full-sequence call and as prefill + two cached decode steps.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "model/chatglm.h"
#include "tests/reference_reader.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

struct Reference {
  std::vector<float> floats;
  std::vector<int32_t> x1, x2, x3;
  at::Tensor y1, y2, y3;
};

using Reader = test::ReferenceReader;

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 5;
  c.hidden_size = 32;
  c.num_attention_heads = 8;
  c.inner_hidden_size = 128;
  c.num_layers = 1;
  c.max_sequence_length = 64;
  return c;
}

class ModelReference : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = test::shared_data() + "/reference/glm_model.data";
    if (!test::file_exists(path_)) GTEST_SKIP() << "reference data absent: " << path_;
    Reader r(path_);
    ASSERT_TRUE(r.ok());
    shard_ = std::make_unique<ChatGLMShard>(tiny_config(), ShardSpec::whole(tiny_config()), ModelOptions{});
    // File order (spec §5.1.2): embeddings, block params in module order, final LN.
    std::vector<std::pair<std::string, std::vector<int64_t>>> order = {
        {"transformer.word_embeddings.weight", {5, 32}},
        {"transformer.layers.0.input_layernorm.weight", {32}},
        {"transformer.layers.0.input_layernorm.bias", {32}},
        {"transformer.layers.0.attention.query_key_value.weight", {96, 32}},
        {"transformer.layers.0.attention.query_key_value.bias", {96}},
        {"transformer.layers.0.attention.dense.weight", {32, 32}},
        {"transformer.layers.0.attention.dense.bias", {32}},
        {"transformer.layers.0.post_attention_layernorm.weight", {32}},
        {"transformer.layers.0.post_attention_layernorm.bias", {32}},
        {"transformer.layers.0.mlp.dense_h_to_4h.weight", {128, 32}},
        {"transformer.layers.0.mlp.dense_h_to_4h.bias", {128}},
        {"transformer.layers.0.mlp.dense_4h_to_h.weight", {32, 128}},
        {"transformer.layers.0.mlp.dense_4h_to_h.bias", {32}},
        {"transformer.final_layernorm.weight", {32}},
        {"transformer.final_layernorm.bias", {32}},
    };
    auto params = shard_->named_parameters();
    ASSERT_EQ(params.size(), order.size()) << "named_parameters() must list exactly the checkpoint keys";
    for (auto& [name, shape] : order) {
      auto t = r.floats(shape);
      bool found = false;
      for (auto& [pname, ptr] : params)
        if (pname == name) *ptr = t, found = true;
      ASSERT_TRUE(found) << "shard has no parameter named " << name;
    }
    x1_ = r.ints(3);
    y1_ = r.floats({3, 32});
    x2_ = r.ints(1);
    y2_ = r.floats({1, 32});
    x3_ = r.ints(1);
    y3_ = r.floats({1, 32});
    ASSERT_TRUE(r.at_end()) << "unexpected trailing bytes in " << path_;
  }

  // The reference prompt: 2 context tokens + a <sop>-like third (ctx_len 2, mask position 1).
  SeqChunk chunk(int64_t past, int64_t len) const { return SeqChunk{0, past, len, 2, 1}; }

  std::string path_;
  std::unique_ptr<ChatGLMShard> shard_;
  std::vector<int64_t> x1_, x2_, x3_;
  at::Tensor y1_, y2_, y3_;
};

TEST_F(ModelReference, FullSequenceMatches) {
  auto cache = shard_->make_cache(1, 16);
  std::vector<int64_t> ids = x1_;
  ids.insert(ids.end(), x2_.begin(), x2_.end());
  ids.insert(ids.end(), x3_.begin(), x3_.end());
  auto h = shard_->embed(at::tensor(ids, at::kLong));
  auto y = shard_->final_norm(shard_->forward_blocks(h, {chunk(0, 5)}, cache));
  auto want = at::cat({y1_, y2_, y3_}, 0);
  EXPECT_LE((y - want).abs().max().item<float>(), 1e-5);
}

TEST_F(ModelReference, PrefillThenCachedDecodeMatches) {
  auto cache = shard_->make_cache(2, 16);
  auto run = [&](const std::vector<int64_t>& ids, int64_t past) {
    SeqChunk c = chunk(past, static_cast<int64_t>(ids.size()));
    c.slot = 1;  // a non-zero slot exercises slot indexing
    return shard_->final_norm(shard_->forward_blocks(shard_->embed(at::tensor(ids, at::kLong)), {c}, cache));
  };
  EXPECT_LE((run(x1_, 0) - y1_).abs().max().item<float>(), 1e-5);
  EXPECT_LE((run(x2_, 3) - y2_).abs().max().item<float>(), 1e-5);
  EXPECT_LE((run(x3_, 4) - y3_).abs().max().item<float>(), 1e-5);
}

TEST_F(ModelReference, WrongPositionsAreDetected) {
  // Guard against a test that cannot fail: a plain causal layout (no bidirectional context)
  // must NOT reproduce the reference.
  auto cache = shard_->make_cache(1, 16);
  SeqChunk c{0, 0, 3, 0, 0};
  auto y = shard_->final_norm(shard_->forward_blocks(shard_->embed(at::tensor(x1_, at::kLong)), {c}, cache));
  EXPECT_GT((y - y1_).abs().max().item<float>(), 1e-3);
}

}  // namespace
