// ChatGLM2/3 and GLM-4 numerics against ../shared/data/reference/glm2_model.data and
// glm4_model.data (chatglm.cpp's tiny models with the official modeling code's hidden states,
// chatglm2-family.md §4.1): 1 layer, hidden 32, 8 heads, 2 KV groups, kv_channels 4, ffn 48,
// vocab 5. The weights become an unmodified-layout checkpoint directory (config.json as
// ChatGLMConfig writes it) and go through `glmpipe forward`, one call and prefill + cached steps.
// The data holds last_hidden_state (after the final RMSNorm), not logits: the directory gets
// padded_vocab_size 32 (rows 5..31 of the embedding zero) and an identity output_layer, so the
// logits are the hidden states exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/npy.h"
#include "model/model_config.h"
#include "tests/reference_reader.h"
#include "tests/test_util.h"

using namespace glmpipe;

namespace {

using Reader = test::ReferenceReader;

struct RefModel {
  std::string dir;
  std::vector<int64_t> ids;  // x1 (3) + x2 + x3
  at::Tensor want;           // [5, 32] y1, y2, y3
};

// Writes the reference weights as an HF ChatGLM2-layout checkpoint with layernorm_epsilon `eps`.
RefModel make_model(const std::string& data, const std::string& dir, double eps, CheckpointFormat fmt) {
  Reader r(data);
  EXPECT_TRUE(r.ok());
  const std::string L = "transformer.encoder.layers.0.";
  std::vector<std::pair<std::string, at::Tensor>> t;
  at::Tensor emb = at::zeros({32, 32});
  emb.narrow(0, 0, 5).copy_(r.floats({5, 32}));
  t.emplace_back("transformer.embedding.word_embeddings.weight", emb);
  t.emplace_back(L + "input_layernorm.weight", r.floats({32}));
  t.emplace_back(L + "self_attention.query_key_value.weight", r.floats({48, 32}));
  t.emplace_back(L + "self_attention.query_key_value.bias", r.floats({48}));
  t.emplace_back(L + "self_attention.dense.weight", r.floats({32, 32}));
  t.emplace_back(L + "post_attention_layernorm.weight", r.floats({32}));
  t.emplace_back(L + "mlp.dense_h_to_4h.weight", r.floats({96, 32}));
  t.emplace_back(L + "mlp.dense_4h_to_h.weight", r.floats({32, 48}));
  t.emplace_back("transformer.encoder.final_layernorm.weight", r.floats({32}));
  t.emplace_back("transformer.output_layer.weight", at::eye(32));
  // The checkpoint's inv_freq (no rope_ratio) must be ignored: store a wrong one.
  t.emplace_back("transformer.rotary_pos_emb.inv_freq", at::full({1}, 123.0f));
  RefModel m;
  m.dir = dir;
  m.ids = r.ints(3);
  auto y1 = r.floats({3, 32});
  auto x2 = r.ints(1);
  auto y2 = r.floats({1, 32});
  auto x3 = r.ints(1);
  auto y3 = r.floats({1, 32});
  EXPECT_TRUE(r.at_end()) << "unexpected trailing bytes in " << data;
  m.ids.push_back(x2[0]);
  m.ids.push_back(x3[0]);
  m.want = at::cat({y1, y2, y3}, 0);

  ModelConfig c;
  c.family = Family::kChatGLM2;
  c.vocab_size = 32;
  c.hidden_size = 32;
  c.num_layers = 1;
  c.num_attention_heads = 8;
  c.kv_channels = 4;
  c.multi_query_group_num = 2;
  c.inner_hidden_size = 48;
  c.layernorm_epsilon = eps;
  c.max_sequence_length = 64;
  c.rope_ratio = 500;  // one frequency (θ₀ = 1): any base gives the same result (family doc §4.1)
  c.eos_token_id = 2;
  c.eos_token_ids = {2};
  c.pad_token_id = 0;
  c.torch_dtype = "float32";
  c.name_or_path = "THUDM/glm-4-9b-chat";
  WriteOptions w;
  w.format = fmt;
  w.shards = fmt == CheckpointFormat::kBin ? 3 : 1;
  write_checkpoint(dir, c, t, w);
  return m;
}

at::Tensor forward(const RefModel& m, int prefill, const std::string& out) {
  std::string ids;
  for (size_t i = 0; i < m.ids.size(); ++i) ids += (i ? "," : "") + std::to_string(m.ids[i]);
  auto r = test::run_command("timeout 120 " + test::glmpipe_bin() + " forward --model " + m.dir + " --threads 1 --ids " +
                             ids + " --prefill " + std::to_string(prefill) + " --out " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? load_npy(out) : at::Tensor();
}

class Glm2Reference : public ::testing::TestWithParam<std::tuple<std::string, double>> {
 protected:
  void SetUp() override {
    data_ = test::shared_data() + "/reference/" + std::get<0>(GetParam());
    if (!test::file_exists(data_)) GTEST_SKIP() << "reference data absent: " << data_;
    dir_ = test::make_temp_dir("glm2ref");
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string data_, dir_;
};

TEST_P(Glm2Reference, ForwardOneCallAndCachedStepsMatch) {
  const double eps = std::get<1>(GetParam());
  for (auto fmt : {CheckpointFormat::kSafetensors, CheckpointFormat::kBin}) {
    const std::string dir = dir_ + (fmt == CheckpointFormat::kBin ? "/bin" : "/st");
    RefModel m = make_model(data_, dir, eps, fmt);
    EXPECT_EQ(load_model_config(dir).family, Family::kChatGLM2);
    for (int prefill : {5, 3}) {  // one call; prefill 3 then two cached one-token steps
      auto got = forward(m, prefill, dir + "/out.npy");
      ASSERT_TRUE(got.defined());
      ASSERT_EQ(got.sizes(), m.want.sizes());
      EXPECT_LE((got - m.want).abs().max().item<float>(), 1e-5) << data_ << " prefill " << prefill;
    }
  }
}

// The test can fail: the other family member's epsilon (1e-5 vs 1.5625e-7) moves the output by
// ~4e-5 (chatglm2-family.md §4.1), well beyond the tolerance above.
TEST_P(Glm2Reference, WrongEpsilonIsDetected) {
  const double eps = std::get<1>(GetParam()) == 1e-5 ? 1.5625e-7 : 1e-5;
  RefModel m = make_model(data_, dir_ + "/wrong", eps, CheckpointFormat::kSafetensors);
  auto got = forward(m, 5, dir_ + "/wrong/out.npy");
  ASSERT_TRUE(got.defined());
  EXPECT_GT((got - m.want).abs().max().item<float>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Data, Glm2Reference,
                         ::testing::Values(std::make_tuple(std::string("glm2_model.data"), 1e-5),
                                           std::make_tuple(std::string("glm4_model.data"), 1.5625e-7)),
                         [](const auto& info) { return std::get<0>(info.param).substr(0, 4); });

}  // namespace
