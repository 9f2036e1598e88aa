// ChatGLM2/3 and GLM-4 shards (model/chatglm2/) on random tiny models written by make_tiny_model:
// the schema drives names and the GQA-sized cache; cached decoding equals recomputation and a
// ragged batch equals each sequence alone, for 1, 2 and 4 KV groups and heads × kv_channels ≠
// hidden; the query-head → KV-group map equals an MHA model with the groups' K/V repeated per head;
// the published int8/int4 layout equals quantize-at-load; rope_ratio changes the result.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include "checkpoint/checkpoint.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

struct Loaded {
  Checkpoint ckpt;
  std::unique_ptr<Shard> shard;
};

Loaded load(const std::string& dir, const ModelOptions& mo = {}) {
  auto ckpt = Checkpoint::open(dir);
  auto shard = make_shard(ckpt.config(), ShardSpec::whole(ckpt.config()), mo);
  shard->load(ckpt);
  return {std::move(ckpt), std::move(shard)};
}

// Logits [T, V] of `ids` fed as chunks of the given sizes through one cache slot.
at::Tensor run(const Shard& s, const std::vector<int64_t>& ids, const std::vector<int64_t>& chunks, int64_t slot = 0,
               int64_t slots = 1) {
  auto cache = s.make_cache(slots, 64);
  std::vector<at::Tensor> out;
  int64_t past = 0;
  for (int64_t len : chunks) {
    std::vector<int64_t> part(ids.begin() + past, ids.begin() + past + len);
    SeqChunk c{slot, past, len, 0, 0};
    out.push_back(s.head(s.forward_blocks(s.embed(at::tensor(part, at::kLong)), {c}, cache)));
    past += len;
  }
  return at::cat(out, 0);
}

float rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<float>() / std::max(1.0f, a.abs().max().item<float>());
}

class ChatGLM2Model : public ::testing::TestWithParam<int64_t> {  // param: KV groups
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    dir_ = test::make_temp_dir("glm2_model");
    o_.family = TinyFamily::kGLM4;
    o_.layers = 3;
    o_.hidden = 48;
    o_.heads = 8;
    o_.kv_channels = 8;  // heads × kv_channels = 64 ≠ hidden 48
    o_.kv_groups = GetParam();
    o_.inner = 40;
    o_.vocab = 96;
    o_.seed = 3;
    make_tiny_model(dir_ + "/m", o_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string dir_;
  TinyModelOptions o_;
  const std::vector<int64_t> ids_ = {5, 17, 3, 60, 88, 41, 2, 9, 30};
};

TEST_P(ChatGLM2Model, SchemaNamesAndGroupedCache) {
  auto m = load(dir_ + "/m");
  const ModelSchema& schema = m.shard->schema();
  std::vector<std::string> want;
  for (const TensorSpec& t : schema.tensors())
    if (schema.param_of(t).kind != ParamKind::kIgnored) want.push_back(t.name);
  std::vector<std::string> got;
  for (auto& [name, t] : m.shard->named_parameters()) {
    got.push_back(name);
    EXPECT_EQ(t->sizes().vec(), schema.find(name)->shape) << name;
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(m.shard->checkpoint_keys(m.ckpt), want);
  auto cache = m.shard->make_cache(2, 16);
  EXPECT_EQ(cache.k(0).sizes().vec(), (std::vector<int64_t>{2, GetParam(), 16, 8}));
  EXPECT_EQ(cache.bytes(), 3 * 2 * 16 * kv_bytes_per_token_layer(m.shard->config(), 4));
}

TEST_P(ChatGLM2Model, CachedDecodeEqualsRecompute) {
  auto m = load(dir_ + "/m");
  auto whole = run(*m.shard, ids_, {9});
  auto cached = run(*m.shard, ids_, {4, 1, 1, 2, 1});
  EXPECT_LE(rel_diff(whole, cached), 1e-5);
  // and it is not trivially equal: a different token changes the later rows
  auto other = ids_;
  other[0] = 6;
  EXPECT_GT(rel_diff(run(*m.shard, other, {9}).narrow(0, 8, 1), whole.narrow(0, 8, 1)), 1e-3);
}

TEST_P(ChatGLM2Model, RaggedBatchEqualsEachSequenceAlone) {
  auto m = load(dir_ + "/m");
  const Shard& s = *m.shard;
  std::vector<std::vector<int64_t>> seqs = {{5, 17, 3, 60}, {88}, {41, 2, 9, 30, 11, 12}};
  auto cache = s.make_cache(3, 64);
  BatchLayout batch;
  std::vector<int64_t> all;
  for (size_t i = 0; i < seqs.size(); ++i) {
    batch.push_back(SeqChunk{static_cast<int64_t>(2 - i), 0, static_cast<int64_t>(seqs[i].size()), 0, 0});
    all.insert(all.end(), seqs[i].begin(), seqs[i].end());
  }
  auto together = s.head(s.forward_blocks(s.embed(at::tensor(all, at::kLong)), batch, cache));
  int64_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto alone = run(s, seqs[i], {static_cast<int64_t>(seqs[i].size())});
    EXPECT_LE(rel_diff(alone, together.narrow(0, row, alone.size(0))), 1e-5) << "sequence " << i;
    row += alone.size(0);
  }
}

// Query head h reads KV group ⌊h·G/n⌋: the same weights with each group's K/V rows repeated for
// its n/G heads, as a plain multi-head model (G = n), give the same logits.
TEST_P(ChatGLM2Model, GroupMapEqualsRepeatedHeads) {
  const int64_t G = GetParam(), n = o_.heads, d = o_.kv_channels;
  if (G == n) GTEST_SKIP();
  auto tensors = make_tiny_tensors(o_);
  for (auto& [name, t] : tensors) {
    if (name.find("query_key_value") == std::string::npos) continue;
    auto q = t.narrow(0, 0, n * d), k = t.narrow(0, n * d, G * d), v = t.narrow(0, (n + G) * d, G * d);
    auto expand = [&](const at::Tensor& x) {
      auto shape = x.sizes().vec();
      shape[0] = n * d;
      return x.reshape({G, 1, -1}).repeat({1, n / G, 1}).reshape(shape);
    };
    t = at::cat({q, expand(k), expand(v)}, 0);
  }
  ModelConfig mha = tiny_model_config(o_);
  mha.multi_query_group_num = n;
  write_checkpoint(dir_ + "/mha", mha, tensors, WriteOptions{});
  auto a = load(dir_ + "/m"), b = load(dir_ + "/mha");
  EXPECT_EQ(b.shard->config().kv_heads(), n);
  EXPECT_LE(rel_diff(run(*a.shard, ids_, {5, 1, 3}), run(*b.shard, ids_, {5, 1, 3})), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(KvGroups, ChatGLM2Model, ::testing::Values(1, 2, 4));

TEST(ChatGLM2Quantized, PublishedLayoutEqualsQuantizeAtLoad) {
  at::set_num_threads(1);
  const std::string dir = test::make_temp_dir("glm2_quant");
  TinyModelOptions o;
  o.family = TinyFamily::kChatGLM2;
  o.layers = 2;
  o.seed = 9;
  make_tiny_model(dir + "/float", o);
  const std::vector<int64_t> ids = {5, 17, 3, 60, 88, 41};
  auto f = load(dir + "/float");
  auto ref = run(*f.shard, ids, {4, 1, 1});
  for (int bits : {8, 4}) {
    o.quantization_bit = bits;
    make_tiny_model(dir + "/q", o);  // same seed: the float weights above, quantized per row
    auto stored = load(dir + "/q");
    EXPECT_EQ(stored.shard->config().quantization_bit, bits);
    ModelOptions mo;
    mo.quantize_bits = bits;
    auto at_load = load(dir + "/float", mo);
    auto a = run(*stored.shard, ids, {4, 1, 1}), b = run(*at_load.shard, ids, {4, 1, 1});
    EXPECT_LE(rel_diff(a, b), 1e-5) << "int" << bits;
    EXPECT_LE(rel_diff(ref, a), bits == 8 ? 0.05 : 0.5) << "int" << bits << " vs float";
    EXPECT_GT(rel_diff(ref, a), 0.0) << "int" << bits << " is not quantized";
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(ChatGLM2Rope, RatioAndModeChangeTheResult) {
  at::set_num_threads(1);
  const std::string dir = test::make_temp_dir("glm2_rope");
  TinyModelOptions o;
  o.family = TinyFamily::kChatGLM2;
  o.layers = 2;
  o.seed = 4;
  const std::vector<int64_t> ids = {5, 17, 3, 60, 88, 41, 7, 8};
  std::vector<at::Tensor> out;
  for (double ratio : {1.0, 16.0}) {
    o.rope_ratio = ratio;
    make_tiny_model(dir + "/m", o);
    auto ckpt = Checkpoint::open(dir + "/m");
    for (RopeMode mode : {RopeMode::kBaseScale, RopeMode::kPositionInterpolation}) {
      ModelConfig c = ckpt.config();
      EXPECT_EQ(c.rope_mode, RopeMode::kBaseScale);  // THUDM/chatglm3-6b: base × ratio
      c.rope_mode = mode;
      auto s = make_shard(c, ShardSpec::whole(c), ModelOptions{});
      s->load(ckpt);
      out.push_back(run(*s, ids, {8}));
    }
  }
  EXPECT_TRUE(at::equal(out[0], out[1]));  // ratio 1: both meanings agree
  EXPECT_GT(rel_diff(out[0], out[2]), 1e-4);
  EXPECT_GT(rel_diff(out[0], out[3]), 1e-4);
  EXPECT_GT(rel_diff(out[2], out[3]), 1e-4);
  // The first position (0) is never rotated: row 0 is the same for every rope.
  EXPECT_LE(rel_diff(out[0].narrow(0, 0, 1), out[3].narrow(0, 0, 1)), 1e-6);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
